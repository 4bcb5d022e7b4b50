"""The fMoW index: one row per image, built by a streaming scan and cached as Parquet.

:func:`build_fmow_index` walks the fMoW tree with :func:`os.scandir` (no glob of a million paths),
parses every image's JSON with the stdlib :mod:`json`, checks the image cheaply (present, not empty,
a JPEG ends with the ``FF D9`` marker), computes the context crop and writes the rows, sorted by
``(location_id, timestamp, t)``, to ``{cache_dir}/fmow-index-{product}-{key}.parquet`` with
:class:`pyarrow.parquet.ParquetWriter`. The columns are those of docs/design.md.

Bad samples (missing or malformed JSON, missing, empty or truncated image, degenerate box, no
timestamp or location) are skipped, counted by reason with a few example paths, and summarised at
the end of the build (:class:`FMoWIndexReport`); too many of them raise
:class:`~geossl.datasets.errors.BadDatasetError`.

The cache key hashes the build parameters and a cheap fingerprint of the data: the relative path
and ``mtime_ns`` of every folder down to the location folders, plus the ``{split}_gt_mapping.json``
files. Adding or removing an image, a location or a category changes a folder's mtime and so
triggers a rebuild; editing a file in place does not (folder mtimes do not change): pass
``rebuild=True`` (``geossl datasets index fmow --rebuild``) after such an edit. The key also holds
the dataset root's real path, so a moved or copied dataset is re-indexed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError, InvalidSampleError
from geossl.datasets.fmow import fmow_context_box, parse_fmow_json
from geossl.datasets.fmow_constants import FMOW_CATEGORIES, FMOW_SENTINEL_CSV, FMOW_SPLITS
from geossl.datasets.fmow_sentinel import read_fmow_sentinel_csv, read_sentinel_header
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit, spherical_kmeans
from geossl.utils.io import atomic_output

__all__ = [
    "INDEX_COLUMNS",
    "INDEX_FORMAT_VERSION",
    "PRODUCTS",
    "FMoWIndex",
    "FMoWIndexReport",
    "build_fmow_index",
    "fmow_fingerprint",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Bumped whenever the columns or their meaning change; part of the cache key.
INDEX_FORMAT_VERSION = 1

Product = Literal["rgb", "msrgb", "ms", "sentinel"]

#: Image extensions of each product, in order of preference (``rgb`` is a JPEG in fMoW-rgb and a
#: GeoTIFF in fMoW-full). The JSON is always ``{stem}_{product}.json``; ``sentinel``
#: (fMoW-Sentinel, :mod:`geossl.datasets.fmow_sentinel`) has metadata CSVs instead of JSONs.
PRODUCTS: dict[str, tuple[str, ...]] = {
    "rgb": (".jpg", ".tif"),
    "msrgb": (".jpg",),
    "ms": (".tif",),
    "sentinel": (".tif",),
}

#: Columns of the index table and their Arrow types, in order (see docs/design.md).
INDEX_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("path", pa.string()),
    ("split", pa.string()),
    ("category", pa.string()),
    ("label", pa.int16()),
    ("location", pa.string()),
    ("location_id", pa.int32()),
    ("t", pa.int16()),
    ("timestamp", pa.int64()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("gsd", pa.float32()),
    ("cloud_cover", pa.float32()),
    ("img_width", pa.int32()),
    ("img_height", pa.int32()),
    ("box_x", pa.int32()),
    ("box_y", pa.int32()),
    ("box_w", pa.int32()),
    ("box_h", pa.int32()),
    ("crop_x0", pa.int32()),
    ("crop_y0", pa.int32()),
    ("crop_x1", pa.int32()),
    ("crop_y1", pa.int32()),
    ("country_code", pa.string()),
    ("geo_label", pa.int16()),
)

# What the scan workers produce: the index columns minus the global ones, plus the unit number.
_SCAN_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    *((n, t) for n, t in INDEX_COLUMNS if n not in ("location_id", "geo_label")),
    ("unit", pa.int32()),
)
_SCAN_SCHEMA = pa.schema([pa.field(n, t, nullable=False) for n, t in _SCAN_COLUMNS])
_INDEX_SCHEMA = pa.schema([pa.field(n, t, nullable=False) for n, t in INDEX_COLUMNS])
_METADATA_KEY = b"geossl.fmow_index"
_MAX_EXAMPLES = 3
_UNITS_PER_TASK = 32
_LABELS = {name: i for i, name in enumerate(FMOW_CATEGORIES)}
_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows needs it for raw reads
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# --------------------------------------------------------------------------------------------------
# report and result
# --------------------------------------------------------------------------------------------------


@dataclass
class FMoWIndexReport:
    """What an index build saw.

    Attributes:
        root: the dataset root.
        splits: the splits indexed.
        product: the image product.
        num_scanned: samples considered (image/JSON pairs, plus lone images and lone JSONs).
        num_valid: rows of the index.
        num_bad: samples skipped (``num_scanned - num_valid``).
        bad_by_reason: skipped samples per reason (``"malformed json"``, ``"truncated image"``...).
        examples: up to 3 example paths (relative to the root) per reason.
        num_locations: locations with at least one valid image.
        num_json_read: JSON files opened and parsed.
        num_images_checked: image files opened to check their header and end marker.
        seconds: wall-clock time of the build up to the cache write (scan, checks, clustering).
        workers: scan processes used.
    """

    root: str
    splits: list[str]
    product: str
    num_scanned: int = 0
    num_valid: int = 0
    num_bad: int = 0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    num_locations: int = 0
    num_json_read: int = 0
    num_images_checked: int = 0
    seconds: float = 0.0
    workers: int = 1

    @property
    def bad_fraction(self) -> float:
        """Fraction of the scanned samples that were skipped (0 when nothing was scanned)."""
        return self.num_bad / self.num_scanned if self.num_scanned else 0.0

    def add_bad(self, reason: str, path: str, count: int = 1) -> None:
        """Count ``count`` bad samples of ``reason`` (keeping ``path`` as an example)."""
        self.num_bad += count
        self.bad_by_reason[reason] = self.bad_by_reason.get(reason, 0) + count
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append(path)

    def merge(self, other: FMoWIndexReport) -> None:
        """Add the counts of ``other`` (a scan chunk) to this report."""
        self.num_scanned += other.num_scanned
        self.num_json_read += other.num_json_read
        self.num_images_checked += other.num_images_checked
        for reason, count in other.bad_by_reason.items():
            examples = other.examples.get(reason, [])
            self.add_bad(reason, examples[0] if examples else "", count)
            kept = self.examples[reason]
            for path in examples[1:]:
                if len(kept) < _MAX_EXAMPLES:
                    kept.append(path)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FMoWIndexReport:
        """The inverse of :meth:`to_dict`."""
        return cls(**data)

    def worst_reason(self) -> str:
        """``"reason (count), e.g. path"`` for the most frequent bad reason, ``""`` when none."""
        if not self.bad_by_reason:
            return ""
        reason, count = max(self.bad_by_reason.items(), key=lambda item: (item[1], item[0]))
        example = self.examples.get(reason) or [""]
        return f"{reason} ({count}), e.g. {example[0]}"

    def summary_lines(self) -> list[str]:
        """The plain-text summary: one line of totals, then one line per bad reason."""
        files = (
            f"{self.num_images_checked:,} GeoTIFF headers"
            if self.product == "sentinel"
            else f"{self.num_json_read:,} JSON + {self.num_images_checked:,} image files"
        )
        lines = [
            f"fMoW index of {self.root} ({', '.join(self.splits)}, {self.product}): "
            f"{self.num_valid:,} images of {self.num_locations:,} locations; "
            f"{self.num_bad:,} of {self.num_scanned:,} samples skipped; "
            f"{files} read in {self.seconds:.1f} s with {self.workers} worker(s)"
        ]
        for reason, count in sorted(self.bad_by_reason.items(), key=lambda item: -item[1]):
            examples = ", ".join(self.examples.get(reason, []))
            lines.append(f"  {reason}: {count:,} (e.g. {examples})")
        return lines


@dataclass
class FMoWIndex:
    """The result of :func:`build_fmow_index`.

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


# --------------------------------------------------------------------------------------------------
# discovery and fingerprint
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Unit:
    """One location folder to scan."""

    folder: str  # relative to the root, "/"-separated: train/airport/airport_0 or test/0000123
    split: str
    category: str
    location: str  # train/airport_0 or test/0000123


def _mtime_ns(path: str) -> int:
    return os.stat(path).st_mtime_ns


def _discover(
    root: str, splits: Sequence[str], report: FMoWIndexReport | None = None
) -> tuple[list[_Unit], list[str]]:
    """Location folders of ``splits`` and the fingerprint entries (relative path, mtime_ns)."""
    units: list[_Unit] = []
    entries: list[str] = []
    for split in splits:
        split_dir = os.path.join(root, split)
        if split in ("test", "seq"):
            units += _discover_mapped(root, split, entries, report)
            continue
        entries.append(f"{split}\t{_mtime_ns(split_dir)}")
        with os.scandir(split_dir) as categories:
            for cat in categories:
                if cat.name.startswith(".") or not cat.is_dir():
                    continue
                cat_rel = f"{split}/{cat.name}"
                entries.append(f"{cat_rel}\t{cat.stat().st_mtime_ns}")
                with os.scandir(cat.path) as locations:
                    for loc in locations:
                        if loc.name.startswith(".") or not loc.is_dir():
                            continue
                        rel = f"{cat_rel}/{loc.name}"
                        entries.append(f"{rel}\t{loc.stat().st_mtime_ns}")
                        units.append(_Unit(rel, split, cat.name, f"{split}/{loc.name}"))
    return units, entries


def _discover_mapped(
    root: str, split: str, entries: list[str], report: FMoWIndexReport | None
) -> list[_Unit]:
    """Units of a test/seq split from ``{split}_gt_mapping.json`` (category from ``input``)."""
    mapping_name = f"{split}_gt_mapping.json"
    mapping_path = os.path.join(root, mapping_name)
    stat = os.stat(mapping_path)
    entries.append(f"{mapping_name}\t{stat.st_mtime_ns}\t{stat.st_size}")
    split_dir = os.path.join(root, split)
    entries.append(f"{split}\t{_mtime_ns(split_dir)}")
    folders: dict[str, int] = {}
    with os.scandir(split_dir) as children:
        for child in children:
            if not child.name.startswith(".") and child.is_dir():
                folders[child.name] = child.stat().st_mtime_ns
    try:
        with open(mapping_path, "rb") as fh:
            mapping = json.loads(fh.read())
        if not isinstance(mapping, list):
            raise TypeError(f"top level is {type(mapping).__name__}, not a list")
        pairs = [(str(item["input"]), str(item["output"])) for item in mapping]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise BadDatasetError(mapping_path, f"malformed ground-truth mapping ({err})") from None
    units: list[_Unit] = []
    for source, output in pairs:
        folder = output.strip("/")
        parts = folder.split("/")
        name = parts[-1]
        if len(parts) != 2 or parts[0] != split or name not in folders:
            if report is not None:
                report.num_scanned += 1
                report.add_bad("missing folder", folder)
            continue
        source_parts = source.strip("/").split("/")
        category = source_parts[1] if len(source_parts) >= 3 else ""
        entries.append(f"{folder}\t{folders[name]}")
        units.append(_Unit(folder, split, category, folder))
    return units


def _check_layout(root: str, splits: Sequence[str]) -> None:
    if not os.path.isdir(root):
        exists = os.path.exists(root)
        problem = "fMoW root is not a folder" if exists else "fMoW root folder does not exist"
        raise DatasetNotFoundError(root, problem)
    missing = []
    for split in splits:
        if not os.path.isdir(os.path.join(root, split)):
            missing.append(f"{split}/")
        elif split in ("test", "seq") and not os.path.isfile(
            os.path.join(root, f"{split}_gt_mapping.json")
        ):
            missing.append(f"{split}_gt_mapping.json")
    if missing:
        raise DatasetNotFoundError(root, f"fMoW {', '.join(missing)} not found")


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


def fmow_fingerprint(root: str | os.PathLike[str], splits: Sequence[str] = ("train", "val")) -> str:
    """A cheap fingerprint of the fMoW tree (no image or JSON is read).

    It hashes the relative path and ``mtime_ns`` of the split, category and location folders and the
    mtime and size of the ``{split}_gt_mapping.json`` files: adding or removing images or folders
    changes it, editing a file in place does not.

    Args:
        root: the fMoW root.
        splits: the splits to cover.

    Returns:
        A hex digest.

    Raises:
        DatasetNotFoundError: if the root or a split is missing.
    """
    root_str = os.fspath(root)
    _check_layout(root_str, splits)
    _, entries = _discover(root_str, splits)
    return _hash_entries(entries)


def _hash_entries(entries: Iterable[str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for entry in sorted(entries):
        digest.update(entry.encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# the scan (runs in worker processes)
# --------------------------------------------------------------------------------------------------


def _check_image(path: str, ext: str) -> str | None:
    """``None`` when the image looks complete, else the reason (cheap: header and last bytes)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_BINARY)
    except OSError:
        return "unreadable image"
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return "empty image"
        head = os.read(fd, 4)
        if ext == ".jpg":
            if head[:2] != b"\xff\xd8":
                return "corrupt image"
            # The end-of-image marker; trailing padding after it is tolerated. Entropy-coded data
            # stuffs 0xFF with 0x00, so FF D9 cannot occur by chance in a truncated tail.
            os.lseek(fd, max(size - 64, 0), os.SEEK_SET)
            if b"\xff\xd9" not in os.read(fd, 64):
                return "truncated image"
        elif head not in _TIFF_MAGIC:
            return "corrupt image"
    except OSError:
        return "unreadable image"
    finally:
        os.close(fd)
    return None


def _scan_units(
    task: tuple[str, str, bool, list[tuple[int, str, str, str, str]]],
) -> tuple[pa.RecordBatch, FMoWIndexReport]:
    """Scan location folders; return their valid rows and a partial report."""
    root, product, verify_images, units = task
    report = FMoWIndexReport(root=root, splits=[], product=product)
    exts = PRODUCTS[product]
    json_suffix = f"_{product}.json"
    tag_len = len(product) + 1  # "_rgb"
    image_suffixes = tuple(f"_{product}{ext}" for ext in exts)
    cols: dict[str, list[Any]] = {name: [] for name, _ in _SCAN_COLUMNS}
    (
        c_path,
        c_split,
        c_category,
        c_label,
        c_location,
        c_t,
        c_timestamp,
        c_lat,
        c_lon,
        c_gsd,
        c_cloud,
        c_width,
        c_height,
        c_bx,
        c_by,
        c_bw,
        c_bh,
        c_x0,
        c_y0,
        c_x1,
        c_y1,
        c_country,
        c_unit,
    ) = cols.values()
    sep = os.sep
    for unit_id, folder, split, category, location in units:
        folder_abs = root + sep + folder.replace("/", sep)
        try:
            names = os.listdir(folder_abs)
        except OSError:
            report.num_scanned += 1
            report.add_bad("unreadable folder", folder)
            continue
        present = set(names)
        label = _LABELS.get(category, -1)
        for name in names:
            if name.endswith(image_suffixes):
                stem = name[: name.rfind(".")]
                if stem + ".json" not in present:
                    report.num_scanned += 1
                    report.add_bad("missing json", f"{folder}/{name}")
                continue
            if not name.endswith(json_suffix):
                continue
            report.num_scanned += 1
            stem = name[:-5]
            image_name = ""
            for ext in exts:
                if stem + ext in present:
                    image_name = stem + ext
                    break
            if not image_name:
                report.add_bad("missing image", f"{folder}/{stem}{exts[0]}")
                continue
            rel_image = f"{folder}/{image_name}"
            try:
                t = int(stem[:-tag_len].rpartition("_")[2])
                if not 0 <= t < 32768:
                    raise ValueError(t)
            except ValueError:
                report.add_bad("malformed file name", rel_image)
                continue
            report.num_json_read += 1
            try:
                meta = parse_fmow_json(folder_abs + sep + name)
            except InvalidSampleError as err:
                report.add_bad(err.reason, f"{folder}/{name}")
                continue
            crop = fmow_context_box(meta.box, meta.img_width, meta.img_height)
            if crop is None:
                report.add_bad("degenerate box", f"{folder}/{name}")
                continue
            if verify_images:
                report.num_images_checked += 1
                problem = _check_image(folder_abs + sep + image_name, image_name[-4:])
                if problem is not None:
                    report.add_bad(problem, rel_image)
                    continue
            c_path.append(rel_image)
            c_split.append(split)
            c_category.append(category)
            c_label.append(label)
            c_location.append(location)
            c_t.append(t)
            c_timestamp.append(meta.timestamp)
            c_lat.append(meta.lat)
            c_lon.append(meta.lon)
            c_gsd.append(meta.gsd)
            c_cloud.append(meta.cloud_cover)
            c_width.append(meta.img_width)
            c_height.append(meta.img_height)
            bx, by, bw, bh = meta.box
            c_bx.append(bx)
            c_by.append(by)
            c_bw.append(bw)
            c_bh.append(bh)
            c_x0.append(crop[0])
            c_y0.append(crop[1])
            c_x1.append(crop[2])
            c_y1.append(crop[3])
            c_country.append(meta.country_code)
            c_unit.append(unit_id)
    arrays = [pa.array(cols[name], type=typ) for name, typ in _SCAN_COLUMNS]
    return pa.RecordBatch.from_arrays(arrays, schema=_SCAN_SCHEMA), report


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


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork starts workers instantly (no re-import of torch); elsewhere use the platform default.
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


_ScanResult = tuple[pa.RecordBatch, FMoWIndexReport]


@contextlib.contextmanager
def _task_results(
    scan: Callable[[_T], _ScanResult], tasks: list[_T], workers: int
) -> Iterator[Iterator[_ScanResult]]:
    if workers <= 1 or len(tasks) <= 1:
        yield map(scan, tasks)
        return
    with _mp_context().Pool(processes=min(workers, len(tasks))) as pool:
        yield pool.imap(scan, tasks)


# --------------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------------


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


def _write_cache(
    table: pa.Table, path: Path, metadata: dict[str, Any], row_group_size: int = 131_072
) -> None:
    """Write ``table`` with its metadata to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = table.schema.with_metadata({_METADATA_KEY: json.dumps(metadata).encode()})
    with (
        atomic_output(path) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
    ):
        for batch in table.to_batches(max_chunksize=row_group_size):
            writer.write_batch(batch)


def _read_cache(path: Path) -> tuple[pa.Table, npt.NDArray[np.float64], FMoWIndexReport]:
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    if raw is None:
        raise ValueError("no geossl metadata")
    metadata = json.loads(raw)
    if metadata.get("version") != INDEX_FORMAT_VERSION:
        raise ValueError(f"index format version {metadata.get('version')}")
    if table.schema.remove_metadata() != _INDEX_SCHEMA:
        raise ValueError("unexpected columns")
    centroids = np.asarray(metadata["centroids"], dtype=np.float64).reshape(-1, 3)
    return table, centroids, FMoWIndexReport.from_dict(metadata["report"])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    for name in ("path", "split", "category", "location", "country_code"):
        frame[name] = frame[name].astype("str")
    return frame


def _print_summary(report: FMoWIndexReport, progress: bool) -> None:
    lines = report.summary_lines()
    if not progress:
        for line in lines:
            logger.info(line)
        if report.num_bad:
            logger.warning(
                "fMoW index of %s: %d of %d samples skipped (%s)",
                report.root,
                report.num_bad,
                report.num_scanned,
                report.worst_reason(),
            )
        return
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        print("\n".join(lines), file=sys.stderr)
        return
    console = Console(stderr=True, soft_wrap=True)
    console.print(lines[0], highlight=False)
    if report.bad_by_reason:
        bad = Table(title="skipped samples", title_justify="left")
        bad.add_column("reason")
        bad.add_column("count", justify="right")
        bad.add_column("examples")
        for reason, count in sorted(report.bad_by_reason.items(), key=lambda item: -item[1]):
            bad.add_row(reason, f"{count:,}", "\n".join(report.examples.get(reason, [])))
        console.print(bad)


def _say(message: str, progress: bool) -> None:
    logger.info(message)
    if progress:
        print(message, file=sys.stderr)


def _check_bad_fraction(report: FMoWIndexReport, max_bad_fraction: float) -> None:
    if report.num_valid == 0:
        what = (
            f"no valid fMoW {report.product} images in {'/'.join(report.splits)}"
            if report.num_scanned
            else f"no fMoW {report.product} images found in {'/'.join(report.splits)}"
        )
        worst = f"; most common problem: {report.worst_reason()}" if report.num_bad else ""
        raise BadDatasetError(report.root, what + worst)
    if report.bad_fraction > max_bad_fraction:
        raise BadDatasetError(
            report.root,
            f"{report.num_bad} of {report.num_scanned} fMoW samples are bad "
            f"({100 * report.bad_fraction:.0f}% > max_bad_fraction={max_bad_fraction}); "
            f"most common problem: {report.worst_reason()}",
        )


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

    Layout: ``{root}/{split}/{category}/{category}_{loc}/{category}_{loc}_{t}_{product}.{ext}`` with
    the ``.json`` beside each image for train/val; for test/seq the folders listed in
    ``{root}/{split}_gt_mapping.json`` (``{"input": "{split}_gt/{category}/{category}_{loc}",
    "output": "{split}/{id}"}``, the category comes from ``input``).

    Geo clusters: spherical k-means (:func:`~geossl.datasets.geo_clusters.spherical_kmeans`) over
    the train split's locations (one 3-D unit vector per location); every location of every split
    gets the nearest centroid. Without a train split the requested splits are clustered.

    fMoW-Sentinel (``product="sentinel"``, splits ``train``/``val``/``test``): the samples are the
    rows of ``train.csv`` / ``val.csv`` / ``test_gt.csv`` (:func:`~geossl.datasets.fmow_sentinel.
    read_fmow_sentinel_csv`), images at ``{split}/{category}/{category}_{loc}/{category}_{loc}_{id}
    .tif``. Every image's header is read (size, 13 bands, location), whatever ``verify_images``
    says; the whole image is the crop and the target box, ``t`` is the ``image_id``. The
    fingerprint covers the CSVs and the split and category folders, so the CSVs are only read on a
    cache miss.

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
    splits = list(dict.fromkeys(splits))
    unknown = [s for s in splits if s not in FMOW_SPLITS]
    if not splits or unknown:
        raise ValueError(f"splits must be a non-empty subset of {list(FMOW_SPLITS)}, got {splits}")
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {sorted(PRODUCTS)}, got {product!r}")
    if product == "sentinel" and any(s not in FMOW_SENTINEL_CSV for s in splits):
        raise ValueError(f"fMoW-Sentinel has the splits {list(FMOW_SENTINEL_CSV)}, got {splits}")
    if num_geo_clusters is not None and num_geo_clusters < 1:
        raise ValueError(f"num_geo_clusters must be at least 1, got {num_geo_clusters}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")

    sentinel = product == "sentinel"
    report = FMoWIndexReport(root=root_str, splits=splits, product=product, workers=workers)
    units: list[_Unit] = []
    if sentinel:
        _check_sentinel_layout(root_str, splits)
        entries = _sentinel_entries(root_str, splits)  # the CSVs are read on a cache miss only
    else:
        _check_layout(root_str, splits)
        units, entries = _discover(root_str, splits, report)
    params = {
        "version": INDEX_FORMAT_VERSION,
        "root": os.path.realpath(root_str),
        "splits": splits,
        "product": product,
        "num_geo_clusters": num_geo_clusters,
        "seed": seed,
        "verify_images": verify_images,
        "fingerprint": _hash_entries(entries),
    }
    key = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=8).hexdigest()
    directory = Path(cache_dir) if cache_dir is not None else Path(root_str) / ".geossl"
    cache_path = directory / f"fmow-index-{product}-{key}.parquet"

    if not rebuild and cache_path.is_file():
        try:
            table, centroids, cached_report = _read_cache(cache_path)
        except Exception as err:  # any unreadable cache is rebuilt, never trusted
            warnings.warn(
                f"{cache_path}: corrupt fMoW index cache ({type(err).__name__}: {err}); rebuilding",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            _check_bad_fraction(cached_report, max_bad_fraction)
            _say(f"Using the cached fMoW index {cache_path} ({table.num_rows:,} images)", progress)
            return FMoWIndex(_to_pandas(table), centroids, cached_report, cache_path, True)

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
    report.num_valid = sum(b.num_rows for b in batches)
    _check_bad_fraction(report, max_bad_fraction)

    table, centroids, report.num_locations = _finish_table(
        batches, units, splits, num_geo_clusters, seed, root_str
    )
    report.seconds = time.perf_counter() - start_time
    metadata = {
        **params,
        "centroids": centroids.tolist(),
        "report": report.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        _write_cache(table, cache_path, metadata)
    except OSError as err:
        warnings.warn(
            f"{cache_path}: cannot write the fMoW index cache ({err.strerror or err}); "
            "pass cache_dir to a writable folder to avoid re-indexing",
            RuntimeWarning,
            stacklevel=2,
        )
    _print_summary(report, progress)
    return FMoWIndex(_to_pandas(table), centroids, report, cache_path, False)
