"""Seeded generator of a small SpaceNet-1 / SpaceNet-2 building sample in the real on-disk layout.

The files are laid out exactly as torchgeo 0.8.1's :class:`torchgeo.datasets.SpaceNet1` and
:class:`~torchgeo.datasets.SpaceNet2` find them after extracting the public tarballs
(``s3://spacenet-dataset/spacenet/SN{1,2}_buildings/tarballs/``) into ``{root}/{dataset_id}/train``:

* SpaceNet-1 (Rio de Janeiro, WorldView-2)::

      {root}/SN1_buildings/train/3band/3band_AOI_1_RIO_img{N}.tif      3 x 406 x 439 uint8, ~0.5 m
      {root}/SN1_buildings/train/8band/8band_AOI_1_RIO_img{N}.tif      8 x 102 x 110 uint16, ~2 m
      {root}/SN1_buildings/train/geojson/Geo_AOI_1_RIO_img{N}.geojson  building polygons

* SpaceNet-2 (AOI 2 Vegas by default; 3 Paris, 4 Shanghai, 5 Khartoum; WorldView-3)::

      {root}/SN2_buildings/train/AOI_2_Vegas_Train/RGB-PanSharpen/RGB-PanSharpen_AOI_2_Vegas_img{N}.tif
      .../MUL-PanSharpen/MUL-PanSharpen_AOI_2_Vegas_img{N}.tif   8 x 650 x 650 uint16, 0.3 m
      .../PAN/PAN_AOI_2_Vegas_img{N}.tif                         1 x 650 x 650 uint16, 0.3 m
      .../MUL/MUL_AOI_2_Vegas_img{N}.tif                         8 x 163 x 163 uint16, 1.2 m
      .../geojson/buildings/buildings_AOI_2_Vegas_img{N}.geojson

  (``RGB-PanSharpen``: 3 x 650 x 650 uint16.) uint16 products hold 11-bit digital numbers
  (1..2047), as WorldView-2/3 deliver them.

All GeoTIFFs are north-up in EPSG:4326 (the CRS of the SpaceNet-1/2 chips), with square pixels in
degrees (SpaceNet-1: torchgeo's test transform, ~0.46 x 0.50 m at Rio; SpaceNet-2: 2.7e-6 deg).
A multispectral product shares the pan-sharpened product's origin with 4x larger pixels, so it
covers a sliver more ground (the real chips do the same: 110 x 4 > 439). Tiles of one sample are
adjacent chips of one grid, as in the real mosaics. Tile ids (``img{N}``) are distinct, non-
contiguous and unpadded, so a lexicographic sort differs from torchgeo's numeric one.

Labels are GeoJSON FeatureCollections in EPSG:4326 (``crs`` member
``urn:ogc:def:crs:OGC:1.3:CRS84``, 3-D coordinates with ``z = 0`` as in SpaceNet-1): one polygon
per building, clipped to the chip (``partialBuilding: 1`` for clipped ones). About a quarter of the
tiles have no building and an empty FeatureCollection, as in the real data.

The pixels show what the polygons say: a textured background (vegetation / soil noise, asphalt
roads) with rotated rectangular or L-shaped buildings drawn in roof colours (concrete, terracotta,
white, metal), a gable shading and a cast shadow outside the footprint. A building's roof is drawn
on exactly the pixels that ``rasterio.features.rasterize(..., all_touched=False)`` gives for its
polygon on the product grid (pixel centres inside the polygon), the rule torchgeo uses to make
``mask``: torchgeo's mask of the pan-sharpened product equals the drawn roofs pixel for pixel
(:attr:`SpaceNetTileInfo.building_pixels` counts them).

Not written: the ``test`` split (it has no labels), the tarballs (torchgeo only needs them when the
extracted files are missing) and SpaceNet-2's ``summaryData`` CSVs (torchgeo does not read them).

Same seed, same arguments => byte-identical files.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from rasterio.features import rasterize
from rasterio.transform import Affine
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from geossl.utils.io import atomic_output, atomic_write_bytes

__all__ = [
    "SPACENET_COLLECTIONS",
    "SPACENET_PRODUCTS",
    "SpaceNetSampleSummary",
    "SpaceNetTileInfo",
    "generate_spacenet_sample",
]

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

#: Collections the generator writes (torchgeo's ``SpaceNet1`` / ``SpaceNet2``).
SPACENET_COLLECTIONS: tuple[str, ...] = ("spacenet1", "spacenet2")

#: Image products per collection, the first being the default (torchgeo's ``image`` argument).
SPACENET_PRODUCTS: Mapping[str, tuple[str, ...]] = {
    "spacenet1": ("3band", "8band"),
    "spacenet2": ("RGB-PanSharpen", "MUL", "MUL-PanSharpen", "PAN"),
}

#: SpaceNet-2 areas of interest: AOI number -> city (the folder / file name token).
SPACENET2_AOIS: Mapping[int, str] = {2: "Vegas", 3: "Paris", 4: "Shanghai", 5: "Khartoum"}

# Upper-left corner (lon, lat) of the sample's chip grid per AOI (inside the real AOIs).
_ORIGINS: Mapping[int, tuple[float, float]] = {
    1: (-43.7732462563, -22.9214851954),  # torchgeo's SpaceNet-1 test transform
    2: (-115.3072, 36.2117),
    3: (2.2801, 48.8693),
    4: (121.4310, 31.2325),
    5: (32.5332, 15.5842),
}

# SpaceNet-1: pixel size (deg) of the 3band chips, from torchgeo's SpaceNet-1 test data.
_SN1_PIXEL = (4.489235388119662e-06, 4.486127586210932e-06)
_SN1_SHAPE = (406, 439)  # (height, width) of a 3band chip: torchgeo's chip_size["3band"]
_SN2_PIXEL = (2.7e-06, 2.7e-06)
_SN2_SHAPE = (650, 650)
_MS_FACTOR = 4  # multispectral pixel / pan-sharpened pixel (WorldView-2/3)
_NOMINAL_GSD_M = {"spacenet1": 0.5, "spacenet2": 0.3}
_DN_GAIN = 1600.0  # reflectance-like [0, 1] -> 11-bit digital number
_DN_MAX = 2047
_EMPTY_FRACTION = 0.25

# Roof palette (RGB in [0, 1]): concrete, terracotta, white, dark metal, blue metal, tan.
_ROOFS = np.array(
    [
        [0.78, 0.76, 0.72],
        [0.72, 0.36, 0.24],
        [0.90, 0.90, 0.88],
        [0.42, 0.44, 0.48],
        [0.52, 0.62, 0.74],
        [0.82, 0.67, 0.50],
    ],
    dtype=np.float32,
)
_VEGETATION = np.array([0.22, 0.34, 0.16], dtype=np.float32)
_SOIL = np.array([0.52, 0.44, 0.34], dtype=np.float32)
_ASPHALT = np.array([0.33, 0.33, 0.34], dtype=np.float32)


@dataclass(frozen=True)
class SpaceNetTileInfo:
    """One generated chip.

    Attributes:
        tile_id: the ``N`` of ``img{N}``.
        images: product -> GeoTIFF path.
        label: the GeoJSON path.
        num_buildings: polygons in the GeoJSON (0 for an empty tile).
        building_pixels: roof pixels drawn on the grid of the collection's default product
            (``3band`` / ``RGB-PanSharpen``): the number of ones in torchgeo's ``mask``.
        bounds: ``(west, south, east, north)`` of the default product in degrees.
    """

    tile_id: int
    images: Mapping[str, Path]
    label: Path
    num_buildings: int
    building_pixels: int
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True)
class SpaceNetSampleSummary:
    """What :func:`generate_spacenet_sample` wrote.

    Attributes:
        root: the root folder to give torchgeo (``SpaceNet1(root)``).
        collection: ``"spacenet1"`` or ``"spacenet2"``.
        dataset_dir: ``{root}/SN1_buildings`` or ``{root}/SN2_buildings``.
        aoi: the area of interest (1 for SpaceNet-1).
        products: the image products written.
        tiles: the chips, in torchgeo's order (numeric tile id).
    """

    root: Path
    collection: str
    dataset_dir: Path
    aoi: int
    products: tuple[str, ...]
    tiles: tuple[SpaceNetTileInfo, ...] = field(default_factory=tuple)

    @property
    def num_tiles(self) -> int:
        """Number of chips."""
        return len(self.tiles)

    @property
    def num_buildings(self) -> int:
        """Building polygons over all chips."""
        return sum(t.num_buildings for t in self.tiles)

    @property
    def empty_tiles(self) -> tuple[int, ...]:
        """Ids of the chips without buildings."""
        return tuple(t.tile_id for t in self.tiles if t.num_buildings == 0)


@dataclass(frozen=True)
class _Layout:
    """File names and grids of one collection."""

    dataset_id: str
    train_dir: Path  # relative to root
    owned: Path  # what overwrite may delete, relative to root
    image_dirs: Mapping[str, Path]  # product -> folder (relative to root)
    image_names: Mapping[str, str]  # product -> name template with {n}
    label_dir: Path
    label_name: str
    shape: tuple[int, int]  # (height, width) of the pan-sharpened products
    pixel: tuple[float, float]  # (dx, dy) in degrees, dy > 0
    gsd_m: float


def _layout(collection: str, aoi: int) -> _Layout:
    if collection == "spacenet1":
        train = Path("SN1_buildings") / "train"
        return _Layout(
            dataset_id="SN1_buildings",
            train_dir=train,
            owned=train,
            image_dirs={"3band": train / "3band", "8band": train / "8band"},
            image_names={
                "3band": "3band_AOI_1_RIO_img{n}.tif",
                "8band": "8band_AOI_1_RIO_img{n}.tif",
            },
            label_dir=train / "geojson",
            label_name="Geo_AOI_1_RIO_img{n}.geojson",
            shape=_SN1_SHAPE,
            pixel=_SN1_PIXEL,
            gsd_m=_NOMINAL_GSD_M[collection],
        )
    city = SPACENET2_AOIS[aoi]
    train = Path("SN2_buildings") / "train"
    folder = train / f"AOI_{aoi}_{city}_Train"
    products = SPACENET_PRODUCTS["spacenet2"]
    return _Layout(
        dataset_id="SN2_buildings",
        train_dir=train,
        owned=folder,
        image_dirs={p: folder / p for p in products},
        image_names={p: f"{p}_AOI_{aoi}_{city}_img{{n}}.tif" for p in products},
        label_dir=folder / "geojson" / "buildings",
        label_name=f"buildings_AOI_{aoi}_{city}_img{{n}}.geojson",
        shape=_SN2_SHAPE,
        pixel=_SN2_PIXEL,
        gsd_m=_NOMINAL_GSD_M[collection],
    )


# -------------------------------------------------------------------------------------------------
# scene rendering
# -------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> FloatArray:
    """Value noise in [0, 1]: a random grid of ``cell``-pixel spacing, bilinearly upsampled."""
    grid = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
    image = Image.fromarray(grid, mode="F").resize(
        ((width // cell + 2) * cell, (height // cell + 2) * cell), Image.Resampling.BILINEAR
    )
    return np.asarray(image, dtype=np.float32)[:height, :width]


def _roads(
    rng: np.random.Generator, height: int, width: int, gsd_m: float
) -> tuple[list[Polygon], float]:
    """1-3 straight roads (pixel-space polygons) across the chip, and the street-grid angle."""
    angle = float(rng.uniform(-20.0, 20.0))
    roads: list[Polygon] = []
    centre = (width / 2.0, height / 2.0)
    span = 2.0 * max(height, width)
    for k in range(int(rng.integers(1, 4))):
        half = float(rng.uniform(3.0, 5.0)) / gsd_m
        offset = float(rng.uniform(-0.4, 0.4)) * (height if k % 2 == 0 else width)
        strip = box(
            centre[0] - span, centre[1] + offset - half, centre[0] + span, centre[1] + offset + half
        )
        roads.append(affinity.rotate(strip, angle + (90.0 if k % 2 else 0.0), origin=centre))
    return roads, angle


def _building(
    rng: np.random.Generator, height: int, width: int, gsd_m: float, angle: float
) -> BaseGeometry:
    """A rotated rectangle (or an L of two) in pixel coordinates; may cross the chip edge."""
    cx = float(rng.uniform(-0.05, 1.05)) * width
    cy = float(rng.uniform(-0.05, 1.05)) * height
    side_a = float(rng.uniform(7.0, 22.0)) / gsd_m
    side_b = side_a * float(rng.uniform(0.5, 1.0))
    shape: BaseGeometry = box(cx - side_a / 2, cy - side_b / 2, cx + side_a / 2, cy + side_b / 2)
    if rng.random() < 0.25:  # an L-shaped house: a wing on one corner
        wing = box(cx, cy, cx + side_a / 2, cy + side_b * float(rng.uniform(0.9, 1.4)))
        shape = unary_union([shape, wing])
    return affinity.rotate(shape, angle + float(rng.normal(0.0, 4.0)), origin=(cx, cy))


def _place_buildings(
    rng: np.random.Generator, count: int, height: int, width: int, gsd_m: float
) -> tuple[list[Polygon], list[bool], list[Polygon]]:
    """Place non-overlapping buildings clear of the roads, clipped to the chip.

    Returns:
        The buildings (pixel space), whether each was cut by the chip edge, and the roads.
    """
    roads, angle = _roads(rng, height, width, gsd_m)
    chip = box(0.0, 0.0, float(width), float(height))
    taken: list[BaseGeometry] = []
    buildings: list[Polygon] = []
    partial: list[bool] = []
    gap = 1.5 / gsd_m  # keep 1.5 m between footprints so that masks do not merge
    for _ in range(count * 20):
        if len(buildings) == count:
            break
        footprint = _building(rng, height, width, gsd_m, angle)
        if any(footprint.buffer(gap).intersects(t) for t in (*roads, *taken)):
            continue
        clipped = footprint.intersection(chip)
        if clipped.is_empty or clipped.area < (4.0 / gsd_m) ** 2:
            continue
        parts = list(clipped.geoms) if isinstance(clipped, MultiPolygon) else [clipped]
        polygons = [p for p in parts if isinstance(p, Polygon) and not p.is_empty]
        if len(polygons) != 1:
            continue  # a footprint cut in two by the chip edge: skip rather than split
        taken.append(footprint)
        buildings.append(polygons[0])
        partial.append(polygons[0].area < footprint.area * (1 - 1e-9))
    return buildings, partial, roads


def _pixel_to_world(geom: Polygon, transform: Affine) -> Polygon:
    """Map a pixel-space ``(col, row)`` polygon to the CRS of ``transform``."""
    return affinity.affine_transform(
        geom, [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    )


@dataclass
class _Scene:
    rgb: FloatArray  # [3, H, W] reflectance-like in [0, 1]
    nir: FloatArray  # [H, W]
    roofs: npt.NDArray[np.int32]  # [H, W] building index + 1, 0 outside


def _render(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    transform: Affine,
    polygons_world: Sequence[Polygon],
    roads_px: Sequence[Polygon],
    gsd_m: float,
) -> _Scene:
    """Draw the background, roads, shadows and roofs on a ``canvas`` (height, width) grid."""
    height, width = canvas
    veg = 0.65 * _smooth_noise(rng, height, width, 48) + 0.35 * _smooth_noise(
        rng, height, width, 12
    )
    v = 1.0 / (1.0 + np.exp(-(veg - 0.5) * 10.0))  # vegetation fraction
    fine = 1.0 + 0.08 * (_smooth_noise(rng, height, width, 2) - 0.5)
    rgb = (v[None] * _VEGETATION[:, None, None] + (1 - v[None]) * _SOIL[:, None, None]) * fine[None]
    nir = (0.30 + 0.30 * v) * fine
    if roads_px:
        road = rasterize(roads_px, out_shape=canvas, fill=0, all_touched=False, dtype="uint8") > 0
        rgb = np.where(road[None], _ASPHALT[:, None, None] * fine[None], rgb)
        nir = np.where(road, 0.28 * fine, nir)
    roofs = np.zeros(canvas, dtype=np.int32)
    if polygons_world:
        shapes = [(p, i + 1) for i, p in enumerate(polygons_world)]
        roofs = rasterize(
            shapes, out_shape=canvas, transform=transform, fill=0, all_touched=False, dtype="int32"
        )
        # cast shadow (sun from the north-west): the footprint shifted south-east, outside roofs
        shift = max(1, round(1.5 / gsd_m))
        inside = roofs > 0
        shadow = np.zeros_like(inside)
        shadow[shift:, shift:] = inside[:-shift, :-shift]
        shadow &= ~inside
        rgb = np.where(shadow[None], rgb * 0.5, rgb)
        nir = np.where(shadow, nir * 0.5, nir)
        # roofs: one palette colour per building, brightness jitter, gable shading
        colours = _ROOFS[rng.integers(0, len(_ROOFS), size=len(polygons_world))]
        colours = colours * rng.uniform(0.9, 1.08, size=(len(polygons_world), 1)).astype(np.float32)
        table = np.concatenate([np.zeros((1, 3), np.float32), colours], axis=0)  # index 0 unused
        roof_rgb = table[roofs].transpose(2, 0, 1)  # [3, H, W]
        rows, cols = np.indices(canvas, dtype=np.float32)
        gable = np.ones(canvas, dtype=np.float32)
        for i in range(len(polygons_world)):
            sel = roofs == i + 1
            if not sel.any():
                continue
            r0, c0 = rows[sel].mean(), cols[sel].mean()
            theta = math.radians(float(rng.uniform(0, 180)))
            side = (rows[sel] - r0) * math.cos(theta) - (cols[sel] - c0) * math.sin(theta)
            gable[sel] = np.where(side > 0, 0.9, 1.0)
        texture = 1.0 + 0.03 * (_smooth_noise(rng, height, width, 3) - 0.5)
        roof_rgb = roof_rgb * (gable * texture)[None]
        rgb = np.where(inside[None], roof_rgb, rgb)
        nir = np.where(inside, 0.8 * roof_rgb.mean(axis=0), nir)
    return _Scene(
        np.clip(rgb, 0.0, 1.0).astype(np.float32), np.clip(nir, 0, 1).astype(np.float32), roofs
    )


def _block_mean(array: FloatArray, factor: int) -> FloatArray:
    """Average ``factor x factor`` blocks of ``[C, H, W]`` (H and W multiples of factor)."""
    c, h, w = array.shape
    blocks = array.reshape(c, h // factor, factor, w // factor, factor)
    return np.asarray(blocks.mean(axis=(2, 4)), dtype=np.float32)


def _eight_bands(rgb: FloatArray, nir: FloatArray) -> FloatArray:
    """WorldView-2/3 multispectral bands approximated from RGB and NIR.

    Order: coastal, blue, green, yellow, red, red edge, NIR1, NIR2.
    """
    red, green, blue = rgb[0], rgb[1], rgb[2]
    return np.stack(
        [
            0.8 * blue + 0.05,
            blue,
            green,
            0.5 * (red + green),
            red,
            0.5 * (red + nir),
            nir,
            0.95 * nir,
        ]
    ).astype(np.float32)


def _to_dn(rng: np.random.Generator, reflectance: FloatArray) -> npt.NDArray[np.uint16]:
    """11-bit digital numbers with sensor noise."""
    noise = rng.normal(0.0, 6.0, size=reflectance.shape).astype(np.float32)
    dn = np.clip(np.rint(reflectance * _DN_GAIN + noise), 1, _DN_MAX)
    return np.asarray(dn, dtype=np.uint16)


def _to_uint8(reflectance: FloatArray) -> npt.NDArray[np.uint8]:
    return np.asarray(np.clip(np.rint(reflectance * 255.0), 0, 255), dtype=np.uint8)


def _products(
    rng: np.random.Generator, collection: str, scene: _Scene, shape: tuple[int, int]
) -> dict[str, npt.NDArray[Any]]:
    """Every image product of a chip, bands first, from the rendered canvas."""
    h, w = shape
    if collection == "spacenet1":
        ms = _eight_bands(scene.rgb, scene.nir)
        return {
            "3band": _to_uint8(scene.rgb[:, :h, :w]),
            "8band": _to_dn(rng, _block_mean(ms, _MS_FACTOR)),
        }
    ms = _eight_bands(scene.rgb, scene.nir)
    red, green, blue = scene.rgb[0], scene.rgb[1], scene.rgb[2]
    pan = (0.30 * red + 0.35 * green + 0.15 * blue + 0.20 * scene.nir)[None]
    return {
        "RGB-PanSharpen": _to_dn(rng, scene.rgb[:, :h, :w]),
        "MUL": _to_dn(rng, _block_mean(ms, _MS_FACTOR)),
        "MUL-PanSharpen": _to_dn(rng, ms[:, :h, :w]),
        "PAN": _to_dn(rng, pan[:, :h, :w].astype(np.float32)),
    }


# -------------------------------------------------------------------------------------------------
# files
# -------------------------------------------------------------------------------------------------


def _write_geotiff(path: Path, bands: npt.NDArray[Any], transform: Affine) -> None:
    """Write a north-up EPSG:4326 GeoTIFF (bands first) atomically."""
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
            crs="EPSG:4326",
            transform=transform,
        ) as dst,
    ):
        dst.write(bands)


def _with_z(coords: Any) -> Any:
    """Add ``z = 0`` to every position of a GeoJSON coordinate array (SpaceNet-1 writes 3-D)."""
    if isinstance(coords, tuple | list) and coords and isinstance(coords[0], float | int):
        return [float(coords[0]), float(coords[1]), 0.0]
    return [_with_z(c) for c in coords]


def _geojson(polygons: Sequence[Polygon], partial: Sequence[bool], z: bool) -> bytes:
    features = []
    for i, (polygon, cut) in enumerate(zip(polygons, partial, strict=True)):
        geometry = dict(mapping(polygon))
        geometry["coordinates"] = (
            _with_z(geometry["coordinates"])
            if z
            else [[list(pt) for pt in ring] for ring in geometry["coordinates"]]
        )
        features.append(
            {
                "type": "Feature",
                "properties": {"building_id": i + 1, "partialBuilding": int(cut)},
                "geometry": geometry,
            }
        )
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": features,
    }
    return json.dumps(collection).encode("ascii")


def _prepare_output(root: Path, layout: _Layout, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root}: output exists and is not a folder")
    owned = root / layout.owned
    if owned.exists() and any(owned.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{owned}: sample folder is not empty (pass overwrite=True to replace it)"
            )
        shutil.rmtree(owned)  # only the generator's own folder, never the rest of root


def generate_spacenet_sample(
    root: str | Path,
    *,
    collection: str = "spacenet1",
    tiles: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    aoi: int | None = None,
    products: Sequence[str] | None = None,
) -> SpaceNetSampleSummary:
    """Write a seeded SpaceNet-1 or SpaceNet-2 sample that torchgeo's classes read.

    ``torchgeo.datasets.SpaceNet1(root)`` / ``SpaceNet2(root, aois=[aoi], image=product)`` load it
    as they load the extracted real data (see the module doc for the layout and the pixels).

    Args:
        root: the root folder (torchgeo's ``root``); created.
        collection: ``"spacenet1"`` (Rio, ``3band`` / ``8band``) or ``"spacenet2"``
            (``RGB-PanSharpen``, ``MUL``, ``MUL-PanSharpen``, ``PAN``).
        tiles: number of chips (>= 1); about a quarter of them (at least one when ``tiles >= 2``)
            have no building.
        seed: the random seed; the same seed and arguments give byte-identical files.
        overwrite: replace an existing sample of the same collection / AOI under ``root`` (only
            that folder is deleted) instead of raising.
        aoi: SpaceNet-2 area of interest (2 Vegas, 3 Paris, 4 Shanghai, 5 Khartoum; default 2);
            SpaceNet-1 has only AOI 1.
        products: the image products to write (default: all of the collection's); labels are
            always written.

    Returns:
        A :class:`SpaceNetSampleSummary`.

    Raises:
        ValueError: on an unknown collection, AOI or product, or ``tiles < 1``.
        FileExistsError: when the collection's folder is not empty and ``overwrite`` is False.
    """
    if collection not in SPACENET_COLLECTIONS:
        raise ValueError(
            f"collection must be one of {list(SPACENET_COLLECTIONS)}, got {collection!r}"
        )
    if isinstance(tiles, bool) or not isinstance(tiles, int | np.integer) or tiles < 1:
        raise ValueError(f"tiles must be a positive integer, got {tiles!r}")
    if collection == "spacenet1":
        if aoi not in (None, 1):
            raise ValueError(f"SpaceNet-1 has only AOI 1 (Rio), got aoi={aoi}")
        aoi = 1
    else:
        aoi = 2 if aoi is None else aoi
        if aoi not in SPACENET2_AOIS:
            raise ValueError(f"SpaceNet-2 aoi must be one of {sorted(SPACENET2_AOIS)}, got {aoi}")
    valid = SPACENET_PRODUCTS[collection]
    chosen = tuple(valid if products is None else products)
    unknown = [p for p in chosen if p not in valid]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"products must be distinct names of {list(valid)}, got {list(chosen)}")

    root = Path(root)
    layout = _layout(collection, aoi)
    _prepare_output(root, layout, overwrite)
    for product in chosen:
        (root / layout.image_dirs[product]).mkdir(parents=True, exist_ok=True)
    (root / layout.label_dir).mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    id_range = 6940 if collection == "spacenet1" else 4000
    tile_ids = sorted(int(n) for n in rng.choice(np.arange(1, id_range + 1), tiles, replace=False))
    num_empty = max(1, round(tiles * _EMPTY_FRACTION)) if tiles >= 2 else 0
    empty = {int(i) for i in rng.choice(tiles, num_empty, replace=False)}
    columns = math.ceil(math.sqrt(tiles))
    height, width = layout.shape
    canvas = (
        math.ceil(height / _MS_FACTOR) * _MS_FACTOR,
        math.ceil(width / _MS_FACTOR) * _MS_FACTOR,
    )
    dx, dy = layout.pixel
    west0, north0 = _ORIGINS[aoi]
    infos: list[SpaceNetTileInfo] = []
    for index, tile_id in enumerate(tile_ids):
        tile_rng = np.random.default_rng([seed, tile_id])
        west = west0 + (index % columns) * width * dx
        north = north0 - (index // columns) * height * dy
        transform = Affine(dx, 0.0, west, 0.0, -dy, north)
        count = 0 if index in empty else int(tile_rng.integers(8, 28))
        buildings_px, partial, roads = _place_buildings(
            tile_rng, count, height, width, layout.gsd_m
        )
        buildings = [_pixel_to_world(b, transform) for b in buildings_px]
        scene = _render(tile_rng, canvas, transform, buildings, roads, layout.gsd_m)
        images = _products(tile_rng, collection, scene, layout.shape)
        paths: dict[str, Path] = {}
        for product in chosen:
            path = root / layout.image_dirs[product] / layout.image_names[product].format(n=tile_id)
            scale = _MS_FACTOR if product in ("8band", "MUL") else 1
            _write_geotiff(path, images[product], transform @ Affine.scale(scale))
            paths[product] = path
        label = root / layout.label_dir / layout.label_name.format(n=tile_id)
        atomic_write_bytes(label, _geojson(buildings, partial, z=collection == "spacenet1"))
        infos.append(
            SpaceNetTileInfo(
                tile_id=tile_id,
                images=paths,
                label=label,
                num_buildings=len(buildings),
                building_pixels=int((scene.roofs[:height, :width] > 0).sum()),
                bounds=(west, north - height * dy, west + width * dx, north),
            )
        )
    return SpaceNetSampleSummary(
        root=root,
        collection=collection,
        dataset_dir=root / layout.dataset_id,
        aoi=aoi,
        products=chosen,
        tiles=tuple(infos),
    )
