"""xView1 labels: the GeoJSON parser, the cached label arrays and the seeded image split.

`load_xview_labels` parses ``xView_train.geojson`` once (`parse_xview_features`), caches the
boxes as npz under ``root/.geossl-cache`` and reports bad labels in an `XViewReport`;
`split_xview_images` splits the image ids into train and test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.xview.constants import (
    XVIEW_CLASSES,
    XVIEW_GEOJSON,
    XVIEW_IMAGES_DIR,
    XVIEW_TEST_FRACTION,
    XVIEW_TYPE_TO_LABEL,
    FloatArray,
    IntArray,
)
from geossl.utils.checks import check_fraction
from geossl.utils.io import atomic_output

__all__ = [
    "XViewLabels",
    "XViewReport",
    "load_xview_labels",
    "parse_xview_features",
    "read_xview_geojson",
    "split_xview_images",
]

#: Bumped when a cache file's content changes meaning, so that old files are not read.
_CACHE_VERSION = 1


_CACHE_DIR = ".geossl-cache"


@dataclass(frozen=True)
class XViewReport:
    """What was skipped, clipped or kept while reading ``xView_train.geojson``.

    Attributes:
        features: features in the geojson.
        boxes: boxes kept (mapped, valid, inside their image).
        images: images with labels that are on disk and readable.
        malformed: features without ``properties``, ``image_id``, an integer ``type_id`` or a
            4-number ``bounds_imcoords``.
        unknown_type: features whose ``type_id`` is not one of the 60 classes (dropped).
        degenerate: boxes that are NaN / infinite or have zero or negative width or height.
        outside_image: boxes entirely outside their image.
        clipped: boxes partly outside their image, clipped to it (kept).
        features_without_image: features whose image is not in ``train_images/`` or is
            unreadable (skipped).
        missing_images: those images' ids (``("1395.tif",)`` on the real data).
        unreadable_images: images on disk that rasterio cannot open (their features skipped).
    """

    features: int = 0
    boxes: int = 0
    images: int = 0
    malformed: int = 0
    unknown_type: int = 0
    degenerate: int = 0
    outside_image: int = 0
    clipped: int = 0
    features_without_image: int = 0
    missing_images: tuple[str, ...] = ()
    unreadable_images: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for logs: the kept boxes and every non-zero skip count."""
        parts = [f"{self.boxes} boxes in {self.images} images from {self.features} features"]
        for name in ("malformed", "unknown_type", "degenerate", "outside_image", "clipped"):
            count = getattr(self, name)
            if count:
                parts.append(f"{name.replace('_', ' ')}: {count}")
        if self.features_without_image:
            missing = ", ".join(self.missing_images[:5])
            parts.append(
                f"{self.features_without_image} features of {len(self.missing_images)} missing "
                f"images ({missing})"
            )
        if self.unreadable_images:
            parts.append(f"unreadable images: {', '.join(self.unreadable_images[:5])}")
        return "; ".join(parts)


@dataclass(frozen=True)
class XViewLabels:
    """The cleaned boxes of every usable image.

    Attributes:
        image_ids: image file names (``"NNNN.tif"``), sorted.
        image_sizes: ``[I, 2]`` int64 ``(width, height)`` in pixels.
        box_image: ``[B]`` int64 index into ``image_ids`` of each box (sorted).
        boxes: ``[B, 4]`` float32 ``x_min, y_min, x_max, y_max`` in image pixels, inside the image.
        labels: ``[B]`` int64 contiguous labels ``0..59``.
        report: the skip counts.
        key: the cache key (geojson and image listing).
    """

    image_ids: tuple[str, ...]
    image_sizes: IntArray
    box_image: IntArray
    boxes: FloatArray
    labels: IntArray
    report: XViewReport
    key: str = ""

    def image_boxes(self, index: int) -> tuple[FloatArray, IntArray]:
        """Boxes and labels of image ``index``."""
        lo, hi = np.searchsorted(self.box_image, [index, index + 1])
        return self.boxes[lo:hi], self.labels[lo:hi]


def read_xview_geojson(path: str | os.PathLike[str]) -> list[Any]:
    """Read the features of ``xView_train.geojson``.

    Args:
        path: the geojson file.

    Returns:
        The ``features`` list.

    Raises:
        FileNotFoundError: if the file does not exist.
        BadDatasetError: if it is not JSON or not a FeatureCollection with a features list.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadDatasetError(path, f"not valid JSON ({error})") from None
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise BadDatasetError(path, "not a GeoJSON FeatureCollection (no 'features' list)")
    return features


def _parse_bounds(text: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(text, str):
        return None
    parts = text.split(",")
    if len(parts) != 4:
        return None
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        return None
    return x0, y0, x1, y1


def _parse_type_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def parse_xview_features(
    features: Sequence[Any], image_sizes: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, tuple[FloatArray, IntArray]], dict[str, int], set[str]]:
    """Map, validate and clip the boxes of xView features.

    Checks per feature, in this order (each failure counts once): ``malformed`` (no properties,
    no ``image_id``, no integer ``type_id`` or no 4-number ``bounds_imcoords``), image not in
    ``image_sizes`` (``features_without_image``), ``unknown_type`` (not one of
    `XVIEW_CLASSES`), ``degenerate`` (NaN / infinite, or ``x_max <= x_min`` or
    ``y_max <= y_min``), ``outside_image`` (no positive-area overlap with
    ``[0, width] x [0, height]``); a box partly outside is clipped to the image (``clipped``).

    Args:
        features: GeoJSON features.
        image_sizes: ``image_id -> (width, height)`` of the images on disk.

    Returns:
        ``(boxes, counts, missing)``: per image id the kept boxes (``[n, 4]`` float32, image
        pixels) and labels (``[n]`` int64); the counts by category; the ids of images that have
        features but are not in ``image_sizes``.
    """
    counts = dict.fromkeys(
        ("malformed", "unknown_type", "degenerate", "outside_image", "clipped", "no_image"), 0
    )
    missing: set[str] = set()
    per_image: dict[str, tuple[list[tuple[float, float, float, float]], list[int]]] = {}
    for feature in features:
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            counts["malformed"] += 1
            continue
        image_id = props.get("image_id")
        type_id = _parse_type_id(props.get("type_id"))
        bounds = _parse_bounds(props.get("bounds_imcoords"))
        if not isinstance(image_id, str) or not image_id or type_id is None or bounds is None:
            counts["malformed"] += 1
            continue
        size = image_sizes.get(image_id)
        if size is None:
            counts["no_image"] += 1
            missing.add(image_id)
            continue
        label = XVIEW_TYPE_TO_LABEL.get(type_id)
        if label is None:
            counts["unknown_type"] += 1
            continue
        x0, y0, x1, y1 = bounds
        if not all(math.isfinite(v) for v in bounds) or x1 <= x0 or y1 <= y0:
            counts["degenerate"] += 1
            continue
        width, height = size
        cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
        cx1, cy1 = min(x1, float(width)), min(y1, float(height))
        if cx1 <= cx0 or cy1 <= cy0:
            counts["outside_image"] += 1
            continue
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            counts["clipped"] += 1
        boxes, labels = per_image.setdefault(image_id, ([], []))
        boxes.append((cx0, cy0, cx1, cy1))
        labels.append(label)
    out = {
        image_id: (
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64),
        )
        for image_id, (boxes, labels) in per_image.items()
    }
    return out, counts, missing


def _dataset_paths(root: str | os.PathLike[str]) -> tuple[Path, Path]:
    root = Path(root)
    geojson = root / XVIEW_GEOJSON
    images = root / XVIEW_IMAGES_DIR
    # DatasetNotFoundError adds how to get xView (geossl.datasets.errors).
    if not root.is_dir():
        raise DatasetNotFoundError(root, "xView root folder does not exist", "xview")
    if not geojson.is_file():
        raise DatasetNotFoundError(geojson, "xView labels not found", "xview")
    if not images.is_dir():
        raise DatasetNotFoundError(images, "xView image folder not found", "xview")
    return geojson, images


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _labels_key(geojson: Path, images: Path) -> str:
    """Hash of the geojson's size and mtime and of the image listing (cheap: no file is read)."""
    stat = geojson.stat()
    listing = sorted(
        (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
        for entry in os.scandir(images)
        if entry.is_file()
    )
    return _hash(
        {
            "version": _CACHE_VERSION,
            "geojson": [stat.st_size, stat.st_mtime_ns],
            "images": listing,
            "classes": [tid for tid, _ in XVIEW_CLASSES],
        }
    )


def _cache_folder(root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path(root) / _CACHE_DIR


def _save_npz(path: Path, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """Write ``arrays`` to ``path`` atomically; a folder that cannot be written only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, tmp.open("wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
    except OSError as error:
        warnings.warn(
            f"{path.parent}: cannot write the xView cache ({error}); it will be rebuilt next time",
            RuntimeWarning,
            stacklevel=3,
        )


def _load_npz(path: Path) -> dict[str, npt.NDArray[Any]] | None:
    """The arrays of a cache file, or None when it is absent or unreadable (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with rasterio.open(path) as src:
            return int(src.width), int(src.height)
    except rasterio.errors.RasterioIOError:
        return None


def _labels_from_cache(cached: dict[str, npt.NDArray[Any]], key: str) -> XViewLabels:
    """The labels of the arrays of a cache file written by `load_xview_labels`."""
    meta = json.loads(str(cached["meta"]))
    report = XViewReport(
        **{
            **meta["report"],
            "missing_images": tuple(meta["report"]["missing_images"]),
            "unreadable_images": tuple(meta["report"]["unreadable_images"]),
        }
    )
    return XViewLabels(
        image_ids=tuple(str(s) for s in cached["image_ids"]),
        image_sizes=cached["image_sizes"].astype(np.int64),
        box_image=cached["box_image"].astype(np.int64),
        boxes=cached["boxes"].astype(np.float32),
        labels=cached["labels"].astype(np.int64),
        report=report,
        key=key,
    )


def _referenced_image_sizes(
    features: list[Any], images: Path
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Sizes of the images the features name that are on disk, and those that are unreadable."""
    referenced = sorted(
        {
            str(f["properties"]["image_id"])
            for f in features
            if isinstance(f, dict)
            and isinstance(f.get("properties"), dict)
            and isinstance(f["properties"].get("image_id"), str)
        }
    )
    sizes: dict[str, tuple[int, int]] = {}
    unreadable: list[str] = []
    for image_id in referenced:
        path = images / image_id
        if not path.is_file():
            continue
        size = _image_size(path)
        if size is None:
            unreadable.append(image_id)
        else:
            sizes[image_id] = size
    return sizes, unreadable


def _concatenate_boxes(
    per_image: dict[str, tuple[FloatArray, IntArray]], image_ids: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Each box's image index ``[B]``, the boxes ``[B, 4]`` and labels ``[B]``, image by image."""
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    box_arrays = [per_image.get(i, empty) for i in image_ids]
    box_image = np.concatenate(
        [np.full(len(b), i, dtype=np.int64) for i, (b, _) in enumerate(box_arrays)]
    )
    boxes = np.concatenate([b for b, _ in box_arrays]).astype(np.float32).reshape(-1, 4)
    labels = np.concatenate([lab for _, lab in box_arrays]).astype(np.int64)
    return box_image, boxes, labels


def load_xview_labels(
    root: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> XViewLabels:
    """Parse (or load from the cache) the cleaned boxes of an xView root.

    Args:
        root: the dataset root (holds ``xView_train.geojson`` and ``train_images/``).
        cache_dir: cache folder; default ``root/.geossl-cache``.
        rebuild: ignore an existing cache file.

    Returns:
        The labels of every image that has features and is on disk.

    Raises:
        DatasetNotFoundError: if the root, the geojson or the image folder is missing (the
            message names the path).
        BadDatasetError: if the geojson is not a FeatureCollection or no labelled image is on
            disk.
    """
    geojson, images = _dataset_paths(root)
    key = _labels_key(geojson, images)
    cache = _cache_folder(root, cache_dir) / f"xview-labels-{key}.npz"
    cached = None if rebuild else _load_npz(cache)
    if cached is not None:
        return _labels_from_cache(cached, key)

    features = read_xview_geojson(geojson)
    sizes, unreadable = _referenced_image_sizes(features, images)
    per_image, counts, missing = parse_xview_features(features, sizes)
    missing -= set(unreadable)
    image_ids = tuple(sorted(sizes))
    if not image_ids:
        raise BadDatasetError(
            images, f"none of the images named in {geojson.name} is here (or readable)"
        )
    box_image, boxes, labels = _concatenate_boxes(per_image, image_ids)
    report = XViewReport(
        features=len(features),
        boxes=len(boxes),
        images=len(image_ids),
        malformed=counts["malformed"],
        unknown_type=counts["unknown_type"],
        degenerate=counts["degenerate"],
        outside_image=counts["outside_image"],
        clipped=counts["clipped"],
        features_without_image=counts["no_image"],
        missing_images=tuple(sorted(missing)),
        unreadable_images=tuple(unreadable),
    )
    image_sizes = np.asarray([sizes[i] for i in image_ids], dtype=np.int64).reshape(-1, 2)
    meta = {"version": _CACHE_VERSION, "key": key, "report": asdict(report)}
    _save_npz(
        cache,
        {
            "meta": np.asarray(json.dumps(meta)),
            "image_ids": np.asarray(image_ids, dtype=str),
            "image_sizes": image_sizes,
            "box_image": box_image,
            "boxes": boxes,
            "labels": labels.astype(np.int16),
        },
    )
    return XViewLabels(image_ids, image_sizes, box_image, boxes, labels, report, key)


def split_xview_images(
    image_ids: Sequence[str],
    *,
    test_fraction: float = XVIEW_TEST_FRACTION,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, tuple[str, ...]]:
    """Split images into train / val / test by image id, reproducibly.

    Every id gets a rank ``sha256(f"{seed}:{image_id}")``; the ``round(N * test_fraction)``
    lowest-ranked images are test, the next ``round((N - n_test) * val_fraction)`` are val, the rest
    train. Ranks depend only on the id and the seed, so the split is the same on every run and
    machine, whatever the order of the ids, and an image added or removed moves at most the
    images at the boundary. With the defaults, the 846 real images give 146 test images, as in the
    paper (700 / 146); ``val`` is carved from the 700 (the paper has no validation split: use
    ``val_fraction=0`` to train on all 700).

    Args:
        image_ids: the images.
        test_fraction: share of all images for test, in ``[0, 1)``.
        val_fraction: share of the non-test images for validation, in ``[0, 1)``.
        seed: the split seed.

    Returns:
        ``{"train": ids, "val": ids, "test": ids}``, each sorted.

    Raises:
        ValueError: if a fraction is out of range.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        check_fraction(name, value, high_open=True)
    ids = sorted(set(image_ids))
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n_test = round(len(ids) * test_fraction)
    n_val = round((len(ids) - n_test) * val_fraction)
    return {
        "test": tuple(sorted(ranked[:n_test])),
        "val": tuple(sorted(ranked[n_test : n_test + n_val])),
        "train": tuple(sorted(ranked[n_test + n_val :])),
    }
