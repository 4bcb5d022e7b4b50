"""The seeded GeoTIFF time-series generator: names, georeference, tags, nodata, determinism."""

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geossl.synthetic.rasters import generate_raster_timeseries_sample


def _pixels(files: tuple[Path, ...]) -> list[np.ndarray]:
    out = []
    for path in files:
        with rasterio.open(path) as src:
            out.append(src.read())
    return out


def test_layout_and_georeference(tmp_path: Path) -> None:
    summary = generate_raster_timeseries_sample(tmp_path / "s", num_dates=4, seed=3)
    assert len(summary.files) == 4
    assert summary.dates == tuple(sorted(summary.dates))
    for path, date in zip(summary.files, summary.dates, strict=True):
        assert re.fullmatch(r"m_4709963_nw_14_1_\d{8}\.tif", path.name)
        assert date.replace("-", "") in path.name
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32614
            assert src.count == 4
            assert src.dtypes[0] == "uint8"
            assert src.nodata == 0
            assert (src.height, src.width) == (96, 128)
            assert tuple(src.transform)[:6] == (2.0, 0.0, 485900.0, 0.0, -2.0, 5209248.0)
            assert src.tags()["TIFFTAG_DATETIME"] == date.replace("-", ":") + " 00:00:00"
            data = src.read()
        month = int(date[5:7])
        assert 5 <= month <= 10  # the growing season
        nodata = (data == 0).all(axis=0)
        assert (data[:, ~nodata] > 0).all()  # valid pixels are never 0
    assert summary.nodata_fraction[0] == 0.0
    assert summary.nodata_fraction[2] == pytest.approx(0.7, abs=0.02)  # the cloudy date
    assert 0.05 < summary.nodata_fraction[1] < 0.3  # a scene-edge wedge


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate_raster_timeseries_sample(tmp_path / "a", num_dates=3, seed=5, tiles=2)
    b = generate_raster_timeseries_sample(tmp_path / "b", num_dates=3, seed=5, tiles=2)
    c = generate_raster_timeseries_sample(tmp_path / "c", num_dates=3, seed=6, tiles=2)
    assert [f.name for f in a.files] == [f.name for f in b.files]
    assert all(
        np.array_equal(x, y) for x, y in zip(_pixels(a.files), _pixels(b.files), strict=True)
    )
    assert a.dates != c.dates


def test_tiles_overlap_and_agree(tmp_path: Path) -> None:
    summary = generate_raster_timeseries_sample(
        tmp_path / "t", num_dates=1, tiles=2, tile_overlap=8, cloudy_date=None
    )
    west, east = sorted(summary.files, key=lambda p: "_ne_" in p.name)
    with rasterio.open(west) as w, rasterio.open(east) as e:
        assert w.bounds.right - e.bounds.left == pytest.approx(16.0)  # 8 px of 2 m
        assert np.array_equal(w.read()[:, :, -8:], e.read()[:, :, :8])


def test_year_names_and_arguments(tmp_path: Path) -> None:
    summary = generate_raster_timeseries_sample(tmp_path / "y", num_dates=3, name_style="year")
    assert all(re.fullmatch(r"(19|20)\d\d\.tif", f.name) for f in summary.files)
    with pytest.raises(FileExistsError, match="not empty"):
        generate_raster_timeseries_sample(tmp_path / "y")
    generate_raster_timeseries_sample(tmp_path / "y", num_dates=2, overwrite=True)
    assert len(list((tmp_path / "y").glob("*.tif"))) == 2
    for kwargs, match in [
        ({"num_dates": 0}, "num_dates"),
        ({"size": (8, 64)}, "size"),
        ({"num_bands": 5}, "num_bands"),
        ({"tiles": 3}, "tiles"),
        ({"name_style": "x"}, "name_style"),
    ]:
        with pytest.raises(ValueError, match=match):
            generate_raster_timeseries_sample(tmp_path / "bad", **kwargs)  # type: ignore[arg-type]
