r"""Per-band normalisation statistics estimated from a seeded sample of the training data.

Pretraining normalises every view as ``(x - mean) / std`` per band, on the ``[0, 1]`` scale the
model sees (uint8 divided by 255, other dtypes times ``data.scale``, clipped). ImageNet's statistics
only exist for RGB; for any other band set (Sentinel-2's 12 bands, 4-band NAIP, fMoW-full's 8
WorldView bands) geossl estimates them from the data it trains on (``model.normalization``, see
[`GeoSSLTask`][geossl.trainers.GeoSSLTask]). The data modules draw the sample
(``RasterTimeSeriesDataModule.band_statistics``, ``FMoWDataModule.band_statistics``); this module
holds what they share:

* the estimator ([`BandMoments`][geossl.datasets.band_stats.BandMoments]): for band $c$ over the
  $N_c$ valid pixels $x_{c,i}$ of all sampled patches, pooled (a patch weighs by its valid pixel
  count),

    $$
    \mu_c = \frac{1}{N_c} \sum_i x_{c,i}, \qquad
    \sigma_c = \sqrt{\frac{1}{N_c} \sum_i (x_{c,i} - \mu_c)^2}
    $$

    i.e. the population standard deviation (``ddof=0``, the convention of ImageNet's
    ``(0.229, 0.224, 0.225)``), accumulated patch by patch in float64 with the pairwise update of
    Chan, Golub & LeVeque (1979), which stays exact where $\sum x^2 - N\mu^2$ would cancel;
* the nodata rule ([`valid_pixels`][geossl.datasets.band_stats.valid_pixels]): a pixel is left out
  when **every** band equals the nodata value (rasterio's ``dataset_mask`` rule for nodata values,
  so a genuine 0 in one band is kept), or when a band is NaN;
* the cache ([`cached_band_statistics`][geossl.datasets.band_stats.cached_band_statistics]): a small
  JSON file whose name and content carry a hash of everything the estimate depends on (files with
  sizes and modification times, bands, scale, sample size, seed, ...), so a restart or a resumed run
  reads it instead of reading the sample again, and any change recomputes it.

A band that is constant over the sample ($\sigma_c < 10^{-6}$, e.g. an all-zero band) would
blow up under ``/ std``: it gets ``std = 1`` (centred, not scaled) with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from geossl.utils.checks import check_at_least

__all__ = [
    "BAND_STATS_FORMAT",
    "BAND_STATS_VERSION",
    "MIN_STD",
    "BandMoments",
    "BandStatistics",
    "band_stats_key",
    "cached_band_statistics",
    "files_fingerprint",
    "valid_pixels",
]

#: ``format`` field of the cache files.
BAND_STATS_FORMAT = "geossl-band-statistics"
#: Bumped whenever the estimator or the sampling changes; part of every cache key.
BAND_STATS_VERSION = 1
#: Smallest standard deviation kept; a band below it is constant over the sample (``std = 1``).
MIN_STD = 1e-6


@dataclass(frozen=True)
class BandStatistics:
    r"""Per-band mean and standard deviation of ``[0, 1]`` inputs, and what they were computed on.

    Attributes:
        mean: $\mu_c$ per band.
        std: $\sigma_c$ per band (population std; 1 for a constant band).
        num_pixels: valid pixels $N_c$ per band.
        num_samples: patches or images read.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_pixels: tuple[int, ...]
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "num_pixels": list(self.num_pixels),
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandStatistics:
        """Parse [`to_dict`][geossl.datasets.band_stats.BandStatistics.to_dict]'s output.

        Raises:
            ValueError: for missing fields, lengths that differ, or a non-finite / non-positive
                statistic.
        """
        try:
            mean = tuple(float(v) for v in data["mean"])
            std = tuple(float(v) for v in data["std"])
            pixels = tuple(int(v) for v in data["num_pixels"])
            samples = int(data["num_samples"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"invalid band statistics ({type(err).__name__}: {err})") from None
        if not mean or len(std) != len(mean) or len(pixels) != len(mean):
            raise ValueError("invalid band statistics (mean, std and num_pixels lengths differ)")
        if not all(math.isfinite(m) for m in mean) or not all(
            math.isfinite(s) and s > 0 for s in std
        ):
            raise ValueError("invalid band statistics (non-finite mean or std <= 0)")
        return cls(mean, std, pixels, samples)


class BandMoments:
    r"""Running per-band count, mean and sum of squared deviations (float64).

    [`update`][geossl.datasets.band_stats.BandMoments.update] merges a block of $n_b$ pixels with
    mean $\bar x_b$ and $M_b = \sum (x - \bar x_b)^2$ into the running $(n_a, \bar x_a, M_a)$ (Chan
    et al., 1979):

    $$
    \delta = \bar x_b - \bar x_a, \quad n = n_a + n_b, \quad
    \bar x = \bar x_a + \delta \frac{n_b}{n}, \quad
    M = M_a + M_b + \delta^2 \frac{n_a n_b}{n}
    $$

    and [`result`][geossl.datasets.band_stats.BandMoments.result] returns $\mu = \bar x$,
    $\sigma = \sqrt{M / n}$.

    Args:
        num_bands: $C$.

    Raises:
        ValueError: if ``num_bands < 1``.
    """

    def __init__(self, num_bands: int) -> None:
        check_at_least("num_bands", num_bands, 1)
        self.num_bands = num_bands
        self.count = np.zeros(num_bands, dtype=np.int64)
        self.mean = np.zeros(num_bands, dtype=np.float64)
        self.m2 = np.zeros(num_bands, dtype=np.float64)
        #: Blocks merged so far (patches or images).
        self.num_samples = 0

    def update(self, pixels: Tensor | npt.ArrayLike) -> None:
        """Merge a block of pixels.

        Args:
            pixels: ``[C, N]`` valid pixel values on the ``[0, 1]`` scale (``N`` may be 0: the
                block still counts as a sample).

        Raises:
            ValueError: if the block does not have ``C`` rows.
        """
        if isinstance(pixels, Tensor):
            pixels = pixels.detach().cpu().double().numpy()
        block = np.asarray(pixels, dtype=np.float64)
        if block.ndim != 2 or block.shape[0] != self.num_bands:
            raise ValueError(f"expected [{self.num_bands}, N] pixels, got {list(block.shape)}")
        self.num_samples += 1
        n_b = block.shape[1]
        if n_b == 0:
            return
        mean_b = block.mean(axis=1)  # [C]
        m2_b = np.square(block - mean_b[:, None]).sum(axis=1)  # [C]
        n_a = self.count.astype(np.float64)
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + np.square(delta) * (n_a * n_b / n)
        self.count = self.count + n_b

    def result(self, what: str = "the sample") -> BandStatistics:
        """The statistics so far.

        Args:
            what: how to name the sample in messages (e.g. ``"256 patches of /data/s2"``).

        Returns:
            The [`BandStatistics`][geossl.datasets.band_stats.BandStatistics] (``std = 1`` for a
            constant band, with a warning).

        Raises:
            ValueError: if no valid pixel was seen.
        """
        if int(self.count.min()) == 0:
            raise ValueError(
                f"no valid (non-nodata) pixel in {what}: cannot estimate band statistics; set "
                "model.mean and model.std"
            )
        std = np.sqrt(self.m2 / self.count)
        constant = [int(c) for c in np.flatnonzero(std < MIN_STD)]
        if constant:
            warnings.warn(
                f"band(s) {[c + 1 for c in constant]} are constant over {what} (std < {MIN_STD}): "
                "they are centred but not scaled (std = 1)",
                UserWarning,
                stacklevel=2,
            )
            std[constant] = 1.0
        return BandStatistics(
            tuple(float(m) for m in self.mean),
            tuple(float(s) for s in std),
            tuple(int(c) for c in self.count),
            self.num_samples,
        )


def valid_pixels(raw: Tensor, nodata: float | None) -> Tensor:
    """Which pixels of an image hold data.

    Args:
        raw: ``[C, H, W]`` values as stored (before any scaling).
        nodata: the nodata value; ``None`` when the data has none (then only NaNs are invalid).

    Returns:
        bool ``[H, W]``: ``False`` where every band equals ``nodata`` or where any band is NaN.

    Raises:
        ValueError: if ``raw`` is not ``[C, H, W]``.
    """
    if raw.ndim != 3:
        raise ValueError(f"expected a [C, H, W] image, got {list(raw.shape)}")
    valid = torch.ones(raw.shape[1:], dtype=torch.bool, device=raw.device)
    if raw.is_floating_point():
        valid &= ~torch.isnan(raw).any(dim=0)
    if nodata is not None and not math.isnan(nodata):
        valid &= ~(raw == nodata).all(dim=0)
    return valid


def files_fingerprint(paths: Iterable[str | os.PathLike[str]]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of every file (absolute paths, sorted): the data in a cache key.

    Args:
        paths: the files.

    Returns:
        The fingerprint rows.
    """
    rows: list[list[Any]] = []
    for path in sorted({os.path.abspath(os.fspath(p)) for p in paths}):
        stat = os.stat(path)
        rows.append([path, int(stat.st_size), int(stat.st_mtime_ns)])
    return rows


def band_stats_key(parts: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``parts`` (JSON, sorted keys) and `BAND_STATS_VERSION`.

    Args:
        parts: everything the estimate depends on (JSON-serialisable; other values by ``str``).

    Returns:
        The key.
    """
    text = json.dumps(
        {"version": BAND_STATS_VERSION, **parts}, sort_keys=True, default=str, allow_nan=True
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_cache(path: Path, key: str) -> BandStatistics | None:
    """The cached statistics, ``None`` when absent or for another key; warns on a corrupt file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != BAND_STATS_FORMAT or data.get("key") != key:
            return None
        return BandStatistics.from_dict(data)
    except (OSError, ValueError, AttributeError) as err:
        warnings.warn(
            f"{path}: corrupt band statistics cache ({type(err).__name__}: {err}); recomputing",
            UserWarning,
            stacklevel=3,
        )
        return None


def _write_cache(
    path: Path, key: str, stats: BandStatistics, description: Mapping[str, Any]
) -> None:
    """Write the cache atomically (temporary file + rename); warn when the folder is read-only."""
    payload = {
        "format": BAND_STATS_FORMAT,
        "version": BAND_STATS_VERSION,
        "key": key,
        **stats.to_dict(),
        "source": dict(description),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=1, default=str)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(
            f"{path}: cannot write the band statistics cache ({err.strerror or err}); set "
            "data.cache_dir to a writable folder to avoid recomputing them",
            UserWarning,
            stacklevel=3,
        )


def cached_band_statistics(
    path: str | os.PathLike[str],
    key: str,
    compute: Callable[[], BandStatistics],
    description: Mapping[str, Any] | None = None,
) -> tuple[BandStatistics, bool]:
    """Read the statistics from ``path`` when it holds ``key``, else compute and write them.

    Args:
        path: the JSON cache file.
        key: [`band_stats_key`][geossl.datasets.band_stats.band_stats_key] of what the estimate
            depends on (stored in the file, checked on
            read: a file for another key is recomputed and overwritten).
        compute: the estimate.
        description: what the statistics were computed on, stored for humans (not checked).

    Returns:
        ``(statistics, from_cache)``.
    """
    cache = Path(path)
    cached = _read_cache(cache, key)
    if cached is not None:
        return cached, True
    stats = compute()
    _write_cache(cache, key, stats, description or {})
    return stats, False
