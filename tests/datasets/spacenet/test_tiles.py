"""SpaceNetTiles: folders of tiles and GeoJSON labels, against torchgeo's masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from torchgeo.datasets import SpaceNet1

from geossl.datasets.errors import DatasetNotFoundError, InvalidSampleError
from geossl.datasets.spacenet import (
    SpaceNetTiles,
    band_statistics,
)
from geossl.synthetic.spacenet import SpaceNetSampleSummary, generate_spacenet_sample
from tests.conftest import REAL_DATA

SN4 = REAL_DATA / "spacenet4_atlanta"


def sn4_layout(sn1: SpaceNetSampleSummary, folder: Path, label_crs: str = "EPSG:4326") -> Path:
    """The SN1 chips renamed to SpaceNet-4's ``..._{easting}_{northing}`` names; two nadir images
    per tile share one label (reprojected to ``label_crs``)."""
    for k, tile in enumerate(sn1.tiles):
        tile_id = f"7327{k:02d}_37309{k:02d}"
        for nadir in (8, 53):
            target = folder / "PS-RGB" / f"Atlanta_nadir{nadir}_catid_1030010003_{tile_id}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tile.images["3band"], target)
        label = folder / "labels" / f"spacenet-buildings_{tile_id}.geojson"
        label.parent.mkdir(parents=True, exist_ok=True)
        frame = gpd.read_file(tile.label)
        if frame.empty:
            shutil.copy(tile.label, label)
        else:
            frame.to_crs(label_crs).to_file(label, driver="GeoJSON")
    return folder


def test_tiles_mask_equals_torchgeo(sn1: SpaceNetSampleSummary) -> None:
    tiles = SpaceNetTiles(
        sn1.dataset_dir / "train", image_glob="3band/*.tif", label_root=sn1.dataset_dir / "train"
    )
    reference = SpaceNet1(sn1.root)
    assert len(tiles) == len(reference) == 4
    by_name = {Path(p).name: i for i, p in enumerate(reference.images)}
    for index in range(len(tiles)):
        sample = tiles[index]
        expected = reference[by_name[tiles.image_paths[index].name]]
        assert torch.equal(sample["mask"], expected["mask"])
        assert sample["image"].dtype == torch.float32
        assert torch.allclose(sample["image"], expected["image"] / 255.0)
        assert sample["crs"] == "EPSG:4326"
        assert sample["tile_id"] == tiles.image_paths[index].stem.split("_")[-1]
        assert sample["bounds"].shape == (4,)
    assert tiles.label_paths[0].name.startswith("Geo_AOI_1_RIO_img")


def test_spacenet4_naming_and_reprojected_labels(
    sn1: SpaceNetSampleSummary, tmp_path: Path
) -> None:
    # labels in UTM zone 23S (Rio): reprojected back to the images' EPSG:4326 before rasterising
    root = sn4_layout(sn1, tmp_path, label_crs="EPSG:32723")
    tiles = SpaceNetTiles(root)
    assert len(tiles) == 8  # two nadir angles per tile
    assert len(set(tiles.label_paths)) == 4  # ... sharing one label file
    assert tiles.tile_ids[0] == "732700_3730900"
    reference = SpaceNet1(sn1.root)
    for k in range(4):
        tile_id = f"7327{k:02d}_37309{k:02d}"
        first, second = [i for i, t in enumerate(tiles.tile_ids) if t == tile_id]
        mask = tiles[first]["mask"]
        assert torch.equal(tiles[second]["mask"], mask)
        expected = reference[k]["mask"]
        union = int((mask | expected).sum())
        if union:  # reprojection round trip: edges move by far less than a pixel
            assert int((mask & expected).sum()) / union > 0.98


def test_uint16_scaling_and_bands(tmp_path: Path) -> None:
    summary = generate_spacenet_sample(
        tmp_path, collection="spacenet2", tiles=1, products=["MUL-PanSharpen"]
    )
    folder = summary.dataset_dir / "train"
    tiles = SpaceNetTiles(folder, image_glob="**/MUL-PanSharpen/*.tif", bands=[5, 3, 2])
    assert tiles.scale == pytest.approx(1 / 2047)
    with rasterio.open(summary.tiles[0].images["MUL-PanSharpen"]) as src:
        raw = src.read([5, 3, 2]).astype(np.float32)
    image = tiles[0]["image"]
    assert image.shape == (3, 650, 650)
    assert torch.allclose(image, torch.from_numpy(raw / 2047))
    halved = SpaceNetTiles(folder, image_glob="**/MUL-PanSharpen/*.tif", bands=[7], scale=1 / 1000)
    assert torch.allclose(
        halved[0]["image"],
        torch.from_numpy(
            np.clip(
                rasterio.open(summary.tiles[0].images["MUL-PanSharpen"]).read([7]) / 1000, 0, 1
            ).astype(np.float32)
        ),
    )


def test_empty_label_file_counts_as_no_buildings(
    sn1: SpaceNetSampleSummary, tmp_path: Path
) -> None:
    root = sn4_layout(sn1, tmp_path)
    label = sorted((root / "labels").iterdir())[1]
    label.write_bytes(b"")  # SpaceNet-4 has 0-byte label files for tiles without buildings
    tiles = SpaceNetTiles(root)
    assert tiles.empty_label_files == 1
    index = tiles.label_paths.index(label)
    assert int(tiles[index]["mask"].sum()) == 0


def test_error_image_without_crs(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    root = sn4_layout(sn1, tmp_path)
    image = sorted((root / "PS-RGB").iterdir())[0]
    with rasterio.open(image) as src:
        data, profile = src.read(), src.profile
    profile.pop("crs")
    image.unlink()
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(InvalidSampleError, match=rf"{image.name}: image without CRS"):
        SpaceNetTiles(root)


def test_error_missing_label(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    root = sn4_layout(sn1, tmp_path)
    label = sorted((root / "labels").iterdir())[0]
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"Atlanta_nadir\d+_.*\.tif: missing label file"):
        SpaceNetTiles(root)
    with pytest.raises(FileNotFoundError, match="label file not found"):
        SpaceNetTiles(pairs=[(sn1.tiles[0].images["3band"], label)])


def test_error_no_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no images matching"):
        SpaceNetTiles(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        SpaceNetTiles(tmp_path / "missing")
    with pytest.raises(ValueError, match="either root"):
        SpaceNetTiles()


def test_real_spacenet4_tile_mask_covers_the_polygons() -> None:
    if not SN4.is_dir():
        pytest.skip(f"real SpaceNet-4 tile not available ({SN4} is absent)")
    image, label = SN4 / "sample_geotiff.tif", SN4 / "geotiff_labels.geojson"
    tiles = SpaceNetTiles(pairs=[(image, label)])
    sample = tiles[0]
    assert sample["image"].shape == (1, 900, 900)
    assert tiles.scale == pytest.approx(1 / 2047)  # uint16 pan band
    assert sample["crs"] == "EPSG:32616"
    polygons = gpd.read_file(label)
    assert len(polygons) == 43
    expected_pixels = polygons.to_crs("EPSG:32616").area.sum() / 0.25  # 0.5 m pixels
    assert int(sample["mask"].sum()) == pytest.approx(expected_pixels, rel=0.01)
    stats = band_statistics(tiles)
    assert stats.num_pixels == (900 * 900,)
    assert 0.1 < stats.mean[0] < 0.4
    assert 0.05 < stats.std[0] < 0.3
