"""The fMoW index: one row per image, built by a streaming scan and cached as Parquet.

[`build_fmow_index`][geossl.datasets.fmow.index.build_fmow_index] walks the fMoW tree with
`os.scandir` (no glob of a million paths), parses every image's JSON with the stdlib `json`, checks
the image cheaply (present, not empty, a JPEG ends with the ``FF D9`` marker), computes the context
crop and writes the rows, sorted by ``(location_id, timestamp, t)``, to
``{cache_dir}/fmow-index-{product}-{key}.parquet`` with `pyarrow.parquet.ParquetWriter`. The columns
are those of docs/design.md.

Bad samples (missing or malformed JSON, missing, empty or truncated image, degenerate box, no
timestamp or location) are skipped, counted by reason with a few example paths, and summarised at
the end of the build ([`FMoWIndexReport`][geossl.datasets.fmow.report.FMoWIndexReport]); too many of
them raise [`BadDatasetError`][geossl.datasets.errors.BadDatasetError].

The cache key hashes the build parameters and a cheap fingerprint of the data: the relative path
and ``mtime_ns`` of every folder down to the location folders, plus the ``{split}_gt_mapping.json``
files. Adding or removing an image, a location or a category changes a folder's mtime and so
triggers a rebuild; editing a file in place does not (folder mtimes do not change): pass
``rebuild=True`` (``geossl datasets index fmow --rebuild``) after such an edit. The key also holds
the dataset root's real path, so a moved or copied dataset is re-indexed once.

Layout: ``{root}/{split}/{category}/{category}_{loc}/{category}_{loc}_{t}_{product}.{ext}`` with
the ``.json`` beside each image for train/val; for test/seq the folders listed in
``{root}/{split}_gt_mapping.json`` (``{"input": "{split}_gt/{category}/{category}_{loc}",
"output": "{split}/{id}"}``, the category comes from ``input``).

fMoW-Sentinel (``product="sentinel"``, splits ``train``/``val``/``test``): the samples are the
rows of ``train.csv`` / ``val.csv`` / ``test_gt.csv``
([`read_fmow_sentinel_csv`][geossl.datasets.fmow.sentinel.read_fmow_sentinel_csv]), images at
``{split}/{category}/{category}_{loc}/{category}_{loc}_{id} .tif``. Every image's header is read
(size, 13 bands, location), whatever ``verify_images`` says; the whole image is the crop and the
target box, ``t`` is the ``image_id``. The fingerprint covers the CSVs and the split and category
folders, so the CSVs are only read on a cache miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from geossl.datasets.fmow.cache import _INDEX_SCHEMA, _read_cache, _save_index, _to_pandas
from geossl.datasets.fmow.constants import (
    FMOW_SENTINEL_CSV,
    FMOW_SPLITS,
    INDEX_COLUMNS,
    INDEX_FORMAT_VERSION,
    PRODUCTS,
)
from geossl.datasets.fmow.recheck import recheck_bad_samples, sign_bad_files
from geossl.datasets.fmow.report import (
    REBUILD_HINT,
    FMoWIndexReport,
    _check_bad_fraction,
    _print_summary,
    _say,
)
from geossl.datasets.fmow.scan import (
    _SCAN_SCHEMA,
    _check_layout,
    _discover,
    _hash_entries,
    _scan_units,
    _task_results,
    _Unit,
)
from geossl.datasets.fmow.scan_sentinel import (
    _check_sentinel_layout,
    _discover_sentinel,
    _scan_sentinel_units,
    _sentinel_entries,
)
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit, spherical_kmeans
from geossl.utils.checks import check_at_least, check_fraction

__all__ = ["FMoWIndex", "build_fmow_index"]

#: Location folders scanned per worker task.
_UNITS_PER_TASK = 32


@dataclass
class FMoWIndex:
    """The result of [`build_fmow_index`][geossl.datasets.fmow.index.build_fmow_index].

    Attributes:
        table: one row per valid image, columns of docs/design.md, sorted by
            ``(location_id, timestamp, t)``.
        centroids: geo-cluster centroids, unit vectors ``float64 [K, 3]`` (``geo_label`` indexes;
            ``[0, 3]`` for an index built without geo clusters, whose ``geo_label`` is -1).
        report: what the build saw (for a cached index: the report of the build that wrote it).
        cache_path: the Parquet file (written, or read when ``from_cache``).
        from_cache: whether the table was read from ``cache_path`` instead of built.
    """

    table: pd.DataFrame
    centroids: npt.NDArray[np.float64]
    report: FMoWIndexReport
    cache_path: Path
    from_cache: bool

    def split_rows(self, *splits: str) -> pd.DataFrame:
        """Rows of the given splits (all when none), still sorted, with a fresh ``RangeIndex``."""
        if not splits:
            return self.table.reset_index(drop=True)
        mask = self.table["split"].isin(list(splits))
        return self.table.loc[mask].reset_index(drop=True)


def _geo_clusters(
    table: pa.Table,
    location_id: npt.NDArray[np.int32],
    num_locations: int,
    units: list[_Unit],
    location_units: npt.NDArray[np.int64],
    splits: Sequence[str],
    num_geo_clusters: int,
    seed: int,
    root: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int16]]:
    """Spherical k-means of the training locations; return the centroids and each row's label."""
    # One point per location: the normalised mean of its images' footprint centres.
    points = latlon_to_unit(table.column("lat").to_numpy(), table.column("lon").to_numpy())
    sums = np.stack(
        [np.bincount(location_id, weights=points[:, d], minlength=num_locations) for d in range(3)],
        axis=1,
    )
    location_points = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)
    location_split = np.array([units[u].split for u in location_units])
    train = location_split == "train" if "train" in splits else np.ones(num_locations, dtype=bool)
    centroids, _ = spherical_kmeans(
        location_points[train],
        num_geo_clusters,
        seed,
        k_name="data.num_geo_clusters",
        what="training locations" if "train" in splits else "locations",
        context=root,
    )
    geo_label = assign_clusters(location_points, centroids).astype(np.int16)[location_id]
    return centroids, geo_label


def _finish_table(
    batches: list[pa.RecordBatch],
    units: list[_Unit],
    splits: Sequence[str],
    num_geo_clusters: int | None,
    seed: int,
    root: str,
) -> tuple[pa.Table, npt.NDArray[np.float64], int]:
    """Sort the scanned rows, add ``location_id`` and ``geo_label``; return table, centroids, L."""
    table = pa.Table.from_batches(batches, schema=_SCAN_SCHEMA)
    unit = table.column("unit").to_numpy()
    order = np.lexsort((table.column("t").to_numpy(), table.column("timestamp").to_numpy(), unit))
    table = table.take(pa.array(order))
    unit = unit[order]
    new_location = np.ones(len(unit), dtype=bool)
    new_location[1:] = unit[1:] != unit[:-1]
    location_id = (np.cumsum(new_location) - 1).astype(np.int32)
    num_locations = int(location_id[-1]) + 1
    starts = np.flatnonzero(new_location)

    if num_geo_clusters is None:  # fine-tuning and evaluation: no geo labels
        centroids = np.zeros((0, 3), dtype=np.float64)
        geo_label = np.full(len(location_id), -1, dtype=np.int16)
    else:
        centroids, geo_label = _geo_clusters(
            table,
            location_id,
            num_locations,
            units,
            unit[starts],
            splits,
            num_geo_clusters,
            seed,
            root,
        )

    columns = []
    for name, typ in INDEX_COLUMNS:
        if name == "location_id":
            columns.append(pa.array(location_id, type=typ))
        elif name == "geo_label":
            columns.append(pa.array(geo_label, type=typ))
        else:
            columns.append(table.column(name))
    return pa.Table.from_arrays(columns, schema=_INDEX_SCHEMA), centroids, num_locations


def build_fmow_index(
    root: str | os.PathLike[str],
    splits: Sequence[str] = ("train", "val"),
    product: str = "rgb",
    num_geo_clusters: int | None = 100,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    workers: int | None = None,
    verify_images: bool = True,
    max_bad_fraction: float = 0.5,
    progress: bool = True,
) -> FMoWIndex:
    """Build (or load from the cache) the fMoW index of ``splits``.

    The layouts read (fMoW and fMoW-Sentinel) are those of the module's description.

    Geo clusters: spherical k-means
    ([`spherical_kmeans`][geossl.datasets.geo_clusters.spherical_kmeans]) over the train split's
    locations (one 3-D unit vector per location); every location of every split gets the nearest
    centroid. Without a train split the requested splits are clustered.

    Args:
        root: the fMoW root folder.
        splits: splits to index, from ``train``, ``val``, ``test``, ``seq``.
        product: ``"rgb"`` (``_rgb.jpg``, else fMoW-full's ``_rgb.tif``), ``"msrgb"``
            (``_msrgb.jpg``), ``"ms"`` (fMoW-full's ``_ms.tif``) or ``"sentinel"``
            (fMoW-Sentinel's 13-band GeoTIFFs).
        num_geo_clusters: number of geo clusters K; None computes none (every ``geo_label`` is
            -1, no centroids): what fine-tuning and evaluation use, so that a small labelled
            subset needs no more locations than clusters.
        seed: k-means seed.
        cache_dir: where the Parquet cache goes; default ``{root}/.geossl``. A cache that cannot be
            written (read-only dataset) only warns.
        rebuild: ignore an existing cache (needed after editing files in place).
        workers: scan processes (forked on Linux); default ``min(8, os.cpu_count())``; 1 scans in
            this process. On 2 cores, 2 workers index ~15k images/s against ~9.6k for 1
            (``benchmarks/index_build.py``, files in the page cache); on network storage more
            workers hide more latency.
        verify_images: open each image to check its header and (JPEG) end marker; otherwise only
            the presence of the file is checked.
        max_bad_fraction: raise if more than this fraction of the samples is bad.
        progress: show a progress bar and print the summary (else log it).

    Returns:
        The index, its centroids, the report and where the cache is.

    Raises:
        DatasetNotFoundError: if the root, a split folder, a mapping file or (fMoW-Sentinel) a CSV
            is missing.
        BadDatasetError: if nothing valid is found or more than ``max_bad_fraction`` is bad.
        ValueError: for invalid arguments, or more geo clusters than distinct training locations.
    """
    start_time = time.perf_counter()
    root_str = os.fspath(root)
    splits, workers = _check_build_arguments(
        splits, product, num_geo_clusters, max_bad_fraction, workers
    )
    report = FMoWIndexReport(root=root_str, splits=splits, product=product, workers=workers)
    units, entries = _discover_units(root_str, splits, product, report)
    params, cache_path = _cache_location(
        root_str, splits, product, num_geo_clusters, seed, verify_images, entries, cache_dir
    )
    cached = _load_cached_index(cache_path, units, params, rebuild, max_bad_fraction, progress)
    if cached is not None:
        return cached
    units, batches = _scan_all_units(
        root_str, splits, product, verify_images, units, workers, report, progress
    )
    report.num_valid = sum(b.num_rows for b in batches)
    _check_bad_fraction(report, max_bad_fraction)
    table, centroids, report.num_locations = _finish_table(
        batches, units, splits, num_geo_clusters, seed, root_str
    )
    report.seconds = time.perf_counter() - start_time
    _save_index(table, cache_path, params, centroids, report)
    _print_summary(report, progress)
    return FMoWIndex(_to_pandas(table), centroids, report, cache_path, False)


def _check_build_arguments(
    splits: Sequence[str],
    product: str,
    num_geo_clusters: int | None,
    max_bad_fraction: float,
    workers: int | None,
) -> tuple[list[str], int]:
    """Check `build_fmow_index`'s arguments; return the splits (deduplicated) and workers.

    Raises:
        ValueError: for unknown splits or product, fMoW-Sentinel splits it lacks, fewer than one
            geo cluster or worker, or ``max_bad_fraction`` outside ``[0, 1]``.
    """
    splits = list(dict.fromkeys(splits))
    unknown = [s for s in splits if s not in FMOW_SPLITS]
    if not splits or unknown:
        raise ValueError(f"splits must be a non-empty subset of {list(FMOW_SPLITS)}, got {splits}")
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {sorted(PRODUCTS)}, got {product!r}")
    if product == "sentinel" and any(s not in FMOW_SENTINEL_CSV for s in splits):
        raise ValueError(f"fMoW-Sentinel has the splits {list(FMOW_SENTINEL_CSV)}, got {splits}")
    if num_geo_clusters is not None:
        check_at_least("num_geo_clusters", num_geo_clusters, 1)
    check_fraction("max_bad_fraction", max_bad_fraction)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    check_at_least("workers", workers, 1)
    return splits, workers


def _discover_units(
    root: str, splits: Sequence[str], product: str, report: FMoWIndexReport
) -> tuple[list[_Unit], list[str]]:
    """Check the layout; return the location folders (fMoW-Sentinel: none yet) and fingerprint.

    Raises:
        DatasetNotFoundError: if a split folder, a mapping file or a CSV is missing.
    """
    if product == "sentinel":
        _check_sentinel_layout(root, splits)
        return [], _sentinel_entries(root, splits)  # the CSVs are read on a cache miss only
    _check_layout(root, splits)
    return _discover(root, splits, report)


def _cache_location(
    root: str,
    splits: list[str],
    product: str,
    num_geo_clusters: int | None,
    seed: int,
    verify_images: bool,
    entries: list[str],
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[dict[str, Any], Path]:
    """The build parameters (the cache key's input, stored in the cache) and the cache's path."""
    params = {
        "version": INDEX_FORMAT_VERSION,
        "root": os.path.realpath(root),
        "splits": splits,
        "product": product,
        "num_geo_clusters": num_geo_clusters,
        "seed": seed,
        "verify_images": verify_images,
        "fingerprint": _hash_entries(entries),
    }
    key = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=8).hexdigest()
    directory = Path(cache_dir) if cache_dir is not None else Path(root) / ".geossl"
    return params, directory / f"fmow-index-{product}-{key}.parquet"


def _load_cached_index(
    cache_path: Path,
    units: list[_Unit],
    params: dict[str, Any],
    rebuild: bool,
    max_bad_fraction: float,
    progress: bool,
) -> FMoWIndex | None:
    """The cached index, or None when there is none, ``rebuild`` or (warned) it cannot be read.

    The samples it recorded as bad whose files changed since are re-checked first
    ([`recheck_bad_samples`][geossl.datasets.fmow.recheck.recheck_bad_samples]).

    Raises:
        BadDatasetError: when the cached build saw more than ``max_bad_fraction`` bad samples.
    """
    if rebuild or not cache_path.is_file():
        return None
    try:
        table, centroids, report = _read_cache(cache_path)
    except Exception as err:  # any unreadable cache is rebuilt, never trusted
        warnings.warn(
            f"{cache_path}: corrupt fMoW index cache ({type(err).__name__}: {err}); rebuilding",
            RuntimeWarning,
            stacklevel=3,  # build_fmow_index's caller, as when this was inline
        )
        return None
    frame = _to_pandas(table)
    updated = recheck_bad_samples(frame, centroids, report, units, params, cache_path, progress)
    frame = frame if updated is None else updated
    _check_bad_fraction(report, max_bad_fraction)
    skipped = f"; {report.num_bad:,} bad samples skipped ({REBUILD_HINT})" if report.num_bad else ""
    _say(f"Using the cached fMoW index {cache_path} ({len(frame):,} images){skipped}", progress)
    return FMoWIndex(frame, centroids, report, cache_path, True)


def _scan_all_units(
    root_str: str,
    splits: Sequence[str],
    product: str,
    verify_images: bool,
    units: list[_Unit],
    workers: int,
    report: FMoWIndexReport,
    progress: bool,
) -> tuple[list[_Unit], list[pa.RecordBatch]]:
    """Scan the locations in tasks of `_UNITS_PER_TASK` on ``workers``.

    fMoW-Sentinel's locations are read from its CSVs here (on a cache miss only). Each task's
    report is merged into ``report``.

    Returns:
        The locations, sorted by location, and their batches in that order.
    """
    sentinel = product == "sentinel"
    images: dict[str, list[tuple[str, int, int, float, float]]] = {}
    if sentinel:
        units, images = _discover_sentinel(root_str, splits, report)
    units.sort(key=lambda u: u.location)
    chunks = [
        (lo, units[lo : lo + _UNITS_PER_TASK]) for lo in range(0, len(units), _UNITS_PER_TASK)
    ]
    batches: list[pa.RecordBatch] = []
    from tqdm.auto import tqdm

    # The pool forks before tqdm starts its monitor thread.
    with contextlib.ExitStack() as stack:
        if sentinel:
            sentinel_tasks = [
                (
                    root_str,
                    [
                        (i, u.split, u.category, u.location, images[u.location])
                        for i, u in enumerate(chunk, lo)
                    ],
                )
                for lo, chunk in chunks
            ]
            results = stack.enter_context(
                _task_results(_scan_sentinel_units, sentinel_tasks, workers)
            )
        else:
            folder_tasks = [
                (
                    root_str,
                    product,
                    verify_images,
                    [
                        (i, u.folder, u.split, u.category, u.location)
                        for i, u in enumerate(chunk, lo)
                    ],
                )
                for lo, chunk in chunks
            ]
            results = stack.enter_context(_task_results(_scan_units, folder_tasks, workers))
        bar = stack.enter_context(
            tqdm(total=len(units), desc="Indexing fMoW", unit="loc", disable=not progress)
        )
        for (_, chunk), (batch, part) in zip(chunks, results, strict=True):
            batches.append(batch)
            report.merge(part)
            bar.update(len(chunk))
    sign_bad_files(report, root_str, product)  # for the re-check at the next start
    return units, batches
