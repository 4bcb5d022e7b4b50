"""Input discovery and checks: rasters, folders, fMoW folders, one-line errors naming the file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp

from geossl.embed.sources import (
    FMoWSource,
    RasterSource,
    find_sources,
    fmow_split_folders,
    raster_datetime,
)
from geossl.synthetic.fmow import generate_fmow_sample
from tests.embed.embed_helpers import real_scenes, write_raster

RGB = np.full((3, 20, 30), 100, np.uint8)


def _find(inputs: list[Path], **kwargs: object) -> list[RasterSource | FMoWSource]:
    options: dict[str, object] = {"in_chans": 3, "chip_size": 8, "stride": 8, **kwargs}
    return find_sources(inputs, **options)  # type: ignore[arg-type]


def test_folders_are_searched_recursively(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    write_raster(tmp_path / "a" / "one.tif", RGB)
    write_raster(tmp_path / "a" / "b" / "two.TIFF", RGB)
    write_raster(tmp_path / "a" / "b" / "one.tif", RGB)  # same stem: a unique name
    write_raster(tmp_path / ".hidden" / "x.tif", RGB)
    write_raster(tmp_path / "a" / ".tmp.tif", RGB)
    (tmp_path / "a" / "notes.txt").write_text("not a raster")
    sources = _find([tmp_path])
    assert [
        s.path.relative_to(tmp_path).as_posix() for s in sources if isinstance(s, RasterSource)
    ] == [
        "a/one.tif",
        "a/b/one.tif",
        "a/b/two.TIFF",
    ]
    assert [s.name for s in sources] == ["one", "one-2", "two"]
    raster = sources[0]
    assert isinstance(raster, RasterSource)
    assert raster.crs_label == "EPSG:32618"
    assert raster.bands == (1, 2, 3)
    assert raster.all_valid
    assert (raster.grid.n_rows, raster.grid.n_cols) == (3, 4)


def test_a_file_given_twice_is_embedded_once(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "x.tif", RGB)
    with pytest.warns(UserWarning, match="given twice"):
        assert len(_find([path, tmp_path])) == 1


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: no such file"):
        _find([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no \*\.tif"):
        _find([tmp_path / "empty"])


def test_non_raster_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "scan.tif"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"scan\.tif: not a raster that GDAL can read") as info:
        _find([bad])
    assert "\n" not in str(info.value)


def test_missing_crs_names_the_file(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nocrs.tif", RGB, crs=None)
    with pytest.raises(ValueError, match=r"nocrs\.tif: the raster has no CRS"):
        _find([path])


def test_gcp_only_raster_is_named_as_such(tmp_path: Path) -> None:
    # GDAL gives a GCP-only raster no dataset CRS: the GCP check must come before the CRS check.
    points = [(0, 0, 500_000, 4_400_000), (0, 30, 500_300, 4_400_000), (20, 0, 500_000, 4_399_800)]
    gcps = [GroundControlPoint(row, col, x, y) for row, col, x, y in points]
    path = tmp_path / "gcps.tif"
    profile = {"driver": "GTiff", "width": 30, "height": 20, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", gcps=gcps, crs=CRS.from_epsg(32618), **profile) as dst:
        dst.write(RGB)
    with pytest.raises(ValueError, match=r"gcps\.tif: the raster is georeferenced by GCPs only"):
        _find([path])


def test_band_count_must_match_the_weights(tmp_path: Path) -> None:
    four = write_raster(tmp_path / "four.tif", np.zeros((4, 8, 8), np.uint16))
    with pytest.raises(
        ValueError, match=r"four.tif: the raster has 4 band\(s\) but the weights take 3"
    ):
        _find([four])
    with pytest.raises(ValueError, match=r"--bands selects 2 band\(s\)"):
        _find([four], bands=[1, 2])
    with pytest.raises(ValueError, match=r"four.tif: band indexes \[5\] out of range"):
        _find([four], bands=[5, 3, 2])
    (chosen,) = _find([four], bands=[4, 3, 2])
    assert isinstance(chosen, RasterSource)
    assert chosen.bands == (4, 3, 2)


def test_alpha_band_is_left_out_and_masks(tmp_path: Path) -> None:
    data = np.concatenate([RGB, np.full((1, 20, 30), 255, np.uint8)])
    path = write_raster(tmp_path / "rgba.tif", data, photometric="RGB")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    (source,) = _find([path])
    assert isinstance(source, RasterSource)
    assert source.bands == (1, 2, 3)
    assert not source.all_valid  # the alpha band is read as the mask
    # 4-band weights: the message says why 4 bands are not enough.
    with pytest.raises(
        ValueError,
        match=r"rgba\.tif: the raster has 4 band\(s\) \(1 alpha, not counted\) but the "
        r"weights take 4;",
    ):
        _find([path], in_chans=4)


def test_datetime_from_tiff_tags(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "t.tif", RGB, tags={"TIFFTAG_DATETIME": "2020:05:18 14:03:07"})
    (source,) = _find([path])
    assert isinstance(source, RasterSource)
    assert source.datetime == datetime(2020, 5, 18, 14, 3, 7, tzinfo=UTC)
    other = write_raster(
        tmp_path / "u.tif", RGB, tags={"ACQUISITIONDATETIME": "2019-01-02T03:04:05Z"}
    )
    with rasterio.open(other) as dataset:
        assert raster_datetime(dataset) == datetime(2019, 1, 2, 3, 4, 5, tzinfo=UTC)
    with rasterio.open(write_raster(tmp_path / "v.tif", RGB)) as dataset:
        assert raster_datetime(dataset) is None


def test_real_scenes_three_crs() -> None:
    scenes = real_scenes()
    sources = _find([scenes], chip_size=224, stride=224)
    labels = {s.name: s.crs_label for s in sources if isinstance(s, RasterSource)}
    assert labels == {
        "aerial_0p6m_epsg3857": "EPSG:3857",
        "landsat7_rgb_byte": "EPSG:32618",
        "landsat8_l1tp_224078_20200518_rgb": "EPSG:32621",
    }
    by_name = {s.name: s for s in sources if isinstance(s, RasterSource)}
    assert by_name["landsat8_l1tp_224078_20200518_rgb"].dtype == "uint16"
    assert not by_name["landsat7_rgb_byte"].all_valid  # nodata 0


@pytest.fixture(scope="module")
def fmow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmow") / "fmow-rgb"
    generate_fmow_sample(root, locations=6, seed=0, image_size=(32, 48), images_per_location=(1, 2))
    return root


def test_fmow_layout_is_detected(fmow_root: Path, tmp_path: Path) -> None:
    splits = fmow_split_folders(fmow_root)
    assert splits is not None
    assert {p.name for p in splits} <= {"train", "val", "test", "seq"}
    assert fmow_split_folders(fmow_root / "train") == [fmow_root / "train"]
    assert fmow_split_folders(tmp_path) is None
    (source,) = _find([fmow_root])
    assert isinstance(source, FMoWSource)
    assert source.product == "rgb"
    assert source.name == "fmow-fmow-rgb"
    assert source.images
    assert all(p.name.endswith("_rgb.jpg") for p in source.images)
    with pytest.raises(FileNotFoundError, match=r"without \*_ms images"):
        _find([fmow_root], in_chans=8)
    with pytest.raises(ValueError, match=r"_rgb\.jpg: band indexes \[4\] out of range"):
        _find([fmow_root], bands=[4, 3, 2], fmow_product="rgb")
    with pytest.raises(ValueError, match=r"_rgb\.jpg: the image has 3 band\(s\) but the weights"):
        _find([fmow_root], in_chans=4, fmow_product="rgb")


def _vrt(path: Path, source: Path, width: int, height: int) -> Path:
    """A VRT mosaic of one GeoTIFF, written by hand (no GDAL command-line tools needed)."""
    bands = "".join(
        f"""<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>
        <SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>{b}</SourceBand>
        <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>
        <DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>
        </SimpleSource></VRTRasterBand>"""
        for b in (1, 2, 3)
    )
    with rasterio.open(source) as src:
        srs = src.crs.to_wkt()
        gt = ", ".join(str(v) for v in src.transform.to_gdal())
    path.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{srs}</SRS>'
        f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
    )
    return path


def test_vrt_inputs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    tif = write_raster(tmp_path / "data" / "base.tif", RGB)
    vrt = _vrt(tmp_path / "mosaic.vrt", tif, 30, 20)
    (source,) = _find([vrt])
    assert isinstance(source, RasterSource)
    assert source.crs_label == "EPSG:32618"
    assert (source.width, source.height) == (30, 20)
    names = [s.name for s in _find([tmp_path])]
    assert names == ["mosaic", "base"]  # a folder's files, then its subfolders
