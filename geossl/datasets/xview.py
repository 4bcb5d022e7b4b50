"""xView1 object detection: labels, image split, chipping protocol, cached chip index, dataset.

xView (Lam et al., "xView: Objects in Context in Overhead Imagery", arXiv:1802.07856, 2018) has
846 labelled WorldView-3 images (3-band uint8 GeoTIFFs, about 0.3 m per pixel, roughly 2,000 to
5,000 pixels a side) with axis-aligned boxes of 60 object classes. On disk::

    root/
    ├── xView_train.geojson        # FeatureCollection, one feature per box
    ├── train_images/NNNN.tif      # the images (the geojson's image_id; 1395.tif is missing)
    └── .geossl-cache/             # written by geossl: parsed labels and chip indexes (npz)

Each feature's ``properties`` has ``bounds_imcoords`` (``"xmin,ymin,xmax,ymax"``, pixels of the
image), ``type_id`` (11 to 94) and ``image_id`` (``"NNNN.tif"``), plus bookkeeping fields that are
not used here.

**Classes.** The 60 type ids that occur as classes (:data:`XVIEW_CLASSES`, the table of xView's
``xview_class_labels.txt``) are mapped in ascending order to the contiguous labels ``0..59``; any
other id (the real labels also hold ids 75 and 82) is dropped and counted.

**Bad labels** are skipped and counted in an :class:`XViewReport`, never fatal: a feature whose
image is not on disk (the real ``1395.tif``), a malformed feature, an unknown type id, a box that is
NaN or has no area, a box entirely outside its image. A box partly outside is clipped to the image
(and counted).

**Protocol of the GeoSSL paper** (Ayush et al., ICCV 2021, section 5.2.1): the images are split
700 / 146 into train / test (:func:`split_xview_images`: a seeded, hash-ranked split with
``test_fraction = 0.1726`` gives exactly 146 of 846), each training image gives 100 random
416 x 416 crops with less than 25 % overlap (IoU) between any two (:func:`random_chip_windows`), and
RetinaNet-ResNet-50 is scored by AP50. Evaluation reads a deterministic grid
(:func:`grid_chip_windows`). A chip keeps the boxes whose visible fraction inside it is at least
``min_visibility``, clipped to the chip (:func:`chip_boxes`).

**Cache.** Parsing the real geojson (hundreds of thousands of features) takes a while, so two
``.npz`` files are written atomically under ``root/.geossl-cache/`` (or ``cache_dir``):

- ``xview-labels-<key>.npz``: the parsed, mapped and cleaned boxes with the image sizes and the
  report; ``<key>`` hashes the geojson's size and modification time and the listing (names, sizes,
  times) of ``train_images/``, so a new geojson or a new image rebuilds it;
- ``xview-chips-<mode>-<key>.npz``: the chip index (image, window, boxes, labels of every chip of
  every image); ``<key>`` hashes the labels key and every chipping parameter (mode, chip size, crops
  per image, maximum overlap, minimum visibility, grid stride, seed), so a changed parameter is
  never served a stale index.

Old cache files are not deleted; remove the folder to reclaim the space. A cache folder that cannot
be written (a read-only dataset) only costs the re-parse: a warning says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import rasterio
import torch
from rasterio.windows import Window
from torch import Tensor
from torch.utils.data import Dataset

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.utils.io import atomic_output

__all__ = [
    "XVIEW_CLASSES",
    "XVIEW_CLASS_NAMES",
    "XVIEW_GEOJSON",
    "XVIEW_IMAGES_DIR",
    "XVIEW_NUM_CLASSES",
    "XVIEW_TEST_FRACTION",
    "XVIEW_TYPE_TO_LABEL",
    "ChipMode",
    "XView",
    "XViewChipParams",
    "XViewChips",
    "XViewLabels",
    "XViewReport",
    "build_xview_chips",
    "chip_boxes",
    "grid_chip_windows",
    "load_xview_chips",
    "load_xview_labels",
    "parse_xview_features",
    "random_chip_windows",
    "read_xview_chip",
    "read_xview_geojson",
    "split_xview_images",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Sample = dict[str, Any]
ChipMode = Literal["random", "grid"]

#: File name of the training labels in the dataset root.
XVIEW_GEOJSON = "xView_train.geojson"
#: Folder of the training images in the dataset root.
XVIEW_IMAGES_DIR = "train_images"
#: Test share of the images: ``round(846 * 0.1726) = 146``, the paper's 700 / 146 split.
XVIEW_TEST_FRACTION = 0.1726

#: The 60 xView classes as ``(type_id, name)``, ascending type id; the label is the position.
#: Source: xView's ``xview_class_labels.txt``; the same 60-class map as the xView baseline code and
#: the Ultralytics ``xView.yaml`` conversion (type ids 11-94, unused ids dropped).
XVIEW_CLASSES: tuple[tuple[int, str], ...] = (
    (11, "Fixed-wing Aircraft"),
    (12, "Small Aircraft"),
    (13, "Cargo Plane"),
    (15, "Helicopter"),
    (17, "Passenger Vehicle"),
    (18, "Small Car"),
    (19, "Bus"),
    (20, "Pickup Truck"),
    (21, "Utility Truck"),
    (23, "Truck"),
    (24, "Cargo Truck"),
    (25, "Truck w/Box"),
    (26, "Truck Tractor"),
    (27, "Trailer"),
    (28, "Truck w/Flatbed"),
    (29, "Truck w/Liquid"),
    (32, "Crane Truck"),
    (33, "Railway Vehicle"),
    (34, "Passenger Car"),
    (35, "Cargo Car"),
    (36, "Flat Car"),
    (37, "Tank car"),
    (38, "Locomotive"),
    (40, "Maritime Vessel"),
    (41, "Motorboat"),
    (42, "Sailboat"),
    (44, "Tugboat"),
    (45, "Barge"),
    (47, "Fishing Vessel"),
    (49, "Ferry"),
    (50, "Yacht"),
    (51, "Container Ship"),
    (52, "Oil Tanker"),
    (53, "Engineering Vehicle"),
    (54, "Tower crane"),
    (55, "Container Crane"),
    (56, "Reach Stacker"),
    (57, "Straddle Carrier"),
    (59, "Mobile Crane"),
    (60, "Dump Truck"),
    (61, "Haul Truck"),
    (62, "Scraper/Tractor"),
    (63, "Front loader/Bulldozer"),
    (64, "Excavator"),
    (65, "Cement Mixer"),
    (66, "Ground Grader"),
    (71, "Hut/Tent"),
    (72, "Shed"),
    (73, "Building"),
    (74, "Aircraft Hangar"),
    (76, "Damaged Building"),
    (77, "Facility"),
    (79, "Construction Site"),
    (83, "Vehicle Lot"),
    (84, "Helipad"),
    (86, "Storage Tank"),
    (89, "Shipping container lot"),
    (91, "Shipping Container"),
    (93, "Pylon"),
    (94, "Tower"),
)
XVIEW_NUM_CLASSES = len(XVIEW_CLASSES)
#: Class names in label order.
XVIEW_CLASS_NAMES: tuple[str, ...] = tuple(name for _, name in XVIEW_CLASSES)
#: ``type_id`` -> contiguous label ``0..59``.
XVIEW_TYPE_TO_LABEL: Mapping[int, int] = {tid: i for i, (tid, _) in enumerate(XVIEW_CLASSES)}

#: Scale of raw pixel values to ``[0, 1]``: 8-bit as stored; 16-bit images are taken as
#: WorldView's 11-bit range (values above 2047 saturate).
_DTYPE_SCALE: Mapping[str, float] = {"uint8": 1 / 255, "uint16": 1 / 2047}

#: Bumped when a cache file's content changes meaning, so that old files are not read.
_CACHE_VERSION = 1
_CACHE_DIR = ".geossl-cache"


# -------------------------------------------------------------------------------------------------
# labels
# -------------------------------------------------------------------------------------------------


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
    :data:`XVIEW_CLASSES`), ``degenerate`` (NaN / infinite, or ``x_max <= x_min`` or
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

    features = read_xview_geojson(geojson)
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
    per_image, counts, missing = parse_xview_features(features, sizes)
    missing -= set(unreadable)
    image_ids = tuple(sorted(sizes))
    if not image_ids:
        raise BadDatasetError(
            images, f"none of the images named in {geojson.name} is here (or readable)"
        )
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    box_arrays = [per_image.get(i, empty) for i in image_ids]
    box_image = np.concatenate(
        [np.full(len(b), i, dtype=np.int64) for i, (b, _) in enumerate(box_arrays)]
    )
    boxes = np.concatenate([b for b, _ in box_arrays]).astype(np.float32).reshape(-1, 4)
    labels = np.concatenate([lab for _, lab in box_arrays]).astype(np.int64)
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


# -------------------------------------------------------------------------------------------------
# split
# -------------------------------------------------------------------------------------------------


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
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    ids = sorted(set(image_ids))
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n_test = round(len(ids) * test_fraction)
    n_val = round((len(ids) - n_test) * val_fraction)
    return {
        "test": tuple(sorted(ranked[:n_test])),
        "val": tuple(sorted(ranked[n_test : n_test + n_val])),
        "train": tuple(sorted(ranked[n_test + n_val :])),
    }


# -------------------------------------------------------------------------------------------------
# chipping
# -------------------------------------------------------------------------------------------------


def _window_overlap(
    candidates: IntArray, accepted: IntArray, chip_w: int, chip_h: int
) -> npt.NDArray[np.float64]:
    """``[K, M]`` IoU of same-size chips given by their top-left corners."""
    dx = np.abs(candidates[:, None, 0] - accepted[None, :, 0])
    dy = np.abs(candidates[:, None, 1] - accepted[None, :, 1])
    inter = (np.clip(chip_w - dx, 0, None) * np.clip(chip_h - dy, 0, None)).astype(np.float64)
    iou: npt.NDArray[np.float64] = inter / (2.0 * chip_w * chip_h - inter)
    return iou


def random_chip_windows(
    width: int,
    height: int,
    *,
    chip_size: int,
    count: int,
    max_overlap: float,
    rng: np.random.Generator,
    max_tries: int | None = None,
) -> IntArray:
    r"""Top-left corners of up to ``count`` random chips with limited pairwise overlap.

    The GeoSSL protocol ("less than 25 % overlap between any two"): chips of ``chip_size`` are
    drawn uniformly (integer corners, the whole chip inside the image) and a chip is accepted when
    its overlap with every chip accepted before is below ``max_overlap``. The overlap is the IoU,
    the usual meaning between two boxes (the paper does not define it); for equal chips,
    :math:`\mathrm{IoU} = I / (2A - I) < 0.25` means an intersection below 40 % of a chip.
    Draws stop after ``max_tries`` candidates (default ``100 * count``), so an image too small for
    ``count`` such chips gives fewer: about 94 on a 3,000 px square, 38 on a 2,000 px square with
    the paper's settings (the chip index counts the shortfall). An image smaller than the chip
    along a side gets chips spanning that side (zero-padded when read); ``max_overlap >= 1``
    disables the check.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        chip_size: chip side in pixels.
        count: chips wanted.
        max_overlap: the pairwise IoU must be strictly below this.
        rng: the random generator (one per image keeps images independent).
        max_tries: candidates drawn at most.

    Returns:
        ``[k, 2]`` int64 ``(col_off, row_off)``, ``k <= count``, in acceptance order.
    """
    if count <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    span_x, span_y = max(width - chip_size, 0), max(height - chip_size, 0)
    chip_w, chip_h = min(chip_size, width), min(chip_size, height)
    if span_x == 0 and span_y == 0:
        return np.zeros((1, 2), dtype=np.int64)
    tries = max_tries if max_tries is not None else 100 * count
    accepted = np.zeros((count, 2), dtype=np.int64)
    n = 0
    drawn = 0
    while n < count and drawn < tries:
        batch = min(256, tries - drawn)
        drawn += batch
        cand = np.stack(
            [rng.integers(0, span_x + 1, size=batch), rng.integers(0, span_y + 1, size=batch)],
            axis=1,
        ).astype(np.int64)
        if max_overlap >= 1:
            take = cand[: count - n]
            accepted[n : n + len(take)] = take
            n += len(take)
            continue
        # candidates that clash with an earlier chip are dropped at once (vectorised) ...
        if n:
            ok = (_window_overlap(cand, accepted[:n], chip_w, chip_h) < max_overlap).all(axis=1)
            cand = cand[ok]
        # ... the rest are accepted in order, each checked against the ones accepted before it
        for c in cand:
            if (
                n
                and not (_window_overlap(c[None], accepted[:n], chip_w, chip_h) < max_overlap).all()
            ):
                continue
            accepted[n] = c
            n += 1
            if n == count:
                break
    return accepted[:n].copy()


def _grid_starts(length: int, chip_size: int, stride: int) -> list[int]:
    if length <= chip_size:
        return [0]
    starts = list(range(0, length - chip_size, stride))
    if not starts or starts[-1] != length - chip_size:
        starts.append(length - chip_size)
    return starts


def grid_chip_windows(width: int, height: int, *, chip_size: int, stride: int) -> IntArray:
    """Top-left corners of a regular grid of chips covering the image, row by row.

    Chips start every ``stride`` pixels; the last chip of a row / column is aligned with the image
    edge (so every pixel is covered and no chip leaves the image unless the image is smaller than
    the chip, then one chip starts at 0 and is zero-padded when read).

    Args:
        width: image width in pixels.
        height: image height in pixels.
        chip_size: chip side in pixels.
        stride: step between chips in pixels.

    Returns:
        ``[k, 2]`` int64 ``(col_off, row_off)``.
    """
    xs = _grid_starts(width, chip_size, stride)
    ys = _grid_starts(height, chip_size, stride)
    return np.asarray([(x, y) for y in ys for x in xs], dtype=np.int64).reshape(-1, 2)


def chip_boxes(
    boxes: FloatArray,
    window: tuple[float, float, float, float],
    min_visibility: float,
) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    r"""Boxes of an image that a chip keeps, clipped and in chip pixels.

    With a box :math:`b` and the chip window :math:`w`, the visible fraction is
    :math:`|b \cap w| / |b|`; the box is kept when the intersection has a positive area and the
    fraction is at least ``min_visibility``, and becomes :math:`b \cap w` shifted by the chip's
    top-left corner.

    Args:
        boxes: ``[n, 4]`` image-pixel ``x_min, y_min, x_max, y_max`` (positive area).
        window: ``(col_off, row_off, width, height)`` of the chip.
        min_visibility: smallest visible fraction kept, in ``[0, 1]``.

    Returns:
        ``(chip_boxes [m, 4] float32, indices [m])``: the kept boxes and their rows in ``boxes``.
    """
    x0, y0, w, h = window
    ix0 = np.maximum(boxes[:, 0], x0)
    iy0 = np.maximum(boxes[:, 1], y0)
    ix1 = np.minimum(boxes[:, 2], x0 + w)
    iy1 = np.minimum(boxes[:, 3], y0 + h)
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.flatnonzero((inter > 0) & (inter >= min_visibility * area))
    out = np.stack([ix0[keep] - x0, iy0[keep] - y0, ix1[keep] - x0, iy1[keep] - y0], axis=1)
    return out.astype(np.float32).reshape(-1, 4), keep


@dataclass(frozen=True)
class XViewChipParams:
    """How images are cut into chips (every field is part of the chip cache key).

    Attributes:
        mode: ``"random"`` (the paper's training chips) or ``"grid"`` (evaluation).
        chip_size: chip side in pixels (paper: 416).
        crops_per_image: random chips per image (paper: 100).
        max_overlap: pairwise IoU of random chips must be below this (paper: 0.25).
        min_visibility: smallest visible fraction of a box kept in a chip (not given in the
            paper; 0.3 matches :class:`geossl.transforms.targets.TargetAugmentation`).
        stride: grid step in pixels; None = ``chip_size`` (no overlap but at the edges).
        seed: seed of the random chips (per image: ``(seed, crc of the image id)``).
    """

    mode: ChipMode = "random"
    chip_size: int = 416
    crops_per_image: int = 100
    max_overlap: float = 0.25
    min_visibility: float = 0.3
    stride: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate the parameters.

        Raises:
            ValueError: if a parameter is out of range or the mode unknown.
        """
        if self.mode not in ("random", "grid"):
            raise ValueError(f"chip mode must be 'random' or 'grid', got {self.mode!r}")
        if self.chip_size < 1:
            raise ValueError(f"chip_size must be >= 1, got {self.chip_size}")
        if self.crops_per_image < 1:
            raise ValueError(f"crops_per_image must be >= 1, got {self.crops_per_image}")
        if not 0 < self.max_overlap <= 1:
            raise ValueError(f"max_overlap must be in (0, 1], got {self.max_overlap}")
        if not 0 <= self.min_visibility <= 1:
            raise ValueError(f"min_visibility must be in [0, 1], got {self.min_visibility}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    def key_fields(self) -> dict[str, Any]:
        """The fields that change the chips (random ignores the stride, grid the rest)."""
        fields = asdict(self)
        if self.mode == "grid":
            fields.pop("crops_per_image")
            fields.pop("max_overlap")
            fields.pop("seed")
            fields["stride"] = self.stride or self.chip_size
        else:
            fields.pop("stride")
        return fields


@dataclass(frozen=True)
class XViewChips:
    """The chip index: every chip of every image with its boxes.

    Attributes:
        params: how the chips were cut.
        image_ids: the images (as in :class:`XViewLabels`).
        chip_image: ``[C]`` int64 image index of each chip.
        windows: ``[C, 4]`` int64 ``(col_off, row_off, width, height)`` in image pixels (width /
            height are the chip size; the part past a small image's edge is zero-padded).
        box_offsets: ``[C + 1]`` int64: chip ``i``'s boxes are rows
            ``box_offsets[i]:box_offsets[i + 1]``.
        boxes: ``[M, 4]`` float32 chip-pixel ``x_min, y_min, x_max, y_max``.
        labels: ``[M]`` int64 labels ``0..59``.
        shortfall: random chips wanted but not placed (images too small for the overlap rule).
        key: the cache key.
    """

    params: XViewChipParams
    image_ids: tuple[str, ...]
    chip_image: IntArray
    windows: IntArray
    box_offsets: IntArray
    boxes: FloatArray
    labels: IntArray
    shortfall: int = 0
    key: str = ""

    def __len__(self) -> int:
        return len(self.chip_image)

    def chip(self, index: int) -> tuple[FloatArray, IntArray]:
        """Boxes and labels of chip ``index``."""
        lo, hi = self.box_offsets[index], self.box_offsets[index + 1]
        return self.boxes[lo:hi], self.labels[lo:hi]


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    digest = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def build_xview_chips(labels: XViewLabels, params: XViewChipParams) -> XViewChips:
    """Cut every image of ``labels`` into chips (see :class:`XViewChipParams`).

    Args:
        labels: the cleaned boxes.
        params: the chipping parameters.

    Returns:
        The chip index (chips of each image contiguous, images in ``labels`` order).
    """
    size = params.chip_size
    chip_image: list[IntArray] = []
    windows: list[IntArray] = []
    counts: list[int] = []
    boxes_out: list[FloatArray] = []
    labels_out: list[IntArray] = []
    shortfall = 0
    for index, image_id in enumerate(labels.image_ids):
        width, height = (int(v) for v in labels.image_sizes[index])
        if params.mode == "random":
            corners = random_chip_windows(
                width,
                height,
                chip_size=size,
                count=params.crops_per_image,
                max_overlap=params.max_overlap,
                rng=_image_rng(params.seed, image_id),
            )
            if width > size or height > size:
                shortfall += params.crops_per_image - len(corners)
        else:
            corners = grid_chip_windows(width, height, chip_size=size, stride=params.stride or size)
        image_boxes, image_labels = labels.image_boxes(index)
        for x, y in corners:
            kept, rows = chip_boxes(image_boxes, (x, y, size, size), params.min_visibility)
            boxes_out.append(kept)
            labels_out.append(image_labels[rows])
            counts.append(len(rows))
        chip_image.append(np.full(len(corners), index, dtype=np.int64))
        windows.append(
            np.concatenate([corners, np.full((len(corners), 2), size, dtype=np.int64)], axis=1)
        )
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return XViewChips(
        params=params,
        image_ids=labels.image_ids,
        chip_image=np.concatenate(chip_image) if chip_image else np.zeros(0, np.int64),
        windows=np.concatenate(windows) if windows else np.zeros((0, 4), np.int64),
        box_offsets=offsets,
        boxes=np.concatenate(boxes_out) if boxes_out else np.zeros((0, 4), np.float32),
        labels=np.concatenate(labels_out) if labels_out else np.zeros(0, np.int64),
        shortfall=shortfall,
    )


def load_xview_chips(
    root: str | os.PathLike[str],
    params: XViewChipParams,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> tuple[XViewLabels, XViewChips]:
    """The labels and the chip index of an xView root, from the cache when it is current.

    Args:
        root: the dataset root.
        params: the chipping parameters.
        cache_dir: cache folder; default ``root/.geossl-cache``.
        rebuild: ignore existing cache files.

    Returns:
        ``(labels, chips)``.

    Raises:
        DatasetNotFoundError: see :func:`load_xview_labels`.
        BadDatasetError: see :func:`load_xview_labels`.
    """
    labels = load_xview_labels(root, cache_dir=cache_dir, rebuild=rebuild)
    key = _hash({"version": _CACHE_VERSION, "labels": labels.key, **params.key_fields()})
    cache = _cache_folder(root, cache_dir) / f"xview-chips-{params.mode}-{key}.npz"
    cached = None if rebuild else _load_npz(cache)
    if cached is not None:
        meta = json.loads(str(cached["meta"]))
        chips = XViewChips(
            params=params,
            image_ids=labels.image_ids,
            chip_image=cached["chip_image"].astype(np.int64),
            windows=cached["windows"].astype(np.int64),
            box_offsets=cached["box_offsets"].astype(np.int64),
            boxes=cached["boxes"].astype(np.float32),
            labels=cached["labels"].astype(np.int64),
            shortfall=int(meta["shortfall"]),
            key=key,
        )
        return labels, chips
    chips = build_xview_chips(labels, params)
    meta = {"version": _CACHE_VERSION, "params": asdict(params), "shortfall": chips.shortfall}
    _save_npz(
        cache,
        {
            "meta": np.asarray(json.dumps(meta)),
            "chip_image": chips.chip_image.astype(np.int32),
            "windows": chips.windows.astype(np.int32),
            "box_offsets": chips.box_offsets,
            "boxes": chips.boxes,
            "labels": chips.labels.astype(np.int16),
        },
    )
    return labels, replace(chips, key=key)


# -------------------------------------------------------------------------------------------------
# reading and the dataset
# -------------------------------------------------------------------------------------------------


def read_xview_chip(path: str | os.PathLike[str], window: Sequence[int]) -> Tensor:
    """Read one chip of an image through a rasterio window (never the whole image).

    Args:
        path: the GeoTIFF.
        window: ``(col_off, row_off, width, height)``; the part past the image edge is zero.

    Returns:
        float32 ``[3, height, width]`` in ``[0, 1]`` (bands 1-3; 8-bit divided by 255, 16-bit by
        2047, WorldView's 11-bit range, and clipped).

    Raises:
        BadDatasetError: if the image has fewer than 3 bands or an unsupported data type.
    """
    x0, y0, w, h = (int(v) for v in window)
    with rasterio.open(path) as src:
        if src.count < 3:
            raise BadDatasetError(path, f"{src.count} band(s); xView images have 3 (RGB)")
        dtype = str(src.dtypes[0])
        scale = _DTYPE_SCALE.get(dtype)
        if scale is None:
            raise BadDatasetError(path, f"unsupported data type {dtype} (uint8 or uint16)")
        read_w = max(min(w, src.width - x0), 0)
        read_h = max(min(h, src.height - y0), 0)
        out = np.zeros((3, h, w), dtype=np.float32)
        if read_w and read_h:
            data = src.read(indexes=[1, 2, 3], window=Window(x0, y0, read_w, read_h))
            out[:, :read_h, :read_w] = data.astype(np.float32) * scale
    return torch.from_numpy(np.clip(out, 0.0, 1.0, out=out))


class XView(Dataset[Sample]):
    """xView chips of one split, with their boxes (see the module doc for the protocol).

    A sample is a dict:

    - ``image``: float32 ``[3, chip_size, chip_size]`` in ``[0, 1]``;
    - ``bbox_xyxy``: float32 ``[N, 4]`` chip-pixel ``x_min, y_min, x_max, y_max``;
    - ``label``: int64 ``[N]`` class ``0..59`` (:data:`XVIEW_CLASS_NAMES`);
    - ``image_id``: the source image (``"NNNN.tif"``);
    - ``window``: int64 ``[4]`` ``(col_off, row_off, width, height)`` of the chip in the image.

    Args:
        root: the dataset root (``xView_train.geojson`` and ``train_images/``).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (:func:`split_xview_images`).
        chips: the chipping parameters (default: the paper's random 416 px chips).
        test_fraction: share of the images for test (default gives the paper's 146 of 846).
        val_fraction: share of the non-test images for validation.
        split_seed: seed of the image split (independent of the chip seed).
        transforms: called on each sample (e.g. a
            :class:`geossl.transforms.targets.TargetAugmentation`).
        cache_dir: cache folder; default ``root/.geossl-cache``.

    Raises:
        ValueError: on an unknown split.
        DatasetNotFoundError: see :func:`load_xview_labels`.
        BadDatasetError: see :func:`load_xview_labels`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "val", "test", "all"] = "train",
        chips: XViewChipParams | None = None,
        *,
        test_fraction: float = XVIEW_TEST_FRACTION,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        transforms: Callable[[Sample], Sample] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.params = chips if chips is not None else XViewChipParams()
        self.transforms = transforms
        self.labels, self.chips = load_xview_chips(root, self.params, cache_dir=cache_dir)
        self.splits = split_xview_images(
            self.labels.image_ids,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            seed=split_seed,
        )
        wanted = set(self.labels.image_ids) if split == "all" else set(self.splits[split])
        in_split = np.asarray([i in wanted for i in self.labels.image_ids], dtype=bool)
        self.indices: IntArray = np.flatnonzero(in_split[self.chips.chip_image]).astype(np.int64)

    @property
    def report(self) -> XViewReport:
        """What was skipped and clipped while reading the labels."""
        return self.labels.report

    @property
    def image_ids(self) -> tuple[str, ...]:
        """The images of this split."""
        if self.split == "all":
            return self.labels.image_ids
        return self.splits[self.split]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        """Chip ``index`` of this split (see the class doc for the keys)."""
        chip = int(self.indices[index])
        image_id = self.chips.image_ids[int(self.chips.chip_image[chip])]
        window = self.chips.windows[chip]
        boxes, labels = self.chips.chip(chip)
        sample: Sample = {
            "image": read_xview_chip(self.root / XVIEW_IMAGES_DIR / image_id, window),
            "bbox_xyxy": torch.from_numpy(boxes.copy()),
            "label": torch.from_numpy(labels.copy()),
            "image_id": image_id,
            "window": torch.from_numpy(window.copy()),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
