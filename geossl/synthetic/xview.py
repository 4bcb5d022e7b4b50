"""Seeded generator of a small xView sample in the real on-disk layout.

The sample has the files of the real xView1 training set, so that the reader, the chipping and the
detector can be tested without the real data (about 30 GB of images)::

    root/
    ├── xView_train.geojson       # FeatureCollection: one feature per box
    └── train_images/NNNN.tif     # 3-band uint8 GeoTIFFs, EPSG:4326, ~0.3 m pixels

Each feature has the real properties: ``bounds_imcoords`` (``"xmin,ymin,xmax,ymax"``, integer
pixels), ``type_id``, ``image_id``, and the bookkeeping fields ``edited_by``, ``cat_id``,
``ingest_time``, ``index_right``, ``point_geom`` (hex EWKB of the box centre, SRID 4326),
``feature_id`` and ``grade``; its geometry is the box's lon/lat polygon through the image transform.

Every valid box marks a **visible** object: a bright rectangle in a class-dependent colour (hue by
the class's position in ``type_ids``), with a darker rim and a cast shadow, over a textured,
darker background (land-cover waves, noise and a few roads), so a detector can learn them. Object
sizes and aspect ratios depend on the class (aircraft are large, cars small and elongated). Like the
real data, the sample also has defects the reader must skip and count:

- features of an image that is not on disk (``1395.tif``, missing from the real set too);
- unknown type ids (75 and 82, which occur in the real labels but are not among the 60 classes);
- a zero-area box, an inverted box (``xmax < xmin``) and a box entirely outside its image;
- objects cut by the image edge whose box extends past it (clipped by the reader).

Same seed, same arguments => byte-identical files.
"""

from __future__ import annotations

import colorsys
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rasterio.transform import Affine

from geossl.datasets.xview import XVIEW_GEOJSON, XVIEW_IMAGES_DIR, XVIEW_TYPE_TO_LABEL
from geossl.synthetic.common import prepare_sample_folder, write_geotiff
from geossl.utils.checks import check_range
from geossl.utils.io import atomic_write_bytes

__all__ = ["DEFAULT_SAMPLE_TYPE_IDS", "XViewSampleSummary", "generate_xview_sample"]

UInt8Array = npt.NDArray[np.uint8]

#: Classes of the sample by default: common real xView classes of distinct sizes (Fixed-wing
#: Aircraft, Small Car, Bus, Maritime Vessel, Building, Storage Tank).
DEFAULT_SAMPLE_TYPE_IDS: tuple[int, ...] = (11, 18, 19, 40, 73, 86)

#: Image that the real geojson names but the real image folder lacks.
MISSING_IMAGE_ID = "1395.tif"
#: Type ids present in the real labels but not among the 60 classes.
UNKNOWN_TYPE_IDS: tuple[int, ...] = (75, 82)

_GSD_M = 0.3  # WorldView-3 pan-sharpened pixel size
_METRES_PER_DEG = 111_320.0
_EDITORS = ("wwoscarbecerril", "wwjeffreytrevino", "wwalexaschwarzer", "wwdanielclark")
_CAT_IDS = ("1040010028371A00", "104001002C0CF500", "1030010066D7A700", "103001005E8D8F00")


@dataclass(frozen=True)
class XViewSampleSummary:
    """What [`generate_xview_sample`][geossl.synthetic.xview.generate_xview_sample] wrote.

    Attributes:
        root: the sample's root folder.
        geojson: the labels file.
        image_ids: images written to ``train_images/`` (sorted by number).
        image_sizes: ``image_id -> (width, height)``.
        missing_image_ids: images the geojson names that are not on disk.
        num_features: features in the geojson.
        num_objects: boxes the reader keeps (valid type, on disk, inside or partly inside).
        clipped: of those, boxes that extend past their image.
        degenerate: zero-area and inverted boxes.
        outside_image: boxes entirely outside their image.
        unknown_type: features with a type id that is not one of the 60 classes.
        features_without_image: features of the missing images.
        objects_per_type: kept boxes per type id.
        type_ids: the classes drawn.
    """

    root: Path
    geojson: Path
    image_ids: tuple[str, ...]
    image_sizes: Mapping[str, tuple[int, int]]
    missing_image_ids: tuple[str, ...]
    num_features: int
    num_objects: int
    clipped: int
    degenerate: int
    outside_image: int
    unknown_type: int
    features_without_image: int
    objects_per_type: Mapping[int, int] = field(default_factory=dict)
    type_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class _ClassStyle:
    colour: npt.NDArray[np.float32]  # RGB 0-255
    side: tuple[int, int]  # min, max of the long side in pixels
    aspect: tuple[float, float]  # min, max of short / long side


def _class_style(type_id: int, position: int, count: int) -> _ClassStyle:
    """Colour by the class's position among the drawn classes (distinct hues); size by class."""
    hue = position / max(count, 1)
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    colour = np.array([r, g, b], dtype=np.float32) * 255.0
    label = XVIEW_TYPE_TO_LABEL[type_id]
    if type_id in (11, 12, 13, 74):  # aircraft, hangars
        side, aspect = (36, 64), (0.7, 1.0)
    elif type_id in (73, 76, 77, 79, 83, 89):  # buildings, facilities, lots
        side, aspect = (20, 56), (0.5, 1.0)
    elif type_id in (86, 84, 71, 72, 93, 94):  # tanks, helipads, sheds, pylons, towers
        side, aspect = (14, 32), (0.85, 1.0)
    elif 40 <= type_id <= 52:  # vessels
        side, aspect = (20, 48), (0.3, 0.5)
    else:  # vehicles and machinery, scaled a bit with the label to vary the classes
        side, aspect = (12 + label % 4, 24 + label % 8), (0.4, 0.6)
    return _ClassStyle(colour, side, aspect)


def _background(rng: np.random.Generator, width: int, height: int) -> npt.NDArray[np.float32]:
    """Darker land cover: two earth tones mixed by low-frequency waves, noise and roads."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mix = np.zeros((height, width), dtype=np.float32)
    for _ in range(3):
        freq = rng.uniform(1 / 300, 1 / 60)
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        mix += np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    mix = (mix / 6.0 + 0.5).clip(0, 1)[..., None]
    soil = np.array([96.0, 84.0, 66.0], dtype=np.float32) * rng.uniform(0.85, 1.15)
    green = np.array([58.0, 74.0, 48.0], dtype=np.float32) * rng.uniform(0.85, 1.15)
    image = soil * mix + green * (1 - mix)
    image += rng.normal(0.0, 6.0, size=(height, width, 1)).astype(np.float32)
    image += rng.normal(0.0, 3.0, size=(height, width, 3)).astype(np.float32)
    road = np.array([82.0, 82.0, 86.0], dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        half = int(rng.integers(3, 7))
        if rng.random() < 0.5:
            y = int(rng.integers(half, height - half))
            image[y - half : y + half, :] = road
        else:
            x = int(rng.integers(half, width - half))
            image[:, x - half : x + half] = road
    return image


def _draw_object(
    image: npt.NDArray[np.float32], box: tuple[int, int, int, int], colour: npt.NDArray[np.float32]
) -> None:
    """A bright rectangle with a darker rim and a shadow to the lower right, clipped."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    shadow = 2
    sx0, sy0 = max(x0 + shadow, 0), max(y0 + shadow, 0)
    sx1, sy1 = min(x1 + shadow, width), min(y1 + shadow, height)
    if sx1 > sx0 and sy1 > sy0:
        image[sy0:sy1, sx0:sx1] *= 0.45
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    image[cy0:cy1, cx0:cx1] = colour * 0.7
    if cx1 - cx0 > 2 and cy1 - cy0 > 2:
        image[cy0 + 1 : cy1 - 1, cx0 + 1 : cx1 - 1] = colour


def _point_geom(lon: float, lat: float) -> str:
    """Hex EWKB of a point with SRID 4326, as PostGIS writes it (the real ``point_geom``)."""
    return struct.pack("<BIIdd", 1, 0x20000001, 4326, lon, lat).hex().upper()


def _prepare_output(root: Path, overwrite: bool) -> None:
    # only what the generator (and the reader's cache) owns
    prepare_sample_folder(root, overwrite, (XVIEW_IMAGES_DIR, ".geossl-cache", XVIEW_GEOJSON))


def _place_boxes(
    rng: np.random.Generator,
    width: int,
    height: int,
    count: int,
    classes: Sequence[int],
    styles: Mapping[int, _ClassStyle],
    occupied: Sequence[tuple[int, int, int, int]] = (),
) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Up to ``count`` boxes fully inside the image, 2 px apart from each other and ``occupied``."""
    placed: list[tuple[int, tuple[int, int, int, int]]] = [(-1, b) for b in occupied]
    for _ in range(count * 30):
        if len(placed) == count + len(occupied):
            break
        type_id = int(classes[int(rng.integers(len(classes)))])
        style = styles[type_id]
        long_side = int(rng.integers(style.side[0], style.side[1] + 1))
        short_side = max(4, round(long_side * rng.uniform(*style.aspect)))
        w, h = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
        if w >= width - 4 or h >= height - 4:
            continue
        x0 = int(rng.integers(2, width - w - 1))
        y0 = int(rng.integers(2, height - h - 1))
        box = (x0, y0, x0 + w, y0 + h)
        if any(
            box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2
            for _, b in placed
        ):
            continue
        placed.append((type_id, box))
    return placed[len(occupied) :]


_BASE_TIME = datetime(2017, 7, 24, 12, 0, tzinfo=UTC)


class _Features:
    """The features of the sample's GeoJSON, numbered and time-stamped from the sample's rng."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.items: list[dict[str, Any]] = []
        self.next_id = 300_000 + int(rng.integers(0, 50_000))

    def add(
        self,
        image_id: str,
        box: tuple[float, float, float, float],
        type_id: int,
        transform: Affine,
        cat_id: str,
        image_index: int,
    ) -> None:
        """Add the feature of ``box`` (pixels ``x0, y0, x1, y1``) of image ``image_id``."""
        rng = self.rng
        x0, y0, x1, y1 = box
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        ring = [[round(v, 9) for v in transform @ (x, y)] for x, y in corners]
        lon, lat = transform @ ((x0 + x1) / 2, (y0 + y1) / 2)
        stamp = _BASE_TIME + timedelta(seconds=int(rng.integers(0, 3 * 86400)))
        self.items.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "bounds_imcoords": ",".join(str(int(v)) for v in box),
                    "edited_by": _EDITORS[int(rng.integers(len(_EDITORS)))],
                    "cat_id": cat_id,
                    "type_id": int(type_id),
                    "ingest_time": stamp.strftime("%Y/%m/%d %H:%M:%S.")
                    + f"{int(rng.integers(0, 1000)):03d}+00",
                    "index_right": image_index,
                    "image_id": image_id,
                    "point_geom": _point_geom(lon, lat),
                    "feature_id": self.next_id,
                    "grade": int(rng.choice([1, 1, 1, 2])),
                },
            }
        )
        self.next_id += 1


def _geo_transform(rng: np.random.Generator) -> Affine:
    """A north-up EPSG:4326 transform of ~0.3 m pixels at a random place."""
    lat = float(rng.uniform(-35.0, 55.0))
    lon = float(rng.uniform(-120.0, 140.0))
    dy = _GSD_M / _METRES_PER_DEG
    dx = dy / max(np.cos(np.radians(lat)), 0.2)
    return Affine(dx, 0.0, round(lon, 6), 0.0, -dy, round(lat, 6))


@dataclass
class _Sample:
    """What the images of a sample share while they are drawn: rng, classes, features, counts."""

    rng: np.random.Generator
    distinct: list[int]
    styles: Mapping[int, _ClassStyle]
    features: _Features
    counts: dict[str, int]
    per_type: dict[int, int]


@dataclass(frozen=True)
class _Image:
    """One image being drawn: its number in the sample, id, size, transform and catalogue id."""

    index: int
    image_id: str
    width: int
    height: int
    transform: Affine
    cat_id: str


def _image_objects(
    sample: _Sample, image: _Image, wanted: int
) -> list[tuple[int, tuple[int, int, int, int]]]:
    """The objects of an image: an edge-cut one in the first two images, then placed boxes."""
    rng, distinct, styles = sample.rng, sample.distinct, sample.styles
    width, height = image.width, image.height
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    if image.index < 2:  # an object cut by the right image edge: its box extends past the image
        type_id = distinct[image.index % len(distinct)]
        w = min(styles[type_id].side[1], width // 4, height // 4)
        y = int(rng.integers(height // 2, height - w - 2))
        objects.append((type_id, (width - w // 3, y, width - w // 3 + w, y + max(w // 2, 6))))
        sample.counts["clipped"] += 1
    edge = [box for _, box in objects]
    objects += _place_boxes(rng, width, height, wanted, distinct, styles, occupied=edge)
    return objects


def _add_defects(sample: _Sample, image: _Image, images: int) -> None:
    """The defective features, spread over the first images (bad boxes, unknown type ids)."""
    add, first = sample.features.add, sample.distinct[0]
    k, image_id, width, height = image.index, image.image_id, image.width, image.height
    where = (image.transform, image.cat_id, k)
    if k == 0:
        x, y = width // 3, height // 3
        add(image_id, (x, y, x, y + 12), first, *where)
        add(image_id, (x + 20, y, x + 5, y + 12), first, *where)
        add(image_id, (width + 10, 5, width + 30, 25), first, *where)
        sample.counts["degenerate"] += 2
        sample.counts["outside"] += 1
    if k == min(1, images - 1):
        for unknown in UNKNOWN_TYPE_IDS:
            x, y = int(sample.rng.integers(0, width - 20)), int(sample.rng.integers(0, height - 20))
            add(image_id, (x, y, x + 16, y + 16), unknown, *where)
            sample.counts["unknown"] += 1


def _write_image(
    sample: _Sample,
    path: Path,
    index: int,
    image_size: int,
    objects_per_image: int | None,
    images: int,
) -> tuple[int, int]:
    """Draw image ``index`` of the sample, add its features, write it; return ``(w, h)``."""
    rng = sample.rng
    width = int(rng.integers(int(0.75 * image_size), image_size + 1))
    height = int(rng.integers(int(0.75 * image_size), image_size + 1))
    transform = _geo_transform(rng)
    cat_id = _CAT_IDS[int(rng.integers(len(_CAT_IDS)))]
    image = _Image(index, path.name, width, height, transform, cat_id)
    canvas = _background(rng, width, height)
    wanted = (
        objects_per_image
        if objects_per_image is not None
        else max(4, round(width * height / 96**2))
    )
    for type_id, box in _image_objects(sample, image, wanted):
        _draw_object(canvas, box, sample.styles[type_id].colour)
        sample.features.add(image.image_id, box, type_id, transform, cat_id, index)
        sample.counts["objects"] += 1
        sample.per_type[type_id] += 1
    _add_defects(sample, image, images)
    pixels = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    bands = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    write_geotiff(path, bands, 4326, transform, photometric="RGB", interleave="pixel")
    return width, height


def _write_geojson(out: Path, sample: _Sample, image_size: int) -> Path:
    """Add the features of the missing image, then write the labels file in the real order."""
    rng, features = sample.rng, sample.features
    # features of an image missing on disk, like the real 1395.tif
    missing_transform = _geo_transform(rng)
    for _ in range(3):
        x, y = int(rng.integers(0, image_size - 40)), int(rng.integers(0, image_size - 40))
        box = (x, y, x + 30, y + 20)
        features.add(MISSING_IMAGE_ID, box, sample.distinct[0], missing_transform, _CAT_IDS[0], -1)
        sample.counts["no_image"] += 1
    # the real file lists features image by image, not in image-number order
    order = rng.permutation(len(features.items))
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [features.items[int(i)] for i in order],
    }
    geojson = out / XVIEW_GEOJSON
    atomic_write_bytes(geojson, json.dumps(collection, separators=(", ", ": ")).encode())
    return geojson


def _check_arguments(
    images: int, image_size: int, objects_per_image: int | None, type_ids: Sequence[int] | None
) -> tuple[int, ...]:
    """Validate the arguments of `generate_xview_sample`; return the classes to draw."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"images must be a positive integer, got {images!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 64:
        raise ValueError(f"image_size must be an integer >= 64, got {image_size!r}")
    if objects_per_image is not None:
        check_range("objects_per_image", objects_per_image, low=0)
    classes = tuple(DEFAULT_SAMPLE_TYPE_IDS if type_ids is None else type_ids)
    bad = sorted({t for t in classes if t not in XVIEW_TYPE_TO_LABEL})
    if not classes or bad:
        raise ValueError(
            f"type_ids must be a non-empty list of the 60 xView type ids; not classes: {bad}"
        )
    return classes


def generate_xview_sample(
    root: str | Path,
    *,
    images: int = 12,
    image_size: int = 1024,
    seed: int = 0,
    overwrite: bool = False,
    objects_per_image: int | None = None,
    type_ids: Sequence[int] | None = None,
) -> XViewSampleSummary:
    """Write a seeded xView sample in the real layout (see the module doc).

    Image ``k`` is ``train_images/{n}.tif`` with distinct random numbers ``n`` (never 1395, the
    missing one); its width and height are drawn in ``[0.75, 1] * image_size``. The defects (one
    each of zero-area, inverted and outside boxes, one feature per unknown type id, up to two
    objects cut by the image edge, three features of the missing ``1395.tif``) go to the first
    images.

    Args:
        root: the sample's root folder (created).
        images: images written (>= 1).
        image_size: largest image side in pixels (>= 64).
        seed: the random seed; the same seed and arguments give byte-identical files.
        overwrite: when ``root`` is a non-empty folder, replace the sample's own entries
            (``xView_train.geojson``, ``train_images/``, ``.geossl-cache/``) instead of raising.
        objects_per_image: valid objects per image; default about one per 96 x 96 pixels (>= 4).
        type_ids: classes to draw (xView type ids of the 60 classes); default
            `DEFAULT_SAMPLE_TYPE_IDS`.

    Returns:
        A [`XViewSampleSummary`][geossl.synthetic.xview.XViewSampleSummary] of what was written.

    Raises:
        ValueError: when an argument is out of range or a type id is not one of the 60 classes.
        FileExistsError: when ``root`` is a file, or a non-empty folder and ``overwrite`` is
            ``False``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     summary = generate_xview_sample(f"{folder}/xview", images=1, image_size=64)
        ...     print(summary.image_ids, summary.num_objects, summary.geojson.name)
        ('1657.tif',) 3 xView_train.geojson
    """
    classes = _check_arguments(images, image_size, objects_per_image, type_ids)
    out = Path(root)
    _prepare_output(out, overwrite)
    image_dir = out / XVIEW_IMAGES_DIR
    image_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    numbers = sorted(
        int(n) for n in rng.choice(np.arange(5, 2600), size=images + 1, replace=False) if n != 1395
    )[:images]
    image_ids = tuple(f"{n}.tif" for n in numbers)
    distinct = sorted(set(classes))
    styles = {t: _class_style(t, distinct.index(t), len(distinct)) for t in distinct}
    counts = dict.fromkeys(
        ("objects", "clipped", "degenerate", "outside", "unknown", "no_image"), 0
    )
    sample = _Sample(rng, distinct, styles, _Features(rng), counts, dict.fromkeys(distinct, 0))
    sizes = {
        image_id: _write_image(
            sample, image_dir / image_id, k, image_size, objects_per_image, images
        )
        for k, image_id in enumerate(image_ids)
    }
    return _write_labels_and_summarise(out, sample, sizes, image_size)


def _write_labels_and_summarise(
    out: Path, sample: _Sample, sizes: dict[str, tuple[int, int]], image_size: int
) -> XViewSampleSummary:
    """Write the geojson once every image is drawn; return what the sample holds."""
    return XViewSampleSummary(
        root=out,
        geojson=_write_geojson(out, sample, image_size),
        image_ids=tuple(sizes),  # the image ids, in the order they were written
        image_sizes=sizes,
        missing_image_ids=(MISSING_IMAGE_ID,),
        num_features=len(sample.features.items),
        num_objects=sample.counts["objects"],
        clipped=sample.counts["clipped"],
        degenerate=sample.counts["degenerate"],
        outside_image=sample.counts["outside"],
        unknown_type=sample.counts["unknown"],
        features_without_image=sample.counts["no_image"],
        objects_per_type=sample.per_type,
        type_ids=tuple(sample.distinct),
    )
