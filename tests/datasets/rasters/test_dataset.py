"""TimeSeriesRasters (dates, reads, errors) and RasterTemporalPairs (the pair contract)."""

import pickle
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from pyproj import CRS
from rasterio.windows import Window, from_bounds

from geossl.datasets import BadDatasetError, DatasetNotFoundError
from geossl.datasets.rasters import (
    DEFAULT_FILENAME_REGEX,
    RasterTemporalPairs,
    TimeSeriesRasters,
)
from geossl.synthetic.rasters import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)
from tests.raster_helpers import (
    S2_BANDS,
    real_bigearthnet,
    real_stack,
    scene,
    write_band_product,
    write_tif,
)

ORIGIN = (485900.0, 5209248.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    """5 dates, one file each, 96 x 128 px, 4 bands, nodata wedges and one cloudy date."""
    return generate_raster_timeseries_sample(tmp_path_factory.mktemp("rasters") / "stack")


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    """3 dates of two overlapping tiles each."""
    root = tmp_path_factory.mktemp("rasters") / "mosaic"
    return generate_raster_timeseries_sample(root, num_dates=3, tiles=2, seed=1)


def _unix(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def _window_read(path: Path, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Integer-window read of a file (the reference for pixel alignment)."""
    with rasterio.open(path) as src:
        window = from_bounds(*bounds, transform=src.transform)
        size = round(window.width), round(window.height)
        pixels: np.ndarray = src.read(
            window=Window(round(window.col_off), round(window.row_off), *size)
        )
        return pixels


# -------------------------------------------------------------------------------------------------
# dates
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m_4709963_se_14_1_20090818.tif", ("date", "20090818")),
        ("m_3807537_ne_18_060_20181104.tif", ("date", "20181104")),
        ("S2A_MSIL2A_20190822T102031_N0213_R065_T32TMT_20190822T132122.tif", ("date", "20190822")),
        ("LC08_L2SP_044034_20200917_20200925_02_T1_SR_B4.TIF", ("date", "20200917")),
        ("1985.tif", ("year", "1985")),
        ("s2_2019_b4.tif", ("year", "2019")),
        ("tile_0001.tif", None),
        ("m_4709963_se_14_1.tif", None),
    ],
)
def test_default_regex_finds_common_dates(name: str, expected: tuple[str, str] | None) -> None:
    match = re.compile(DEFAULT_FILENAME_REGEX, re.VERBOSE).search(name)
    if expected is None:
        assert match is None
    else:
        assert match is not None
        group, value = expected
        assert match.group(group) == value


def test_index_has_one_date_per_acquisition(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    assert len(ds) == len(stack.files) == 5
    assert [d.left.strftime("%Y-%m-%d") for d in ds.dates] == list(stack.dates)
    assert ds.times.tolist() == [_unix(d) for d in stack.dates]
    assert ds.crs.to_epsg() == 32614
    assert ds.res == (2.0, 2.0)
    assert ds.origin == ORIGIN
    assert ds.file_dtype == "uint8"
    assert ds.num_bands == 4
    assert ds.dtype == torch.uint8
    assert ds.date_of(ds.date_slice(3)) == 3
    assert ds.date_of(slice(ds.dates[0].left, ds.dates[1].right)) is None


def test_mosaic_dates_group_tiles(mosaic: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(mosaic.root)
    assert len(ds) == 6
    assert len(ds.dates) == 3
    assert np.bincount(ds.file_dates).tolist() == [2, 2, 2]
    assert [g.area for g in ds.footprints()] == pytest.approx([128 * 2 * 96 * 2] * 3)


def test_bare_years_are_whole_year_intervals(tmp_path: Path) -> None:
    sample = generate_raster_timeseries_sample(tmp_path / "years", num_dates=3, name_style="year")
    ds = TimeSeriesRasters(sample.root)
    for interval in ds.dates:
        assert (interval.left.month, interval.left.day) == (1, 1)
        assert (interval.right.month, interval.right.day) == (12, 31)
    assert [f"{d.left:%Y}.tif" for d in ds.dates] == [f.name for f in sample.files]


def test_date_from_tags_when_the_name_has_none(tmp_path: Path) -> None:
    write_tif(tmp_path / "a.tif", scene(0), tags={"TIFFTAG_DATETIME": "2020:05:17 10:42:00"})
    write_tif(tmp_path / "b.tif", scene(1), tags={"ACQUISITIONDATE": "2019-07-01T09:00:00Z"})
    ds = TimeSeriesRasters(tmp_path)
    assert [f"{d.left:%Y-%m-%d}" for d in ds.dates] == ["2019-07-01", "2020-05-17"]
    assert ds.times[0] == _unix("2019-07-01")


def test_custom_regex_and_format(tmp_path: Path) -> None:
    write_tif(tmp_path / "scene_2021-03-04.tif", scene(0))
    write_tif(tmp_path / "scene_2021-03-09.tif", scene(1))
    ds = TimeSeriesRasters(
        tmp_path, filename_regex=r"_(?P<date>\d{4}-\d{2}-\d{2})\.", date_format="%Y-%m-%d"
    )
    assert [f"{d.left:%Y-%m-%d}" for d in ds.dates] == ["2021-03-04", "2021-03-09"]


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_file_without_crs_is_named(tmp_path: Path) -> None:
    write_tif(tmp_path / "m_1_20200101.tif", scene(0))
    bad = write_tif(tmp_path / "m_1_20200202.tif", scene(1), crs=None)
    with pytest.raises(BadDatasetError, match="no CRS") as error:
        TimeSeriesRasters(tmp_path)
    assert str(bad) in _one_line(error)


def test_file_without_date_is_named(tmp_path: Path) -> None:
    bad = write_tif(tmp_path / "scene.tif", scene(0))
    with pytest.raises(BadDatasetError, match="no acquisition date") as error:
        TimeSeriesRasters(tmp_path)
    assert str(bad) in _one_line(error)


def test_band_not_in_the_files(tmp_path: Path) -> None:
    write_tif(tmp_path / "x_20200101.tif", scene(0, (3, 32, 32)))
    with pytest.raises(BadDatasetError, match=r"has 3 bands, bands=\[1, 5\] asks for band 5") as e:
        TimeSeriesRasters(tmp_path, bands=[1, 5])
    assert "x_20200101.tif" in _one_line(e)
    with pytest.raises(ValueError, match="distinct 1-based"):
        TimeSeriesRasters(tmp_path, bands=[0])


def test_band_count_mismatch_needs_bands(tmp_path: Path) -> None:
    write_tif(tmp_path / "x_20200101.tif", scene(0, (4, 32, 32)))
    write_tif(tmp_path / "x_20200202.tif", scene(1, (3, 32, 32)))
    with pytest.raises(BadDatasetError, match="pass bands"):
        TimeSeriesRasters(tmp_path)
    assert TimeSeriesRasters(tmp_path, bands=[3, 2, 1]).num_bands == 3


def test_no_files_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="path does not exist"):
        TimeSeriesRasters(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no GeoTIFF"):
        TimeSeriesRasters(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x_20200101.tif").write_bytes(b"not a tiff")
    with pytest.raises(BadDatasetError, match="not a readable raster") as error:
        TimeSeriesRasters(tmp_path / "bad")
    _one_line(error)


def test_regex_needs_a_date_group(tmp_path: Path) -> None:
    write_tif(tmp_path / "x_20200101.tif", scene(0))
    with pytest.raises(ValueError, match="named group 'date'"):
        TimeSeriesRasters(tmp_path, filename_regex=r"\d{8}")
    with pytest.raises(BadDatasetError, match="does not match date_format"):
        TimeSeriesRasters(tmp_path, filename_regex=r"(?P<date>\d{8})", date_format="%Y-%m-%d")


# -------------------------------------------------------------------------------------------------
# reads
# -------------------------------------------------------------------------------------------------


def test_query_reads_the_exact_pixels_of_one_date(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    bounds = (ORIGIN[0] + 20, ORIGIN[1] - 90, ORIGIN[0] + 84, ORIGIN[1] - 26)  # 32 x 32 px
    for date, path in enumerate(stack.files):
        sample = ds[ds.query(bounds, date)]
        assert sample["image"].dtype == torch.uint8
        assert sample["image"].shape == (4, 32, 32)
        assert np.array_equal(sample["image"].numpy(), _window_read(path, bounds))
        # The fast one-file read gives what torchgeo's merge gives.
        merged = ds._merge_files([str(path)], ds.query(bounds, date))
        assert torch.equal(sample["image"], merged)


def test_bands_are_selected_in_order(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root, bands=[4, 1])
    bounds = (ORIGIN[0], ORIGIN[1] - 32, ORIGIN[0] + 32, ORIGIN[1])
    image = ds[ds.query(bounds, 0)]["image"].numpy()
    reference = _window_read(stack.files[0], bounds)
    assert np.array_equal(image, reference[[3, 0]])


def test_mosaic_query_merges_the_tiles(mosaic: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(mosaic.root)
    # Across the seam of the two tiles (x = 128 m .. 144 m is in both).
    bounds = (ORIGIN[0] + 100, ORIGIN[1] - 64, ORIGIN[0] + 164, ORIGIN[1])
    image = ds[ds.query(bounds, 1)]["image"].numpy()
    assert image.shape == (4, 32, 32)
    west = [
        f for f in mosaic.files if "_nw_" in f.name and mosaic.dates[1].replace("-", "") in f.name
    ]
    east = [
        f for f in mosaic.files if "_ne_" in f.name and mosaic.dates[1].replace("-", "") in f.name
    ]
    left = _window_read(west[0], (bounds[0], bounds[1], ORIGIN[0] + 144, bounds[3]))
    right = _window_read(east[0], (ORIGIN[0] + 144, bounds[1], bounds[2], bounds[3]))
    assert np.array_equal(image, np.concatenate([left, right], axis=2))


def test_other_crs_is_warped(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root, crs="EPSG:3857")
    assert ds.crs.to_epsg() == 3857
    left, _, _, top = ds.extent
    xres, yres = ds.res
    bounds = (left + 20 * xres, top - 52 * yres, left + 52 * xres, top - 20 * yres)
    image = ds[ds.query(bounds, 0)]["image"]
    assert image.shape == (4, 32, 32)
    assert (image > 0).float().mean() > 0.9


def test_crs_setter_drops_the_caches(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    bounds = (ORIGIN[0], ORIGIN[1] - 32, ORIGIN[0] + 32, ORIGIN[1])
    ds[ds.query(bounds, 0)]  # opens and caches the file in EPSG:32614
    ds.crs = CRS.from_epsg(3857)
    assert ds.crs.to_epsg() == 3857
    assert ds.origin != ORIGIN
    left, _, _, top = ds.extent
    xres, yres = ds.res
    image = ds[ds.query((left, top - 16 * yres, left + 16 * xres, top), 0)]["image"]
    assert (image > 0).float().mean() > 0.5  # read through a fresh, warped handle


def test_dataset_pickles_after_reading(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    bounds = (ORIGIN[0], ORIGIN[1] - 32, ORIGIN[0] + 32, ORIGIN[1])
    before = ds[ds.query(bounds, 0)]["image"]
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[clone.query(bounds, 0)]["image"], before)


# -------------------------------------------------------------------------------------------------
# pairs
# -------------------------------------------------------------------------------------------------


def test_pair_sample_follows_the_contract(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    centroids = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # north pole, (0, 0)
    pairs = RasterTemporalPairs(ds, centroids)
    bounds = (ORIGIN[0] + 64, ORIGIN[1] - 128, ORIGIN[0] + 128, ORIGIN[1] - 64)
    sample = pairs[(ds.query(bounds, 3), ds.query(bounds, 0))]
    assert set(sample) == {
        "image", "time", "index", "location", "lat", "lon", "geo_label", "label", "bounds"
    }  # fmt: skip
    assert sample["image"].shape == (2, 4, 32, 32)
    assert sample["image"].dtype == torch.uint8
    assert np.array_equal(sample["image"][0].numpy(), _window_read(stack.files[3], bounds))
    assert np.array_equal(sample["image"][1].numpy(), _window_read(stack.files[0], bounds))
    assert sample["time"].tolist() == [_unix(stack.dates[3]), _unix(stack.dates[0])]
    assert sample["index"].tolist() == [3, 0]
    for key in ("time", "index", "location", "geo_label", "label"):
        assert sample[key].dtype == torch.int64
    assert sample["label"].item() == -1
    assert sample["geo_label"].item() == 0  # North Dakota is nearer the pole than (0, 0)
    assert sample["lat"].dtype == sample["lon"].dtype == torch.float32
    assert sample["lat"].item() == pytest.approx(47.03, abs=0.02)
    assert sample["lon"].item() == pytest.approx(-99.18, abs=0.02)
    assert sample["bounds"].dtype == torch.float64
    assert sample["bounds"].tolist() == list(bounds)
    # The location id names the pixel of the top-left corner: 32 px right, 32 px down.
    assert sample["location"].item() == ds.location_of(bounds[0], bounds[3])
    assert ds.location_of(ORIGIN[0] + 2, ORIGIN[1]) - ds.location_of(*ORIGIN) == 1
    assert RasterTemporalPairs(ds)[(ds.query(bounds, 1), ds.query(bounds, 2))]["geo_label"] == -1


def test_pair_errors(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    pairs = RasterTemporalPairs(ds)
    a = (ORIGIN[0], ORIGIN[1] - 32, ORIGIN[0] + 32, ORIGIN[1])
    b = (ORIGIN[0] + 2, ORIGIN[1] - 32, ORIGIN[0] + 34, ORIGIN[1])
    with pytest.raises(ValueError, match="share a footprint"):
        pairs[(ds.query(a, 0), ds.query(b, 1))]
    x, y, _ = ds.query(a, 0)
    with pytest.raises(ValueError, match=r"one of rasters\.dates"):
        pairs[((x, y, slice(ds.dates[0].left, ds.dates[1].right)), ds.query(a, 1))]
    with pytest.raises(ValueError, match="scale"):
        RasterTemporalPairs(ds, scale=0.0)
    with pytest.raises(ValueError, match="centroids"):
        RasterTemporalPairs(ds, np.zeros((2, 2)))


def test_non_8_bit_files_are_scaled_to_unit_range(tmp_path: Path) -> None:
    pixels = np.full((2, 16, 16), 5000, dtype=np.uint16)
    pixels[:, 0, 0] = 20000
    write_tif(tmp_path / "s2_20200101.tif", pixels)
    write_tif(tmp_path / "s2_20200301.tif", pixels)
    ds = TimeSeriesRasters(tmp_path)
    assert ds.dtype == torch.float32
    bounds = (ORIGIN[0], ORIGIN[1] - 32, ORIGIN[0] + 32, ORIGIN[1])
    query = (ds.query(bounds, 0), ds.query(bounds, 1))
    image = RasterTemporalPairs(ds, scale=1e-4)[query]["image"]
    assert image.dtype == torch.float32
    assert image[0, 0, 1, 1].item() == pytest.approx(0.5)
    assert image[0, 0, 0, 0].item() == 1.0  # clamped
    default = RasterTemporalPairs(ds)[query]["image"]
    assert default[0, 0, 1, 1].item() == pytest.approx(5000 / 65535)


# -------------------------------------------------------------------------------------------------
# real data
# -------------------------------------------------------------------------------------------------


def test_real_landsat_years_on_one_grid() -> None:
    root = real_stack("landsat_pucallpa")
    ds = TimeSeriesRasters(root)
    assert [f"{d.left:%Y}" for d in ds.dates] == [str(y) for y in range(1985, 2021, 5)]
    assert ds.crs.to_epsg() == 4326
    assert ds.num_bands == 4
    xres, yres = ds.res
    ox, oy = ds.origin
    bounds = (ox + 100 * xres, oy - 164 * yres, ox + 164 * xres, oy - 100 * yres)
    sample = RasterTemporalPairs(ds)[(ds.query(bounds, 0), ds.query(bounds, 7))]
    assert np.array_equal(sample["image"][0].numpy(), _window_read(root / "1985.tif", bounds))
    assert np.array_equal(sample["image"][1].numpy(), _window_read(root / "2020.tif", bounds))
    assert sample["lat"].item() == pytest.approx(-8.4, abs=0.2)  # Pucallpa, Peru
    assert sample["lon"].item() == pytest.approx(-74.5, abs=0.3)
    # Every window on the file's grid reads the file's pixels (torchgeo 0.8.1 warps these files
    # and shifts some windows by a pixel).
    for row in range(0, 300, 37):
        for col in range(0, 600, 53):
            window = (
                ox + col * xres,
                oy - (row + 64) * yres,
                ox + (col + 64) * xres,
                oy - row * yres,
            )
            image = ds[ds.query(window, 0)]["image"].numpy()
            assert np.array_equal(image, _window_read(root / "1985.tif", window)), (row, col)


def test_real_naip_origins_within_a_pixel_read_aligned() -> None:
    root = real_stack("naip_north_dakota")
    ds = TimeSeriesRasters(root)
    assert len(ds.dates) == 10
    assert ds.crs.to_epsg() == 26914
    assert ds.res == (5.0, 5.0)
    ox, oy = ds.origin
    bounds = (ox + 300 * 5, oy - 364 * 5, ox + 364 * 5, oy - 300 * 5)
    paths = ds._file_table()[0]
    for date in range(len(ds.dates)):
        image = ds[ds.query(bounds, date)]["image"].numpy()
        path = Path(paths[int(np.flatnonzero(ds.file_dates == date)[0])])
        # Origins differ by < 0.5 px: the nearest pixels are the integer window's.
        assert np.array_equal(image, _window_read(path, bounds)), path.name
        # ... which is also what torchgeo's merge (GDAL's fractional-window read) gives.
        merged = ds._merge_files([str(path)], ds.query(bounds, date))
        assert np.array_equal(image, merged.numpy()), path.name


# -------------------------------------------------------------------------------------------------
# one file per band (band_names)
# -------------------------------------------------------------------------------------------------

PRODUCT = "S2A_MSIL2A_20170613T101031_87_48"
LATER = "S2B_MSIL2A_20170924T093020_87_48"
THREE = {"B01": 60, "B02": 10, "B05": 20}


def test_band_files_form_one_raster_on_the_finest_grid(tmp_path: Path) -> None:
    files = write_band_product(tmp_path / PRODUCT, PRODUCT, {**THREE, "B03": 10})
    later = write_band_product(tmp_path / LATER, LATER, THREE, seed=1)
    rasters = TimeSeriesRasters(tmp_path, band_names=["B05", "B02", "B01"])
    assert rasters.num_bands == 3
    assert rasters.res == (10.0, 10.0)  # the finest band's
    assert rasters.reference_band == "B02"
    assert len(rasters) == 2  # two products (the B03 file is another band: ignored)
    assert [str(d.left.date()) for d in rasters.dates] == ["2017-06-13", "2017-09-24"]
    image = rasters[rasters.query(rasters.extent, 0)]["image"]
    assert image.shape == (3, 12, 12)
    with rasterio.open(files["B02"]) as src:  # the 10 m band is read as it is
        assert np.array_equal(image[1].numpy(), src.read(1).astype(np.float32))
    # A 20 m band that is a plane: bilinear upsampling to 10 m is exact inside, so each 2 x 2
    # block of 10 m pixels averages back to its 20 m pixel exactly, unless the grid is shifted.
    rows, cols = np.mgrid[0:6, 0:6]
    plane = (1000 + 300 * cols + 70 * rows).astype(np.uint16)[None]  # [1, 6, 6]
    write_tif(later["B05"], plane, crs="EPSG:32633", origin=(404400.0, 5342400.0), res=20.0)
    rasters = TimeSeriesRasters(tmp_path, band_names=["B05", "B02", "B01"])
    upsampled = rasters[rasters.query(rasters.extent, 1)]["image"][0]  # [12, 12] at 10 m
    blocks = upsampled.reshape(6, 2, 6, 2).mean(dim=(1, 3))
    expected = torch.from_numpy(plane[0].astype(np.float32))
    # (atol: GDAL rounds the resampled values to the file's integer dtype, uint16.)
    assert torch.allclose(blocks[1:-1, 1:-1], expected[1:-1, 1:-1], atol=0.5 + 1e-3)
    assert not torch.allclose(blocks[1:-1, 1:-1], expected.roll(1, dims=1)[1:-1, 1:-1], atol=10)
    # torchgeo's own path (a time slice that is not one date) reads every band too.
    x, y, _ = rasters.query(rasters.extent, 0)
    assert rasters[(x, y, slice(None, None))]["image"].shape == (3, 12, 12)


def test_band_file_errors_are_one_line(tmp_path: Path) -> None:
    files = write_band_product(tmp_path / PRODUCT, PRODUCT, THREE)
    with pytest.raises(ValueError, match="not both"):
        TimeSeriesRasters(tmp_path, bands=[1], band_names=["B02"])
    with pytest.raises(ValueError, match="distinct"):
        TimeSeriesRasters(tmp_path, band_names=["B02", "B02"])
    with pytest.raises(ValueError, match=r"named group 'band' with band_names"):
        TimeSeriesRasters(tmp_path, band_names=["B02"], filename_regex=DEFAULT_FILENAME_REGEX)
    with pytest.raises(DatasetNotFoundError, match=r"no GeoTIFF of band_names \['B04'\]"):
        TimeSeriesRasters(tmp_path, band_names=["B04"])
    files["B05"].unlink()
    with pytest.raises(BadDatasetError) as error:
        TimeSeriesRasters(tmp_path, band_names=list(THREE))
    line = _one_line(error)
    assert f"band B05 missing: no {PRODUCT}_B05.tif in {tmp_path / PRODUCT}" in line
    write_tif(tmp_path / PRODUCT / f"{PRODUCT}_B05.tif", scene(0, (2, 6, 6)), crs="EPSG:32633")
    with pytest.raises(BadDatasetError, match=r"_B05\.tif: has 2 bands; .*one band"):
        TimeSeriesRasters(tmp_path, band_names=list(THREE))
    write_tif(tmp_path / "S2A_MSIL2A_20170613T101031.tif", scene(0, (1, 6, 6)), crs="EPSG:32633")
    with pytest.raises(BadDatasetError, match=r"T101031\.tif: no band in the file name"):
        TimeSeriesRasters(tmp_path, band_names=list(THREE))


def test_real_bigearthnet_patch_all_bands_at_10_m() -> None:
    folder = next(p for p in sorted(real_bigearthnet().iterdir()) if p.is_dir())
    rasters = TimeSeriesRasters(folder, band_names=list(S2_BANDS))
    assert rasters.res == (10.0, 10.0)
    assert rasters.file_dtype == "uint16"
    assert rasters.reference_band == "B02"
    date = folder.name.split("_")[2][:8]  # S2A_MSIL2A_20170613T101031_87_48
    assert rasters.dates[0].left.strftime("%Y%m%d") == date
    image = rasters[rasters.query(rasters.extent, 0)]["image"]
    assert image.shape == (12, 120, 120)
    for band, factor in [("B05", 2), ("B8A", 2), ("B01", 6), ("B09", 6)]:
        native_res = S2_BANDS[band]
        coarse = TimeSeriesRasters(folder, band_names=[band], res=native_res)
        native = coarse[coarse.query(coarse.extent, 0)]["image"][0]  # the file's own pixels
        path = next(folder.glob(f"*_{band}.tif"))
        with rasterio.open(path) as src:
            assert np.array_equal(native.numpy(), src.read(1).astype(np.float32))
        size = 120 // factor
        fine = image[list(S2_BANDS).index(band)]
        blocks = fine.reshape(size, factor, size, factor).mean(dim=(1, 3))
        inner = (slice(1, -1), slice(1, -1))
        error = float((blocks - native)[inner].abs().mean() / native.mean())
        shifts = [(0, 1), (1, 0), (0, -1), (-1, 0)]
        nearest = min(
            float((blocks - native.roll(s, dims=(0, 1)))[inner].abs().mean() / native.mean())
            for s in shifts
        )
        # Resampled in place: the block averages match the native pixels up to bilinear's blur
        # (1-12 % over the six patches), three times better than a one-native-pixel shift.
        assert error < 0.15, band
        assert error < 0.5 * nearest, band
