"""The files of a raster time series: their dates, their checks and their band products."""

import re
from pathlib import Path

import pytest

from geossl.datasets import BadDatasetError, DatasetNotFoundError
from geossl.datasets.rasters import DEFAULT_FILENAME_REGEX, TimeSeriesRasters
from geossl.synthetic.rasters import generate_raster_timeseries_sample
from tests.raster_helpers import (
    S2_PRODUCT,
    THREE_BANDS,
    one_line,
    scene,
    unix_day,
    write_band_product,
    write_tif,
)

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
    assert ds.times[0] == unix_day("2019-07-01")


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


def test_file_without_crs_is_named(tmp_path: Path) -> None:
    write_tif(tmp_path / "m_1_20200101.tif", scene(0))
    bad = write_tif(tmp_path / "m_1_20200202.tif", scene(1), crs=None)
    with pytest.raises(BadDatasetError, match="no CRS") as error:
        TimeSeriesRasters(tmp_path)
    assert str(bad) in one_line(error)


def test_file_without_date_is_named(tmp_path: Path) -> None:
    bad = write_tif(tmp_path / "scene.tif", scene(0))
    with pytest.raises(BadDatasetError, match="no acquisition date") as error:
        TimeSeriesRasters(tmp_path)
    assert str(bad) in one_line(error)


def test_band_not_in_the_files(tmp_path: Path) -> None:
    write_tif(tmp_path / "x_20200101.tif", scene(0, (3, 32, 32)))
    with pytest.raises(BadDatasetError, match=r"has 3 bands, bands=\[1, 5\] asks for band 5") as e:
        TimeSeriesRasters(tmp_path, bands=[1, 5])
    assert "x_20200101.tif" in one_line(e)
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
    one_line(error)


def test_regex_needs_a_date_group(tmp_path: Path) -> None:
    write_tif(tmp_path / "x_20200101.tif", scene(0))
    with pytest.raises(ValueError, match="named group 'date'"):
        TimeSeriesRasters(tmp_path, filename_regex=r"\d{8}")
    with pytest.raises(BadDatasetError, match="does not match date_format"):
        TimeSeriesRasters(tmp_path, filename_regex=r"(?P<date>\d{8})", date_format="%Y-%m-%d")


# -------------------------------------------------------------------------------------------------
# one file per band (band_names)
# -------------------------------------------------------------------------------------------------


def test_band_file_errors_are_one_line(tmp_path: Path) -> None:
    files = write_band_product(tmp_path / S2_PRODUCT, S2_PRODUCT, THREE_BANDS)
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
        TimeSeriesRasters(tmp_path, band_names=list(THREE_BANDS))
    line = one_line(error)
    assert f"band B05 missing: no {S2_PRODUCT}_B05.tif in {tmp_path / S2_PRODUCT}" in line
    write_tif(
        tmp_path / S2_PRODUCT / f"{S2_PRODUCT}_B05.tif", scene(0, (2, 6, 6)), crs="EPSG:32633"
    )
    with pytest.raises(BadDatasetError, match=r"_B05\.tif: has 2 bands; .*one band"):
        TimeSeriesRasters(tmp_path, band_names=list(THREE_BANDS))
    write_tif(tmp_path / "S2A_MSIL2A_20170613T101031.tif", scene(0, (1, 6, 6)), crs="EPSG:32633")
    with pytest.raises(BadDatasetError, match=r"T101031\.tif: no band in the file name"):
        TimeSeriesRasters(tmp_path, band_names=list(THREE_BANDS))
