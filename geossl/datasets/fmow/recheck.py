"""Re-checking, at each start, the samples that a cached fMoW index skipped as bad.

The cache key hashes folder mtimes, and editing a file in place changes none: a JSON fixed after
indexing kept its sample out until a full rebuild. The cached report lists every skipped sample with
the size and mtime of its JSON and image files (`FMoWIndexReport.bad_files`); on a cache hit
[`recheck_bad_samples`][geossl.datasets.fmow.recheck.recheck_bad_samples] stats only those files
(a few per bad sample, never the whole tree), re-scans the location folders where one changed, and
writes the updated index back to the cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from geossl.datasets.fmow.cache import _INDEX_SCHEMA, _save_index, _to_pandas
from geossl.datasets.fmow.constants import INDEX_COLUMNS, PRODUCTS
from geossl.datasets.fmow.report import FMoWIndexReport, _say
from geossl.datasets.fmow.scan import _scan_units, _Unit
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit

__all__ = ["bad_file_signature", "recheck_bad_samples"]


def bad_file_signature(root: str, path: str, exts: Sequence[str]) -> list[int]:
    """Size and ``mtime_ns`` of the JSON and the images of the sample of ``path`` (-1 if missing).

    Args:
        root: the fMoW root.
        path: the sample's JSON or image, relative to the root, ``/``-separated.
        exts: the product's image extensions (``[".jpg", ".tif"]``).

    Returns:
        ``[size, mtime_ns]`` of ``{stem}.json``, then of ``{stem}{ext}`` for each ext, flattened.

    Example:
        >>> bad_file_signature("/nonexistent", "train/a/a_0/a_0_0_rgb.json", [".jpg"])
        [-1, -1, -1, -1]
    """
    folder, _, name = path.rpartition("/")
    stem = os.path.splitext(name)[0]
    base = os.path.join(root, *folder.split("/")) if folder else root
    signature: list[int] = []
    for suffix in (".json", *exts):
        try:
            stat = os.stat(os.path.join(base, stem + suffix))
            signature += [stat.st_size, stat.st_mtime_ns]
        except OSError:
            signature += [-1, -1]
    return signature


#: Bad samples re-checked at most (about 40 us of stat calls each at every start); past it the
#: list is dropped, and only ``--data.rebuild_index true`` picks up a fix.
MAX_RECHECKED = 50_000


def sign_bad_files(report: FMoWIndexReport, root: str, product: str) -> None:
    """Append its signature to every ``[reason, path]`` of ``report.bad_files`` lacking one."""
    if len(report.bad_files) > MAX_RECHECKED:
        report.bad_files = []
        return
    exts = list(PRODUCTS[product])
    for entry in report.bad_files:
        if len(entry) == 2:
            entry.append(bad_file_signature(root, entry[1], exts))


def _changed_units(
    report: FMoWIndexReport, root: str, product: str, units: list[_Unit]
) -> list[_Unit]:
    """The location folders holding a bad sample whose files changed since the build."""
    exts = list(PRODUCTS[product])
    by_folder = {u.folder: u for u in units}
    changed: set[str] = set()
    for entry in report.bad_files:
        if len(entry) != 3:
            continue
        folder = str(entry[1]).rpartition("/")[0]
        if (
            folder in by_folder
            and folder not in changed
            and bad_file_signature(root, str(entry[1]), exts) != list(entry[2])
        ):
            changed.add(folder)
    return [by_folder[f] for f in sorted(changed)]


def _update_report(
    report: FMoWIndexReport, part: FMoWIndexReport, folders: set[str], old_valid: int
) -> None:
    """Swap the rescanned folders' old bad samples in ``report`` for those of ``part``."""
    kept, removed = [], 0
    for entry in report.bad_files:
        if str(entry[1]).rpartition("/")[0] in folders:
            reason = str(entry[0])
            report.bad_by_reason[reason] -= 1
            if not report.bad_by_reason[reason]:
                del report.bad_by_reason[reason]
            removed += 1
        else:
            kept.append(entry)
    report.bad_files = kept
    report.num_bad -= removed
    report.examples = {
        reason: [p for p in paths if p.rpartition("/")[0] not in folders]
        for reason, paths in report.examples.items()
        if reason in report.bad_by_reason
    }
    report.num_scanned -= removed + old_valid  # merge adds the folders' samples back
    report.merge(part)


def _new_rows(
    batch: pa.RecordBatch, old: pd.DataFrame, centroids: np.ndarray[Any, Any]
) -> pd.DataFrame:
    """The rescanned rows, each with its location's ``geo_label``.

    That is the label of the location's rows in ``old`` (before the re-scan), else that of the
    centroid nearest to the location's mean position, else -1 (no centroids).
    """
    rows: pd.DataFrame = batch.to_pandas().drop(columns=["unit"])
    known = old.groupby("location")["geo_label"].first().to_dict()
    labels = np.full(len(rows), -1, dtype=np.int16)
    for location, positions in rows.groupby("location").indices.items():
        if location in known:
            labels[positions] = known[location]
        elif len(centroids):
            lat, lon = rows["lat"].to_numpy()[positions], rows["lon"].to_numpy()[positions]
            mean = latlon_to_unit(lat, lon).sum(axis=0, keepdims=True)
            labels[positions] = assign_clusters(mean, centroids)[0]
    rows["geo_label"] = labels
    rows["location_id"] = 0
    return rows


def recheck_bad_samples(
    table: pd.DataFrame,
    centroids: np.ndarray[Any, Any],
    report: FMoWIndexReport,
    units: list[_Unit],
    params: dict[str, Any],
    cache_path: Path,
    progress: bool,
) -> pd.DataFrame | None:
    """Re-scan the location folders where a sample recorded as bad changed; update the cache.

    Args:
        table: the cached index (pandas, as `FMoWIndex.table`).
        centroids: the cached geo-cluster centroids.
        report: the cached build's report (updated in place when something changed).
        units: the location folders found now.
        params: the build parameters (``root``, ``product``, ``verify_images``...).
        cache_path: the cache file, rewritten when something changed.
        progress: print what was re-checked (else log it).

    Returns:
        The updated table, or None when no recorded bad sample changed (fMoW-Sentinel: never
        re-checked; its samples come from CSVs).
    """
    root, product = str(params["root"]), str(params["product"])
    if product == "sentinel" or not report.bad_files:
        return None
    rescan = _changed_units(report, root, product, units)
    if not rescan:
        return None
    task = [(i, u.folder, u.split, u.category, u.location) for i, u in enumerate(rescan)]
    batch, part = _scan_units((root, product, bool(params["verify_images"]), task))
    sign_bad_files(part, root, product)
    stale = table["location"].isin({u.location for u in rescan}).to_numpy()
    _update_report(report, part, {u.folder for u in rescan}, int(stale.sum()))
    rows = _new_rows(batch, table.loc[stale], centroids)
    frame = pd.concat([table.loc[~stale], rows], ignore_index=True)
    frame = frame.sort_values(["location", "timestamp", "t"], kind="stable", ignore_index=True)
    frame["location_id"] = pd.factorize(frame["location"])[0].astype(np.int32)
    report.num_valid = len(frame)
    report.num_locations = int(frame["location_id"].max()) + 1 if len(frame) else 0
    arrow = pa.Table.from_pandas(
        frame[[name for name, _ in INDEX_COLUMNS]], schema=_INDEX_SCHEMA, preserve_index=False
    )
    _save_index(arrow, cache_path, params, centroids, report)
    _say(
        f"Re-checked {len(rescan)} location folder(s) whose bad samples changed: "
        f"{batch.num_rows} image(s) now valid there, {part.num_bad} still bad",
        progress,
    )
    return _to_pandas(arrow)
