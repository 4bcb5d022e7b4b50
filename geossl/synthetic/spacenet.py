"""Seeded generator of a small SpaceNet-1 / SpaceNet-2 building sample in the real on-disk layout.

The files are laid out exactly as torchgeo 0.8.1's `torchgeo.datasets.SpaceNet1` and
`SpaceNet2` find them after extracting the public tarballs
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
(`SpaceNetTileInfo.building_pixels` counts them).

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
from rasterio.transform import Affine
from shapely.geometry import Polygon, mapping

from geossl.synthetic.common import write_geotiff
from geossl.synthetic.spacenet_scene import (
    _MS_FACTOR,
    _pixel_to_world,
    _place_buildings,
    _products,
    _render,
)
from geossl.utils.io import atomic_write_bytes

__all__ = [
    "SPACENET_COLLECTIONS",
    "SPACENET_PRODUCTS",
    "SpaceNetSampleSummary",
    "SpaceNetTileInfo",
    "generate_spacenet_sample",
]


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
_NOMINAL_GSD_M = {"spacenet1": 0.5, "spacenet2": 0.3}
_EMPTY_FRACTION = 0.25


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
    """What [`generate_spacenet_sample`][geossl.synthetic.spacenet.generate_spacenet_sample] wrote.

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

    collection: str
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
            collection=collection,
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
        collection=collection,
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


def _check_arguments(
    collection: str, tiles: int, aoi: int | None, products: Sequence[str] | None
) -> tuple[int, tuple[str, ...]]:
    """Validate the arguments of `generate_spacenet_sample`; return the AOI and products."""
    if collection not in SPACENET_COLLECTIONS:
        raise ValueError(
            f"collection must be one of {list(SPACENET_COLLECTIONS)}, got {collection!r}"
        )
    if isinstance(tiles, bool) or not isinstance(tiles, int | np.integer) or tiles < 1:
        raise ValueError(f"tiles must be a positive integer, got {tiles!r}")
    if collection == "spacenet1":
        if aoi not in (None, 1):
            raise ValueError(f"SpaceNet-1 has only AOI 1 (Rio), got aoi={aoi}")
        return 1, _check_products(collection, products)
    aoi = 2 if aoi is None else aoi
    if aoi not in SPACENET2_AOIS:
        raise ValueError(f"SpaceNet-2 aoi must be one of {sorted(SPACENET2_AOIS)}, got {aoi}")
    return aoi, _check_products(collection, products)


def _check_products(collection: str, products: Sequence[str] | None) -> tuple[str, ...]:
    """The products to write: distinct names of the collection's (default: all of them)."""
    valid = SPACENET_PRODUCTS[collection]
    chosen = tuple(valid if products is None else products)
    unknown = [p for p in chosen if p not in valid]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"products must be distinct names of {list(valid)}, got {list(chosen)}")
    return chosen


@dataclass(frozen=True)
class _Tile:
    """One chip to write: its position in the sample, id, seed and whether it has no building."""

    index: int
    tile_id: int
    seed: int
    empty: bool


@dataclass(frozen=True)
class _Grid:
    """The chip grid of a sample: its upper-left corner, columns and render canvas."""

    west: float
    north: float
    columns: int
    canvas: tuple[int, int]  # (height, width), multiples of the multispectral factor


def _write_tile(
    root: Path, layout: _Layout, products: Sequence[str], tile: _Tile, grid: _Grid
) -> SpaceNetTileInfo:
    """Draw one chip and write its image products and GeoJSON label."""
    tile_rng = np.random.default_rng([tile.seed, tile.tile_id])
    height, width = layout.shape
    dx, dy = layout.pixel
    west = grid.west + (tile.index % grid.columns) * width * dx
    north = grid.north - (tile.index // grid.columns) * height * dy
    transform = Affine(dx, 0.0, west, 0.0, -dy, north)
    count = 0 if tile.empty else int(tile_rng.integers(8, 28))
    buildings_px, partial, roads = _place_buildings(tile_rng, count, height, width, layout.gsd_m)
    buildings = [_pixel_to_world(b, transform) for b in buildings_px]
    scene = _render(tile_rng, grid.canvas, transform, buildings, roads, layout.gsd_m)
    images = _products(tile_rng, layout.collection, scene, layout.shape)
    paths: dict[str, Path] = {}
    for product in products:
        path = (
            root / layout.image_dirs[product] / layout.image_names[product].format(n=tile.tile_id)
        )
        scale = _MS_FACTOR if product in ("8band", "MUL") else 1
        write_geotiff(path, images[product], 4326, transform @ Affine.scale(scale))
        paths[product] = path
    label = root / layout.label_dir / layout.label_name.format(n=tile.tile_id)
    atomic_write_bytes(label, _geojson(buildings, partial, z=layout.collection == "spacenet1"))
    return SpaceNetTileInfo(
        tile_id=tile.tile_id,
        images=paths,
        label=label,
        num_buildings=len(buildings),
        building_pixels=int((scene.roofs[:height, :width] > 0).sum()),
        bounds=(west, north - height * dy, west + width * dx, north),
    )


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
        A [`SpaceNetSampleSummary`][geossl.synthetic.spacenet.SpaceNetSampleSummary].

    Raises:
        ValueError: on an unknown collection, AOI or product, or ``tiles < 1``.
        FileExistsError: when the collection's folder is not empty and ``overwrite`` is False.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     summary = generate_spacenet_sample(folder, tiles=1)
        ...     tile = summary.tiles[0]
        ...     print(summary.dataset_dir.name, tile.images["3band"].name, tile.num_buildings)
        SN1_buildings 3band_AOI_1_RIO_img5904.tif 15
    """
    aoi, chosen = _check_arguments(collection, tiles, aoi, products)

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
    height, width = layout.shape
    canvas = (
        math.ceil(height / _MS_FACTOR) * _MS_FACTOR,
        math.ceil(width / _MS_FACTOR) * _MS_FACTOR,
    )
    grid = _Grid(*_ORIGINS[aoi], columns=math.ceil(math.sqrt(tiles)), canvas=canvas)
    infos = [
        _write_tile(root, layout, chosen, _Tile(index, tile_id, seed, index in empty), grid)
        for index, tile_id in enumerate(tile_ids)
    ]
    return SpaceNetSampleSummary(
        root=root,
        collection=collection,
        dataset_dir=root / layout.dataset_id,
        aoi=aoi,
        products=chosen,
        tiles=tuple(infos),
    )
