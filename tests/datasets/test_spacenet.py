"""SpaceNetTiles, the torchgeo adapter, rasterisation, scaling and band statistics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine
from torchgeo.datasets import SpaceNet1

from geossl.datasets.errors import DatasetNotFoundError, InvalidSampleError
from geossl.datasets.spacenet import (
    IGNORE_INDEX,
    SpaceNetChips,
    SpaceNetTiles,
    band_statistics,
    default_scale,
    fit_to_size,
    read_building_labels,
)
from geossl.synthetic.spacenet import SpaceNetSampleSummary, generate_spacenet_sample
from tests.conftest import REAL_DATA

SN4 = REAL_DATA / "spacenet4_atlanta"


@pytest.fixture(scope="module")
def sn1(tmp_path_factory: pytest.TempPathFactory) -> SpaceNetSampleSummary:
    return generate_spacenet_sample(tmp_path_factory.mktemp("sn1"), tiles=4, seed=0)


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


def test_default_scale() -> None:
    assert default_scale("uint8") == pytest.approx(1 / 255)
    assert default_scale("uint16") == pytest.approx(1 / 2047)
    assert default_scale("float32") == 1.0
    with pytest.raises(ValueError, match="give scale explicitly"):
        default_scale("int32")


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


def test_error_label_not_geojson(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    bad = tmp_path / "labels.geojson"
    bad.write_text("id,geometry\n1,POLYGON((0 0,1 0,1 1,0 0))\n")
    with pytest.raises(InvalidSampleError, match=r"labels\.geojson: not GeoJSON \(not JSON"):
        SpaceNetTiles(pairs=[(sn1.tiles[0].images["3band"], bad)])
    bad.write_text(json.dumps({"type": "Topology", "objects": {}}))
    with pytest.raises(InvalidSampleError, match=r"labels\.geojson: not GeoJSON \(type 'Topology'"):
        read_building_labels(bad)
    unknown_crs = {"type": "name", "properties": {"name": "EPSG:999999"}}
    bad.write_text(json.dumps({"type": "FeatureCollection", "crs": unknown_crs, "features": []}))
    with pytest.raises(InvalidSampleError, match="unreadable GeoJSON crs member"):
        read_building_labels(bad)


def test_error_no_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no images matching"):
        SpaceNetTiles(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        SpaceNetTiles(tmp_path / "missing")
    with pytest.raises(ValueError, match="either root"):
        SpaceNetTiles()


def test_non_polygon_features_are_skipped_and_counted(tmp_path: Path) -> None:
    label = tmp_path / "mixed.geojson"
    polygon = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    features = [
        {"type": "Feature", "properties": {}, "geometry": polygon},
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}},
    ]
    label.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    labels = read_building_labels(label)
    assert len(labels.polygons) == 1
    assert labels.skipped == 2
    assert labels.crs.to_string() == "OGC:CRS84"  # RFC 7946 default


def test_fit_to_size_pads_with_ignore_and_crops_centre() -> None:
    sample = {"image": torch.ones(2, 5, 7), "mask": torch.ones(5, 7, dtype=torch.long)}
    padded = fit_to_size(sample, (8, 8))
    assert padded["image"].shape == (2, 8, 8)
    assert padded["image"][:, 5:].sum() == 0
    assert padded["image"][:, :, 7:].sum() == 0
    assert (padded["mask"][5:] == IGNORE_INDEX).all()
    assert (padded["mask"][:5, :7] == 1).all()
    sample["mask"][2, 3] = 0
    cropped = fit_to_size(sample, (3, 3))
    assert cropped["mask"].shape == (3, 3)
    assert cropped["mask"][1, 1] == 0


def test_chips_adapter_scales_and_pads(sn1: SpaceNetSampleSummary) -> None:
    base = SpaceNet1(sn1.root)
    chips = SpaceNetChips(base, pad_multiple=32)
    sample = chips[0]
    assert sample["image"].shape == (3, 416, 448)
    assert float(sample["image"].min()) >= 0
    assert float(sample["image"].max()) <= 1
    assert torch.allclose(sample["image"][:, :406, :439], base[0]["image"] / 255)
    assert (sample["mask"][406:] == IGNORE_INDEX).all()
    assert torch.equal(sample["mask"][:406, :439], base[0]["mask"])
    fixed = SpaceNetChips(base, size=(256, 256))[0]
    assert fixed["image"].shape == (3, 256, 256)
    assert fixed["mask"].shape == (256, 256)
    assert chips.resampled_masks == 0


def test_chips_adapter_fixes_torchgeo_mask_of_resampled_chip(
    sn1: SpaceNetSampleSummary, tmp_path: Path
) -> None:
    # A 3band chip stored at half resolution (203 x 220): torchgeo resamples it to 406 x 439 but
    # rasterises the polygons with the file's (2x coarser) transform on the 406 x 439 grid.
    root = tmp_path / "sn1"
    shutil.copytree(sn1.root, root)
    tile = next(t for t in sn1.tiles if t.building_pixels > 2000)
    path = root / tile.images["3band"].relative_to(sn1.root)
    with rasterio.open(path) as src:
        data, profile = src.read(), src.profile
    half = data[:, ::2, ::2][:, :203, :220]
    profile.update(height=203, width=220, transform=profile["transform"] @ Affine.scale(2))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(half)
    base = SpaceNet1(root)
    index = [Path(p).name for p in base.images].index(path.name)
    truth = SpaceNet1(sn1.root)[index]["mask"].bool()
    broken = base[index]["mask"].bool()
    chips = SpaceNetChips(base)
    fixed = chips[index]["mask"].bool()
    assert chips.resampled_masks == 1

    def iou(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a & b).sum()) / float((a | b).sum())

    assert iou(broken, truth) < 0.5  # torchgeo's mask is misplaced
    assert iou(fixed, truth) > 0.95  # ours follows the resampled image


def test_band_statistics(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    paths = [t.images["3band"] for t in sn1.tiles]
    stats = band_statistics(paths)
    pixels = np.concatenate([rasterio.open(p).read().reshape(3, -1) / 255.0 for p in paths], axis=1)
    assert stats.num_pixels == (pixels.shape[1],) * 3
    assert stats.num_samples == 4
    assert stats.mean == pytest.approx(tuple(pixels.mean(axis=1)), rel=1e-9)
    assert stats.std == pytest.approx(tuple(pixels.std(axis=1)), rel=1e-7)
    tiles = SpaceNetTiles(sn1.dataset_dir / "train", image_glob="3band/*.tif")
    assert band_statistics(tiles).mean == pytest.approx(stats.mean)
    chips = SpaceNetChips(SpaceNet1(sn1.root))
    assert band_statistics(chips).std == pytest.approx(stats.std, rel=1e-6)
    # nodata pixels are left out
    with rasterio.open(paths[0]) as src:
        data, profile = src.read(), src.profile
    data[:, :10, :] = 0
    profile["nodata"] = 0
    masked = tmp_path / "nodata.tif"
    with rasterio.open(masked, "w", **profile) as dst:
        dst.write(data)
    assert band_statistics([masked]).num_pixels == (406 * 439 - 10 * 439,) * 3
    with pytest.raises(ValueError, match="no image in the source"):
        band_statistics([])


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
