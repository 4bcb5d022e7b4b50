"""The streaming scan of an fMoW tree behind `build_fmow_index`.

The tree is walked with `os.scandir` (no glob of a million paths) down to the location folders
(the scan *units*); worker processes parse every image's JSON with the stdlib `json`, check the
image cheaply (present, not empty, a JPEG ends with the ``FF D9`` marker after data that is not
zeroed), compute the context crop and return Arrow record batches.
[`fmow_fingerprint`][geossl.datasets.fmow.scan.fmow_fingerprint] hashes the folder mtimes for the
cache key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError, InvalidSampleError
from geossl.datasets.fmow.constants import (
    FMOW_CATEGORIES,
    INDEX_COLUMNS,
    PRODUCTS,
)
from geossl.datasets.fmow.io import fmow_context_box
from geossl.datasets.fmow.metadata import FMoWImageMeta, parse_fmow_json
from geossl.datasets.fmow.report import FMoWIndexReport
from geossl.datasets.skips import BLANK_IMAGE

__all__ = ["fmow_fingerprint"]

_T = TypeVar("_T")


# What the scan workers produce: the index columns minus the global ones, plus the unit number.
_SCAN_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    *((n, t) for n, t in INDEX_COLUMNS if n not in ("location_id", "geo_label")),
    ("unit", pa.int32()),
)


_SCAN_SCHEMA = pa.schema([pa.field(n, t, nullable=False) for n, t in _SCAN_COLUMNS])


_LABELS = {name: i for i, name in enumerate(FMOW_CATEGORIES)}


_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows needs it for raw reads


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Zero bytes right before a JPEG's end marker that mark its data as zeroed (an encoder never
#: writes them: the last byte is padded with 1-bits).
_ZEROED_TAIL = 16


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
            tail = os.read(fd, 64)
            end = tail.rfind(b"\xff\xd9")
            if end < 0:
                return "truncated image"
            # An encoder pads the last byte with 1-bits: zeros up to the marker are zeroed data,
            # which decodes to grey garbage.
            if end >= _ZEROED_TAIL and not tail[end - _ZEROED_TAIL : end].strip(b"\x00"):
                return BLANK_IMAGE
        elif head not in _TIFF_MAGIC:
            return "corrupt image"
    except OSError:
        return "unreadable image"
    finally:
        os.close(fd)
    return None


@dataclass(frozen=True, slots=True)
class _ProductNames:
    """The file-name parts of one product's images and JSONs (``_rgb.jpg``, ``_rgb.json``)."""

    exts: tuple[str, ...]
    json_suffix: str
    tag_len: int  # len("_rgb")
    image_suffixes: tuple[str, ...]

    @classmethod
    def of(cls, product: str) -> _ProductNames:
        exts = tuple(PRODUCTS[product])
        suffixes = tuple(f"_{product}{ext}" for ext in exts)
        return cls(exts, f"_{product}.json", len(product) + 1, suffixes)


def _check_sample(
    name: str,
    present: set[str],
    folder: str,
    folder_abs: str,
    naming: _ProductNames,
    verify_images: bool,
    report: FMoWIndexReport,
) -> tuple[str, int, FMoWImageMeta, tuple[int, int, int, int]] | None:
    """One file of a location folder: the sample its JSON describes, else None.

    A JSON is a sample when its image is present, its name holds ``t`` and it parses with a
    non-degenerate box (and, with ``verify_images``, the image checks out); an image without its
    JSON, and every bad sample, is counted in ``report``; other files are ignored.

    Returns:
        ``(relative image path, t, metadata, context crop)``, or None.
    """
    sep = os.sep
    if name.endswith(naming.image_suffixes):
        stem = name[: name.rfind(".")]
        if stem + ".json" not in present:
            report.num_scanned += 1
            report.add_bad("missing json", f"{folder}/{name}")
        return None
    if not name.endswith(naming.json_suffix):
        return None
    report.num_scanned += 1
    stem = name[:-5]
    image_name = ""
    for ext in naming.exts:
        if stem + ext in present:
            image_name = stem + ext
            break
    if not image_name:
        report.add_bad("missing image", f"{folder}/{stem}{naming.exts[0]}")
        return None
    rel_image = f"{folder}/{image_name}"
    try:
        t = int(stem[: -naming.tag_len].rpartition("_")[2])
        if not 0 <= t < 32768:
            raise ValueError(t)
    except ValueError:
        report.add_bad("malformed file name", rel_image)
        return None
    report.num_json_read += 1
    try:
        meta = parse_fmow_json(folder_abs + sep + name)
    except InvalidSampleError as err:
        report.add_bad(err.reason, f"{folder}/{name}")
        return None
    crop = fmow_context_box(meta.box, meta.img_width, meta.img_height)
    if crop is None:
        report.add_bad("degenerate box", f"{folder}/{name}")
        return None
    if verify_images:
        report.num_images_checked += 1
        problem = _check_image(folder_abs + sep + image_name, image_name[-4:])
        if problem is not None:
            report.add_bad(problem, rel_image)
            return None
    return rel_image, t, meta, crop


def _scan_units(
    task: tuple[str, str, bool, list[tuple[int, str, str, str, str]]],
) -> tuple[pa.RecordBatch, FMoWIndexReport]:
    """Scan location folders; return their valid rows and a partial report."""
    root, product, verify_images, units = task
    report = FMoWIndexReport(root=root, splits=[], product=product)
    naming = _ProductNames.of(product)
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
            sample = _check_sample(name, present, folder, folder_abs, naming, verify_images, report)
            if sample is None:
                continue
            rel_image, t, meta, crop = sample
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
