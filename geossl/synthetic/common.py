"""What the seeded sample generators share: the GeoTIFF writer, the output folder, the plan checks.

[`write_geotiff`][geossl.synthetic.common.write_geotiff] is the one GeoTIFF writer of
`geossl.synthetic` (atomic: nothing is left under the final name when a write fails);
[`prepare_sample_folder`][geossl.synthetic.common.prepare_sample_folder] creates a generator's
output folder or clears the entries it owns;
[`check_plan_arguments`][geossl.synthetic.common.check_plan_arguments], `_check_range` and
`_split_counts` validate and split the location plan of the fMoW-style generators.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geossl.datasets.fmow.constants import FMOW_ANONYMOUS_SPLITS, FMOW_CATEGORIES, FMOW_SPLITS
from geossl.utils.io import atomic_output

__all__ = ["check_plan_arguments", "prepare_sample_folder", "write_geotiff"]


def write_geotiff(
    path: str | os.PathLike[str],
    bands: npt.NDArray[Any],
    epsg: int,
    transform: Any,
    *,
    tags: Mapping[str, str] | None = None,
    band_names: Sequence[str] = (),
    **creation: Any,
) -> None:
    """Write a north-up GeoTIFF of ``bands`` (``[C, H, W]``) atomically.

    The file is written under a temporary name next to ``path`` and renamed when complete (see
    [`geossl.utils.io.atomic_output`][geossl.utils.io.atomic_output]): a failed write leaves nothing
    under ``path``.

    Args:
        path: the final file name.
        bands: the pixels, bands first; the file gets their dtype.
        epsg: the EPSG code of the CRS.
        transform: the affine pixel-to-CRS transform (an `affine.Affine`).
        tags: dataset tags written after the pixels (e.g. ``TIFFTAG_DATETIME``).
        band_names: band descriptions, from band 1 (may be shorter than the band count).
        **creation: further ``rasterio.open`` profile keys (``nodata``, ``tiled``,
            ``compress``, ``photometric``, ...).

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> import rasterio
        >>> from affine import Affine
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = f"{folder}/tile.tif"
        ...     pixels = np.zeros((3, 8, 16), dtype=np.uint16)
        ...     write_geotiff(path, pixels, 32614, Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 4e6))
        ...     with rasterio.open(path) as src:
        ...         print(src.count, src.width, src.height, src.dtypes[0], src.crs.to_epsg())
        3 16 8 uint16 32614
    """
    import rasterio

    with (
        atomic_output(path) as tmp,
        rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=bands.shape[2],
            height=bands.shape[1],
            count=bands.shape[0],
            dtype=bands.dtype.name,
            crs=f"EPSG:{epsg}",
            transform=transform,
            **creation,
        ) as dst,
    ):
        dst.write(bands)
        if tags:
            dst.update_tags(**tags)
        for band, name in enumerate(band_names, start=1):
            dst.set_band_description(band, name)


def prepare_sample_folder(
    root: str | os.PathLike[str], overwrite: bool, owned: Iterable[str]
) -> Path:
    """Create the output folder of a sample generator, or clear what the generator owns in it.

    A non-empty folder is refused unless ``overwrite``; then only the ``owned`` entries (folders
    removed recursively, files and links unlinked) go, never unrelated files in the folder.

    Args:
        root: the output folder.
        overwrite: replace the generator's own entries of a non-empty folder.
        owned: the entries, relative to ``root``, that the generator writes.

    Returns:
        ``root`` as a path, existing.

    Raises:
        FileExistsError: when ``root`` is a file, or a non-empty folder without ``overwrite``.
    """
    folder = Path(root)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: output exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{folder}: output folder is not empty (pass overwrite=True to replace it)"
            )
        for name in owned:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_range(name: str, value: tuple[int, int], minimum: int) -> tuple[int, int]:
    """Validate an inclusive ``(min, max)`` integer range argument; return it as ints."""
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in value)
    ):
        raise ValueError(f"{name} must be a (min, max) pair of integers, got {value!r}")
    lo, hi = int(value[0]), int(value[1])
    if lo < minimum or hi < lo:
        raise ValueError(f"{name} must satisfy {minimum} <= min <= max, got {value!r}")
    return lo, hi


def _split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` locations; every positive split gets >= 1 when n allows."""
    total = sum(fractions.values())
    quotas = {s: n * fractions.get(s, 0.0) / total for s in FMOW_SPLITS}
    counts = {s: math.floor(q) for s, q in quotas.items()}
    order = sorted(FMOW_SPLITS, key=lambda s: (-(quotas[s] - counts[s]), FMOW_SPLITS.index(s)))
    for s in order[: n - sum(counts.values())]:
        counts[s] += 1
    positive = [s for s in FMOW_SPLITS if fractions.get(s, 0.0) > 0]
    for s in positive:
        if counts[s] == 0:
            donor = max(positive, key=lambda d: (counts[d], -FMOW_SPLITS.index(d)))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[s] += 1
    return counts


def _prepare_output(root: Path, overwrite: bool) -> None:
    """Create the root of an fMoW-rgb / fMoW-full sample, or clear the entries the sample owns."""
    owned = [
        *FMOW_SPLITS,
        *(f"{s}_gt" for s in FMOW_ANONYMOUS_SPLITS),
        "manifest.json.bz2",
        *(f"{s}_gt_mapping.json" for s in FMOW_ANONYMOUS_SPLITS),
    ]
    prepare_sample_folder(root, overwrite, owned)


def check_plan_arguments(
    locations: int,
    split_fractions: Mapping[str, float],
    valid_splits: Sequence[str],
    categories: Sequence[str] | None,
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Validate the location plan of an fMoW-style sample generator.

    Args:
        locations: number of locations (a positive integer).
        split_fractions: share of locations per split.
        valid_splits: the splits the layout has.
        categories: the categories to cycle through, None for all 62.

    Returns:
        ``(fractions, categories)``.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if isinstance(locations, bool) or not isinstance(locations, int | np.integer) or locations < 1:
        raise ValueError(f"locations must be a positive integer, got {locations!r}")
    fractions = dict(split_fractions)
    unknown = sorted(set(fractions) - set(valid_splits))
    if unknown:
        raise ValueError(
            f"split_fractions has unknown splits {unknown}; valid: {list(valid_splits)}"
        )
    if (
        any(not math.isfinite(f) or f < 0 for f in fractions.values())
        or sum(fractions.values()) <= 0
    ):
        raise ValueError(f"split_fractions must be finite, >= 0 and sum to > 0, got {fractions}")
    cats: tuple[str, ...] = FMOW_CATEGORIES if categories is None else tuple(categories)
    if isinstance(categories, str) or not cats:
        raise ValueError(
            f"categories must be a non-empty sequence of fMoW categories, got {categories!r}"
        )
    bad = sorted({c for c in cats if c not in FMOW_CATEGORIES})
    if bad:
        raise ValueError(f"unknown fMoW categories {bad}; see FMOW_CATEGORIES")
    return fractions, cats
