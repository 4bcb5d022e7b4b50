"""TimeSeriesRasters: the per-date index, the reads, one file per band, the real stacks."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from pyproj import CRS

from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.synthetic.rasters import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)
from tests.raster_helpers import (
    ORIGIN,
    S2_BANDS,
    S2_LATER_PRODUCT,
    S2_PRODUCT,
    THREE_BANDS,
    real_bigearthnet,
    real_stack,
    unix_day,
    window_read,
    write_band_product,
    write_tif,
)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    """3 dates of two overlapping tiles each."""
    root = tmp_path_factory.mktemp("rasters") / "mosaic"
    return generate_raster_timeseries_sample(root, num_dates=3, tiles=2, seed=1)


# -------------------------------------------------------------------------------------------------
# the per-date index
# -------------------------------------------------------------------------------------------------


def test_index_has_one_date_per_acquisition(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root)
    assert len(ds) == len(stack.files) == 5
    assert [d.left.strftime("%Y-%m-%d") for d in ds.dates] == list(stack.dates)
    assert ds.times.tolist() == [unix_day(d) for d in stack.dates]
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
        assert np.array_equal(sample["image"].numpy(), window_read(path, bounds))
        # The fast one-file read gives what torchgeo's merge gives.
        merged = ds._merge_files([str(path)], ds.query(bounds, date))
        assert torch.equal(sample["image"], merged)


def test_bands_are_selected_in_order(stack: RasterSampleSummary) -> None:
    ds = TimeSeriesRasters(stack.root, bands=[4, 1])
    bounds = (ORIGIN[0], ORIGIN[1] - 32, ORIGIN[0] + 32, ORIGIN[1])
    image = ds[ds.query(bounds, 0)]["image"].numpy()
    reference = window_read(stack.files[0], bounds)
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
    left = window_read(west[0], (bounds[0], bounds[1], ORIGIN[0] + 144, bounds[3]))
    right = window_read(east[0], (ORIGIN[0] + 144, bounds[1], bounds[2], bounds[3]))
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
    assert np.array_equal(sample["image"][0].numpy(), window_read(root / "1985.tif", bounds))
    assert np.array_equal(sample["image"][1].numpy(), window_read(root / "2020.tif", bounds))
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
            assert np.array_equal(image, window_read(root / "1985.tif", window)), (row, col)


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
        assert np.array_equal(image, window_read(path, bounds)), path.name
        # ... which is also what torchgeo's merge (GDAL's fractional-window read) gives.
        merged = ds._merge_files([str(path)], ds.query(bounds, date))
        assert np.array_equal(image, merged.numpy()), path.name


# -------------------------------------------------------------------------------------------------
# one file per band (band_names)
# -------------------------------------------------------------------------------------------------


def test_band_files_form_one_raster_on_the_finest_grid(tmp_path: Path) -> None:
    files = write_band_product(tmp_path / S2_PRODUCT, S2_PRODUCT, {**THREE_BANDS, "B03": 10})
    later = write_band_product(tmp_path / S2_LATER_PRODUCT, S2_LATER_PRODUCT, THREE_BANDS, seed=1)
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
