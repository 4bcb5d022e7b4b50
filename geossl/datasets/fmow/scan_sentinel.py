"""The scan of fMoW-Sentinel behind `build_fmow_index`.

fMoW-Sentinel lists its samples in CSVs
([`read_fmow_sentinel_csv`][geossl.datasets.fmow.sentinel.read_fmow_sentinel_csv]): its cache
fingerprint covers the CSVs and the split and category folders (no CSV is parsed), its locations
come from the CSVs on a cache miss, and the scan workers read each image's GeoTIFF header
([`read_sentinel_header`][geossl.datasets.fmow.sentinel.read_sentinel_header]) into the rows of
[`scan`][geossl.datasets.fmow.scan]'s batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from geossl.datasets.errors import DatasetNotFoundError
from geossl.datasets.fmow.constants import FMOW_SENTINEL_CSV
from geossl.datasets.fmow.report import FMoWIndexReport
from geossl.datasets.fmow.scan import _LABELS, _SCAN_COLUMNS, _SCAN_SCHEMA, _mtime_ns, _Unit
from geossl.datasets.fmow.sentinel import read_fmow_sentinel_csv, read_sentinel_header

__all__: list[str] = []


def _check_sentinel_layout(root: str, splits: Sequence[str]) -> None:
    if not os.path.isdir(root):
        exists = os.path.exists(root)
        problem = "root is not a folder" if exists else "root folder does not exist"
        problem = f"fMoW-Sentinel {problem}"
        raise DatasetNotFoundError(root, problem)
    missing = [
        name
        for split in splits
        for name in (FMOW_SENTINEL_CSV[split], f"{split}/")
        if not os.path.exists(os.path.join(root, name))
    ]
    if missing:
        raise DatasetNotFoundError(root, f"fMoW-Sentinel {', '.join(missing)} not found")


#: One location of fMoW-Sentinel for a scan worker: (unit, split, category, location, images), each
#: image ``(path, image_id, timestamp, lon, lat)`` from the CSV.
_SentinelUnit = tuple[int, str, str, str, list[tuple[str, int, int, float, float]]]


def _sentinel_entries(root: str, splits: Sequence[str]) -> list[str]:
    """Fingerprint entries of fMoW-Sentinel (no CSV is parsed).

    Each CSV's size and ``mtime_ns`` (the CSV is the list of samples) and the split and category
    folders' ``mtime_ns``.
    """
    entries: list[str] = []
    for split in splits:
        name = FMOW_SENTINEL_CSV[split]
        stat = os.stat(os.path.join(root, name))
        entries.append(f"{name}\t{stat.st_mtime_ns}\t{stat.st_size}")
        split_dir = os.path.join(root, split)
        entries.append(f"{split}\t{_mtime_ns(split_dir)}")
        with os.scandir(split_dir) as categories:
            for cat in categories:
                if not cat.name.startswith(".") and cat.is_dir():
                    entries.append(f"{split}/{cat.name}\t{cat.stat().st_mtime_ns}")
    return entries


def _discover_sentinel(
    root: str, splits: Sequence[str], report: FMoWIndexReport
) -> tuple[list[_Unit], dict[str, list[tuple[str, int, int, float, float]]]]:
    """Locations of fMoW-Sentinel from its CSVs (bad rows go to ``report``) and their images."""
    units: list[_Unit] = []
    images: dict[str, list[tuple[str, int, int, float, float]]] = {}
    for split in splits:
        rows, bad = read_fmow_sentinel_csv(root, split)
        report.num_scanned += len(rows) + len(bad)
        for reason, where in bad:
            report.add_bad(reason, where)
        for path, category, location_id, image_id, timestamp, lon, lat in zip(
            rows["path"].tolist(),
            rows["category"].tolist(),
            rows["location_id"].tolist(),
            rows["image_id"].tolist(),
            rows["timestamp"].tolist(),
            rows["lon"].tolist(),
            rows["lat"].tolist(),
            strict=True,
        ):
            location = f"{split}/{category}_{location_id}"
            if location not in images:
                images[location] = []
                units.append(_Unit(path.rpartition("/")[0], split, category, location))
            images[location].append((path, image_id, timestamp, lon, lat))
    return units, images


def _scan_sentinel_units(
    task: tuple[str, list[_SentinelUnit]],
) -> tuple[pa.RecordBatch, FMoWIndexReport]:
    """Read the GeoTIFF header of every listed fMoW-Sentinel image; return rows and a report.

    The whole image is the crop and the target box (a composite covers the location's footprint);
    lon/lat are the raster's centre, else the CSV polygon's centroid.
    """
    root, units = task
    report = FMoWIndexReport(root=root, splits=[], product="sentinel")
    cols: dict[str, list[Any]] = {name: [] for name, _ in _SCAN_COLUMNS}
    sep = os.sep
    for unit_id, split, category, location, images in units:
        label = _LABELS[category]
        for path, image_id, timestamp, csv_lon, csv_lat in images:
            report.num_images_checked += 1
            if not 0 <= image_id < 32768:
                report.add_bad("malformed id", path)
                continue
            header = read_sentinel_header(root + sep + path.replace("/", sep))
            if isinstance(header, str):
                report.add_bad(header, path)
                continue
            lon, lat = header.lon, header.lat
            if not (math.isfinite(lon) and math.isfinite(lat)):
                lon, lat = csv_lon, csv_lat
            if not (math.isfinite(lon) and math.isfinite(lat)):
                report.add_bad("no location", path)
                continue
            w, h = header.width, header.height
            row: dict[str, Any] = {
                "path": path,
                "split": split,
                "category": category,
                "label": label,
                "location": location,
                "t": image_id,
                "timestamp": timestamp,
                "lat": lat,
                "lon": lon,
                "gsd": header.gsd,
                "cloud_cover": math.nan,
                "img_width": w,
                "img_height": h,
                "box_x": 0,
                "box_y": 0,
                "box_w": w,
                "box_h": h,
                "crop_x0": 0,
                "crop_y0": 0,
                "crop_x1": w,
                "crop_y1": h,
                "country_code": "",
                "unit": unit_id,
            }
            for name, value in row.items():
                cols[name].append(value)
    arrays = [pa.array(cols[name], type=typ) for name, typ in _SCAN_COLUMNS]
    return pa.RecordBatch.from_arrays(arrays, schema=_SCAN_SCHEMA), report
