"""The seeded SpaceNet-1/2 sample: real layout, GeoTIFF products, GeoJSON, torchgeo reads it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.features import rasterize
from shapely.geometry import shape
from torchgeo.datasets import SpaceNet1, SpaceNet2

from geossl.synthetic.spacenet import (
    SpaceNetSampleSummary,
    generate_spacenet_sample,
)

RE_SN1 = re.compile(
    r"^SN1_buildings/train/(3band/3band_AOI_1_RIO_img(\d+)\.tif|8band/8band_AOI_1_RIO_img(\d+)\.tif"
    r"|geojson/Geo_AOI_1_RIO_img(\d+)\.geojson)$"
)
SN2_DIR = "SN2_buildings/train/AOI_2_Vegas_Train"
RE_SN2 = re.compile(
    rf"^{SN2_DIR}/((RGB-PanSharpen|MUL|MUL-PanSharpen|PAN)/\2_AOI_2_Vegas_img(\d+)\.tif"
    r"|geojson/buildings/buildings_AOI_2_Vegas_img(\d+)\.geojson)$"
)


@pytest.fixture(scope="module")
def sn1(tmp_path_factory: pytest.TempPathFactory) -> SpaceNetSampleSummary:
    return generate_spacenet_sample(tmp_path_factory.mktemp("sn1"), tiles=8, seed=0)


@pytest.fixture(scope="module")
def sn2(tmp_path_factory: pytest.TempPathFactory) -> SpaceNetSampleSummary:
    return generate_spacenet_sample(
        tmp_path_factory.mktemp("sn2"), collection="spacenet2", tiles=3, seed=0
    )


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_spacenet1_layout(sn1: SpaceNetSampleSummary) -> None:
    names = files(sn1.root)
    assert len(names) == 8 * 3
    assert all(RE_SN1.match(n) for n in names), names
    ids = {t.tile_id for t in sn1.tiles}
    assert len(ids) == 8
    for tile in sn1.tiles:
        assert tile.images["3band"].name == f"3band_AOI_1_RIO_img{tile.tile_id}.tif"
        assert tile.label.name == f"Geo_AOI_1_RIO_img{tile.tile_id}.geojson"
    # ids are unpadded and non-contiguous, and the summary lists them in torchgeo's numeric order
    assert [t.tile_id for t in sn1.tiles] == sorted(ids)
    assert sn1.dataset_dir == sn1.root / "SN1_buildings"


def test_spacenet1_products(sn1: SpaceNetSampleSummary) -> None:
    tile = sn1.tiles[0]
    with rasterio.open(tile.images["3band"]) as rgb, rasterio.open(tile.images["8band"]) as ms:
        assert (rgb.count, rgb.height, rgb.width, rgb.dtypes[0]) == (3, 406, 439, "uint8")
        assert (ms.count, ms.height, ms.width, ms.dtypes[0]) == (8, 102, 110, "uint16")
        assert rgb.crs.to_epsg() == 4326 == ms.crs.to_epsg()
        # ~0.5 m pixels at Rio, north up; the multispectral grid is 4x coarser from one origin
        assert rgb.transform.a == pytest.approx(4.489e-6, rel=1e-3)
        assert rgb.transform.e == pytest.approx(-4.486e-6, rel=1e-3)
        assert ms.transform.a == pytest.approx(4 * rgb.transform.a)
        assert (ms.transform.c, ms.transform.f) == (rgb.transform.c, rgb.transform.f)
        assert -44 < rgb.transform.c < -43
        assert -23.5 < rgb.transform.f < -22.5
        values = ms.read()
        assert values.min() >= 1
        assert values.max() <= 2047
        assert tuple(rgb.bounds) == pytest.approx(
            (tile.bounds[0], tile.bounds[1], tile.bounds[2], tile.bounds[3])
        )


def test_geojson_polygons_in_epsg4326(sn1: SpaceNetSampleSummary) -> None:
    tile = next(t for t in sn1.tiles if t.num_buildings)
    data = json.loads(tile.label.read_text())
    assert data["type"] == "FeatureCollection"
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:OGC:1.3:CRS84"
    assert len(data["features"]) == tile.num_buildings
    west, south, east, north = tile.bounds
    for feature in data["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert all(len(pt) == 3 and pt[2] == 0.0 for pt in ring)  # SpaceNet-1 writes 3-D
        polygon = shape(feature["geometry"])
        assert polygon.is_valid
        assert polygon.area > 0
        minx, miny, maxx, maxy = polygon.bounds
        assert west - 1e-9 <= minx
        assert maxx <= east + 1e-9
        assert south - 1e-9 <= miny
        assert maxy <= north + 1e-9
        assert feature["properties"]["partialBuilding"] in (0, 1)


def test_some_tiles_are_empty(sn1: SpaceNetSampleSummary) -> None:
    assert 1 <= len(sn1.empty_tiles) < sn1.num_tiles
    for tile in sn1.tiles:
        if tile.tile_id in sn1.empty_tiles:
            assert json.loads(tile.label.read_text())["features"] == []
            assert tile.building_pixels == 0
        else:
            assert tile.num_buildings >= 3
            assert tile.building_pixels > 0


def test_torchgeo_spacenet1_mask_is_the_drawn_buildings(sn1: SpaceNetSampleSummary) -> None:
    dataset = SpaceNet1(sn1.root)
    assert len(dataset) == sn1.num_tiles
    assert [Path(p) for p in dataset.images] == [t.images["3band"] for t in sn1.tiles]
    for index, tile in enumerate(sn1.tiles):
        sample = dataset[index]
        image, mask = sample["image"], sample["mask"]
        assert image.shape == (3, 406, 439)
        assert mask.shape == (406, 439)
        assert set(mask.unique().tolist()) <= {0, 1}
        assert int(mask.sum()) == tile.building_pixels  # every drawn roof pixel, nothing else
        # an independent rasterisation of the GeoJSON agrees pixel for pixel
        with rasterio.open(tile.images["3band"]) as src:
            transform = src.transform
        geoms = [shape(f["geometry"]) for f in json.loads(tile.label.read_text())["features"]]
        expected = (
            rasterize(geoms, out_shape=(406, 439), transform=transform, all_touched=False)
            if geoms
            else np.zeros((406, 439), dtype=np.uint8)
        )
        assert torch.equal(mask, torch.from_numpy(expected.astype(np.int64)))
        if tile.building_pixels:
            # the buildings are visible: roofs are brighter than their surroundings
            roof = image[:, mask == 1].mean()
            ground = image[:, mask == 0].mean()
            assert roof - ground > 30  # in 8-bit digital numbers


def test_torchgeo_spacenet1_8band(sn1: SpaceNetSampleSummary) -> None:
    sample = SpaceNet1(sn1.root, image="8band")[0]
    assert sample["image"].shape == (8, 102, 110)
    assert sample["mask"].shape == (102, 110)
    coarse = int(sample["mask"].sum())
    assert abs(coarse * 16 - sn1.tiles[0].building_pixels) < 0.3 * sn1.tiles[0].building_pixels


def test_spacenet2_layout_and_products(sn2: SpaceNetSampleSummary) -> None:
    names = files(sn2.root)
    assert len(names) == 3 * 5
    assert all(RE_SN2.match(n) for n in names), names
    shapes = {
        "RGB-PanSharpen": (3, 650),
        "MUL": (8, 163),
        "MUL-PanSharpen": (8, 650),
        "PAN": (1, 650),
    }
    tile = sn2.tiles[0]
    for product, (count, side) in shapes.items():
        with rasterio.open(tile.images[product]) as src:
            assert (src.count, src.height, src.width) == (count, side, side)
            assert src.dtypes[0] == "uint16"
            assert src.crs.to_epsg() == 4326
            assert src.transform.a == pytest.approx(2.7e-6 * (4 if product == "MUL" else 1))
            assert -116 < src.transform.c < -115
            assert 36 < src.transform.f < 36.5


@pytest.mark.parametrize(
    ("product", "bands", "side"),
    [("RGB-PanSharpen", 3, 650), ("PAN", 1, 650), ("MUL", 8, 163), ("MUL-PanSharpen", 8, 650)],
)
def test_torchgeo_spacenet2_reads_every_product(
    sn2: SpaceNetSampleSummary, product: str, bands: int, side: int
) -> None:
    dataset = SpaceNet2(sn2.root, aois=[2], image=product)
    assert len(dataset) == 3
    for index, tile in enumerate(sn2.tiles):
        sample = dataset[index]
        assert sample["image"].shape == (bands, side, side)
        if side == 650:
            assert int(sample["mask"].sum()) == tile.building_pixels


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_spacenet_sample(tmp_path / "a", tiles=2, seed=3, products=["3band"])
    b = generate_spacenet_sample(tmp_path / "b", tiles=2, seed=3, products=["3band"])
    c = generate_spacenet_sample(tmp_path / "c", tiles=2, seed=4, products=["3band"])
    assert files(a.root) == files(b.root)
    for name in files(a.root):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name
    assert [t.tile_id for t in a.tiles] != [t.tile_id for t in c.tiles]


def test_overwrite_replaces_only_the_sample(tmp_path: Path) -> None:
    generate_spacenet_sample(tmp_path, tiles=2, seed=0, products=["3band"])
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_spacenet_sample(tmp_path, tiles=2, seed=1, products=["3band"])
    summary = generate_spacenet_sample(
        tmp_path, tiles=3, seed=1, products=["3band"], overwrite=True
    )
    assert len(list((tmp_path / "SN1_buildings/train/3band").iterdir())) == 3
    assert summary.num_tiles == 3
    assert keep.read_text() == "mine"
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave nothing behind


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collection must be one of"):
        generate_spacenet_sample(tmp_path, collection="spacenet9")
    with pytest.raises(ValueError, match="tiles must be a positive integer"):
        generate_spacenet_sample(tmp_path, tiles=0)
    with pytest.raises(ValueError, match="products must be distinct names"):
        generate_spacenet_sample(tmp_path, products=["PAN"])
    with pytest.raises(ValueError, match="only AOI 1"):
        generate_spacenet_sample(tmp_path, aoi=2)
    with pytest.raises(ValueError, match="aoi must be one of"):
        generate_spacenet_sample(tmp_path, collection="spacenet2", aoi=7)
