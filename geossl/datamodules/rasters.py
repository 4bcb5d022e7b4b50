"""Lightning data module for geography-aware pretraining on your own GeoTIFF time series."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from geossl.datamodules.input_block import input_block
from geossl.datamodules.loaders import loader_kwargs
from geossl.datamodules.resumable import ResumableDataLoader
from geossl.datasets.band_stats import (
    BandMoments,
    BandStatistics,
    band_stats_key,
    cached_band_statistics,
    files_fingerprint,
    valid_pixels,
)
from geossl.datasets.geo_clusters import latlon_to_unit, spherical_kmeans
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.datasets.rasters.integrity import skip_unreadable
from geossl.samplers.temporal_geo import TemporalGeoPairSampler
from geossl.utils.bands import UINT8_SCALE
from geossl.utils.checks import check_at_least, check_fraction

__all__ = ["RasterTimeSeriesDataModule"]


def _check_paths(paths: str | list[str]) -> list[str]:
    """``data.paths`` as a list; refuse an empty one or an empty name."""
    path_list = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not path_list or any(not str(p) for p in path_list):
        raise ValueError(f"data.paths must name folders or files, got {paths!r}")
    return path_list


def _check_band_selection(bands: list[int] | None, band_names: list[str] | None) -> None:
    """Refuse bad ``data.bands`` / ``data.band_names``, or both at once."""
    if bands is not None and (not bands or min(bands) < 1 or len(set(bands)) != len(bands)):
        raise ValueError(f"data.bands must be distinct 1-based band indexes, got {bands}")
    if band_names is not None:
        if not band_names or len(set(band_names)) != len(band_names) or not all(band_names):
            raise ValueError(f"data.band_names must be distinct band names, got {band_names}")
        if bands is not None:
            raise ValueError(
                "data.bands (band indexes inside each file) and data.band_names (one file per "
                "band) exclude each other: set one"
            )


class RasterTimeSeriesDataModule(LightningDataModule):
    """Temporal pairs of patches from co-located GeoTIFFs (MoCo-v2 + temporal positives + geo).

    The same recipe as [`FMoWDataModule`][geossl.datamodules.FMoWDataModule], with the positives and
    the geo labels taken from the rasters:
    [`TimeSeriesRasters`][geossl.datasets.rasters.TimeSeriesRasters] indexes the files by footprint
    and acquisition date, [`TemporalGeoPairSampler`][geossl.samplers.TemporalGeoPairSampler] draws
    ``length`` pairs per epoch (a patch uniform over the covered area, two different dates that both
    cover it with at most ``max_nodata_fraction`` nodata), and
    [`RasterTemporalPairs`][geossl.datasets.rasters.RasterTemporalPairs] reads them. The geo
    clusters are fitted once in ``setup`` (spherical k-means,
    [`geossl.datasets.geo_clusters`][geossl.datasets.geo_clusters]) on the centres of
    ``geo_cluster_points`` patches drawn by the same rule, seeded by ``seed``.

    A training batch is ``image: [B, 2, C, patch_size, patch_size]`` (uint8 for 8-bit files, else
    float32 in ``[0, 1]``), ``label, geo_label, location: int64 [B]``, ``lat, lon: float32 [B]``,
    ``time, index: int64 [B, 2]`` (``index``: the two dates' ids) and ``bounds: float64 [B, 4]``
    in the dataset's CRS ([`crs`][geossl.datamodules.rasters.RasterTimeSeriesDataModule.crs]). Data
    workers only read; the random view augmentation happens on the device, as for fMoW.

    Per-band normalisation statistics of the patches
    ([`band_statistics`][geossl.datamodules.rasters.RasterTimeSeriesDataModule.band_statistics]) are
    what [`GeoSSLTask`][geossl.trainers.GeoSSLTask] uses when ``model.mean`` / ``model.std`` are not
    given (any band count but 3, or ``model.normalization: data``).

    Args:
        paths: a folder (searched recursively) or file, or a list of them.
        bands: 1-based band indexes to read, ``None`` for all (every file then needs the same
            band count).
        filename_regex: regex with a ``date`` (or ``year``) group that finds the acquisition date
            in a file name (and a ``band`` group with ``band_names``); default
            `DEFAULT_FILENAME_REGEX` (``YYYYMMDD`` or a bare year;
            `DEFAULT_BAND_FILENAME_REGEX` with ``band_names``).
        date_format: ``strptime`` format of the ``date`` group.
        crs: CRS to warp every file to (e.g. ``"EPSG:32614"``), default the first file's.
        res: resolution in CRS units, default the first file's (with ``band_names``: the finest
            band's).
        nodata: nodata value for files that declare none.
        scale: factor to ``[0, 1]`` for non-8-bit files (e.g. ``1e-4`` for Sentinel-2 L2A),
            default ``1 / (2**bits - 1)``; ignored for uint8.
        patch_size: patch side in pixels (the model's random resized crop takes the views from it).
        batch_size: pairs per batch (per process).
        num_workers: DataLoader worker processes.
        num_geo_clusters: geo clusters K (100 in Ayush et al.).
        length: pairs per epoch.
        max_nodata_fraction: largest nodata share of a patch at each of its two dates.
        seed: seed of the pair sampler (``seed + epoch``) and of the geo clustering.
        geo_cluster_points: patch centres the geo clusters are fitted on.
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).
        drop_last: drop the last incomplete batch.
        shared_canvas: the two views of a pair are always the same pixel window (one canvas, as
            the temporal SCRL loss needs); accepted so that configs written for fMoW's
            ``data.shared_canvas`` apply, ``False`` is refused.
        band_names: one file per band (Sentinel-2 ``..._B02.tif``): the bands to read, in order,
            each resampled onto the grid at ``res`` (see
            [`TimeSeriesRasters`][geossl.datasets.rasters.TimeSeriesRasters]). Not with ``bands``.
        single_date_pairs: a patch seen at one date only gives the pair of that date with itself
            (both views one image: MoCo-v2's positives) instead of being rejected; for
            collections of separate places such as BigEarthNet
            ([`TemporalGeoPairSampler`][geossl.samplers.TemporalGeoPairSampler]). Off by default: a
            stack without temporal pairs fails with one line that suggests it.
        cache_dir: folder of the
            `band_statistics` cache, default ``.geossl`` in the first of ``paths`` (its folder when
            it is a file).
        max_bad_fraction: fail when more than this share of the files is skipped as corrupt (cut
            tiles, found when indexing or in the validity scan;
            [`geossl.datasets.rasters.integrity`][geossl.datasets.rasters.integrity]).
        max_load_failures: failed patch reads tolerated per process (each is warned about by
            file and replaced by the pair's other view) before stopping with one line.

    Raises:
        ValueError: for invalid arguments, naming the ``data.<key>`` to fix.
    """

    def __init__(
        self,
        paths: str | list[str] = "data/rasters",
        bands: list[int] | None = None,
        filename_regex: str | None = None,
        date_format: str = "%Y%m%d",
        crs: str | None = None,
        res: float | None = None,
        nodata: float | None = None,
        scale: float | None = None,
        patch_size: int = 256,
        batch_size: int = 256,
        num_workers: int = 8,
        num_geo_clusters: int = 100,
        length: int = 100_000,
        max_nodata_fraction: float = 0.1,
        seed: int = 0,
        geo_cluster_points: int = 10_000,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        shared_canvas: bool = True,
        band_names: list[str] | None = None,
        single_date_pairs: bool = False,
        cache_dir: str | None = None,
        max_bad_fraction: float = 0.5,
        max_load_failures: int = 100,
    ) -> None:
        super().__init__()
        path_list = _check_paths(paths)
        _check_band_selection(bands, band_names)
        minimums = {
            "patch_size": (patch_size, 1),
            "batch_size": (batch_size, 1),
            "num_geo_clusters": (num_geo_clusters, 1),
            "length": (length, 1),
            "geo_cluster_points": (geo_cluster_points, 1),
            "num_workers": (num_workers, 0),
            "max_load_failures": (max_load_failures, 0),
        }
        for key, (value, low) in minimums.items():
            check_at_least(f"data.{key}", value, low)
        for key, fraction in {"nodata": max_nodata_fraction, "bad": max_bad_fraction}.items():
            check_fraction(f"data.max_{key}_fraction", fraction)
        if not shared_canvas:
            raise ValueError(
                "data.shared_canvas must be true: both views of a raster pair are one pixel window"
            )
        for key, number in {"res": res, "scale": scale}.items():
            if number is not None and not (math.isfinite(number) and number > 0):
                raise ValueError(f"data.{key} must be positive, got {number}")
        self.save_hyperparameters()
        self.paths = [str(p) for p in path_list]
        self.bands = bands
        self.filename_regex = filename_regex
        self.date_format = date_format
        self.crs_name = crs
        self.res = res
        self.nodata = nodata
        self.scale = scale
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.num_geo_clusters = num_geo_clusters
        self.length = length
        self.max_nodata_fraction, self.max_bad_fraction = max_nodata_fraction, max_bad_fraction
        self.seed = seed
        self.geo_cluster_points = geo_cluster_points
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self.band_names = None if band_names is None else [str(b) for b in band_names]
        self.single_date_pairs = single_date_pairs
        self.cache_dir = cache_dir
        self.max_load_failures = max_load_failures
        self.rasters: TimeSeriesRasters | None = None
        self.train_sampler: TemporalGeoPairSampler | None = None
        self.train_dataset: RasterTemporalPairs | None = None
        #: Geo-cluster centroids, unit vectors float64 ``[K, 3]`` (after ``setup``).
        self.centroids: npt.NDArray[np.float64] | None = None

    def _rasters(self) -> TimeSeriesRasters:
        if self.rasters is None:
            self.rasters = TimeSeriesRasters(
                self.paths,
                bands=self.bands,
                filename_regex=self.filename_regex,
                date_format=self.date_format,
                crs=self.crs_name,
                res=self.res,
                nodata=self.nodata,
                band_names=self.band_names,
            )
        return self.rasters

    @property
    def in_chans(self) -> int:
        """Channels of the patches: ``len(bands)`` or ``len(band_names)``, else the files' count."""
        if self.bands is not None:
            return len(self.bands)
        if self.band_names is not None:
            return len(self.band_names)
        return self._rasters().num_bands

    @property
    def input_block(self) -> dict[str, Any]:
        """What the model's input is (band names, bands, scale): ``model.input_block``.

        The band names are ``band_names`` (one file per band), else ``band_1`` ... ``band_N``;
        the scale is ``scale``, else 1/255 (uint8 stacks are divided by 255 whatever ``scale``
        says; other dtypes need ``scale``).
        """
        names = self.band_names or [f"band_{i + 1}" for i in range(self.in_chans)]
        return input_block("rasters", names, self.scale or UINT8_SCALE, self.bands)

    @property
    def pairs_share_canvas(self) -> bool:
        """Always ``True``: both views are read at one window of one pixel grid.

        On co-registered stacks the canvas is exact (the same pixels of the ground); files on other
        grids or CRSs are resampled onto the first file's grid, so it holds up to that resampling.
        """
        return True

    @property
    def crs(self) -> Any:
        """CRS of the patches' ``bounds`` (indexes the files if needed)."""
        return self._rasters().crs

    def setup(self, stage: str | None = None) -> None:
        """Index the files, build the pair sampler and fit the geo clusters (once)."""
        if self.train_dataset is not None:
            return
        rasters = self._rasters()
        try:
            sampler = TemporalGeoPairSampler(
                rasters,
                patch_size=self.patch_size,
                length=self.length,
                max_nodata_fraction=self.max_nodata_fraction,
                seed=self.seed,
                single_date_pairs=self.single_date_pairs,
            )
        except ValueError as err:  # name the data.<key>s of the sampler's arguments
            message = str(err).replace("single_date_pairs=True", "data.single_date_pairs=true")
            message = message.replace("lower patch_size", "lower data.patch_size")
            message = message.replace("raise max_nodata_fraction", "raise data.max_nodata_fraction")
            raise ValueError(message) from None
        skip_unreadable(rasters, sampler.rule.grid.unreadable, self.max_bad_fraction)
        generator = torch.Generator().manual_seed(self.seed)
        boxes, _ = sampler.draw(self.geo_cluster_points, generator)
        lon, lat = rasters.to_lonlat(
            (boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0
        )
        centroids, _ = spherical_kmeans(
            latlon_to_unit(lat, lon),
            self.num_geo_clusters,
            seed=self.seed,
            k_name="data.num_geo_clusters",
            what="patch positions",
            context=", ".join(self.paths),
        )
        self.centroids = centroids
        self.train_sampler = sampler
        self.train_dataset = RasterTemporalPairs(
            rasters, centroids, scale=self.scale, max_load_failures=self.max_load_failures
        )

    def teardown(self, stage: str) -> None:
        """Print the raster reads that failed in this process (workers warned of their own)."""
        summary = "" if self.train_dataset is None else self.train_dataset.load_failures.summary()
        if summary:
            print(summary, file=sys.stderr)

    def band_statistics(self, num_samples: int = 256) -> tuple[list[float], list[float]]:
        r"""Per-band mean and std of the training patches on the ``[0, 1]`` scale (cached).

        The sample: ``num_samples`` patches drawn by the training rule
        ([`TemporalGeoPairSampler.draw`][geossl.samplers.temporal_geo.TemporalGeoPairSampler.draw]
        with ``torch.Generator().manual_seed(seed)``: uniform over the valid area, ``patch_size``
        pixels, at most ``max_nodata_fraction`` nodata), each read at the date of its view 0 (a
        uniform valid date), scaled as the model sees it (uint8 / 255, else ``clamp(value * scale,
        0, 1)``). Pixels whose bands all equal the nodata value
        (`TimeSeriesRasters.nodata_value`) are left out. The estimator is the pooled population mean
        and standard deviation of [`BandMoments`][geossl.datasets.band_stats.BandMoments]:
        $\mu_c = \frac{1}{N_c}\sum_i x_{c,i}$,
        $\sigma_c = \sqrt{\frac{1}{N_c}\sum_i (x_{c,i} - \mu_c)^2}$.

        The result is cached as JSON in ``cache_dir`` under a hash of the files (paths, sizes,
        modification times), the band selection, ``scale``, ``nodata``, ``crs``, ``res``, the
        patch rule, ``seed`` and ``num_samples``: a restart reads it back.

        Args:
            num_samples: patches to read.

        Returns:
            ``(mean, std)``, one value per band.

        Raises:
            ValueError: if ``num_samples < 1`` or no sampled pixel holds data.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.setup("fit")
        rasters, sampler, dataset = self.rasters, self.train_sampler, self.train_dataset
        if rasters is None or sampler is None or dataset is None:  # pragma: no cover
            raise RuntimeError("RasterTimeSeriesDataModule.setup() did not create the dataset")
        indexed = [str(p) for p in rasters.index["filepath"]]
        files = indexed
        if rasters.band_files is not None:
            files = [f for path in indexed for f in rasters.band_files[path]]
        parts: dict[str, Any] = {
            "what": "rasters",
            "files": files_fingerprint(files),
            "bands": self.bands,
            "band_names": self.band_names,
            "filename_regex": self.filename_regex,
            "date_format": self.date_format,
            "crs": str(rasters.crs),
            "res": list(rasters.res),
            "nodata": rasters.nodata_value,
            "scale": dataset.scale,
            "band_indexes": rasters.band_indexes,
            "patch_size": self.patch_size,
            "max_nodata_fraction": self.max_nodata_fraction,
            "single_date_pairs": self.single_date_pairs,
            "seed": self.seed,
            "num_samples": num_samples,
        }
        key = band_stats_key(parts)
        where = ", ".join(self.paths)
        what = f"{num_samples} patches of {where}"

        def compute() -> BandStatistics:
            generator = torch.Generator().manual_seed(self.seed)
            boxes, dates = sampler.draw(num_samples, generator)
            moments = BandMoments(rasters.num_bands)
            for box, date in zip(boxes, dates[:, 0], strict=True):
                raw = dataset.read(rasters.query(box, int(date)))  # [C, H, W]
                if raw is None:  # unreadable tiles: counted and warned, the patch left out
                    continue
                valid = valid_pixels(raw, rasters.nodata_value)  # [H, W]
                image = dataset.to_unit(raw)
                unit = image.float() / 255.0 if image.dtype == torch.uint8 else image
                moments.update(unit[:, valid])  # [C, N]
            return moments.result(what)

        path = self._cache_folder() / f"band-stats-rasters-{key[:16]}.json"
        description = {"paths": self.paths, "num_samples": num_samples, "seed": self.seed}
        stats, _ = cached_band_statistics(path, key, compute, description)
        return list(stats.mean), list(stats.std)

    def _cache_folder(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        first = Path(self.paths[0])
        return (first if first.is_dir() else first.parent) / ".geossl"

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Batches of temporal pairs drawn by the seeded `TemporalGeoPairSampler`."""
        if self.train_dataset is None or self.train_sampler is None:
            self.setup("fit")
        if self.train_dataset is None or self.train_sampler is None:  # pragma: no cover
            raise RuntimeError("RasterTimeSeriesDataModule.setup() did not create the dataset")
        return ResumableDataLoader(
            self.train_dataset,
            sampler=self.train_sampler,
            drop_last=self.drop_last,
            seed=self.seed,
            **loader_kwargs(
                self.batch_size,
                self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.persistent_workers,
            ),
        )
