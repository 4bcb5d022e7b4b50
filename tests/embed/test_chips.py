"""Chip grid, windowed chip reads, normalisation and footprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.warp import transform as warp_transform

from geossl.embed.chips import (
    ChipGrid,
    chip_footprints,
    normalize_chips,
    read_chip_block,
    split_antimeridian,
)
from tests.embed.embed_helpers import UTM_TRANSFORM, position_raster, write_raster


@pytest.mark.parametrize(
    ("size", "chip", "stride", "expected"),
    [
        ((64, 32), 16, 16, (2, 4)),  # exact
        ((70, 33), 16, 16, (3, 5)),  # remainders: one more partial chip each way
        ((10, 12), 16, 16, (1, 1)),  # raster smaller than a chip
        ((64, 32), 16, 8, (3, 7)),  # overlapping chips
    ],
)
def test_grid_counts(
    size: tuple[int, int], chip: int, stride: int, expected: tuple[int, int]
) -> None:
    grid = ChipGrid(size[0], size[1], chip, stride)
    assert (grid.n_rows, grid.n_cols) == expected
    assert grid.num_chips == expected[0] * expected[1]
    # The last chip reaches the raster's edge, the one before does not.
    last_col = grid.window(0, grid.n_cols - 1)
    assert last_col[0] + chip >= size[0]
    if grid.n_cols > 1:
        assert grid.window(0, grid.n_cols - 2)[0] + chip < size[0]


@pytest.mark.parametrize(("size", "chip", "stride"), [(21, 4, 16), (40, 8, 16), (33, 8, 32)])
def test_sparse_grid_has_no_chip_past_the_edge(size: int, chip: int, stride: int) -> None:
    # stride > chip (sparse sampling): every chip starts inside the raster, none is left out.
    grid = ChipGrid(size, size, chip, stride)
    starts = [grid.window(0, j)[0] for j in range(grid.n_cols)]
    assert starts[-1] < size
    assert starts[-1] + stride >= size  # the next chip would start past the edge
    assert grid.n_rows == grid.n_cols == len(range(0, size, stride))


def test_grid_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="chip_size"):
        ChipGrid(10, 10, 0, 1)
    with pytest.raises(ValueError, match="stride"):
        ChipGrid(10, 10, 4, 0)
    with pytest.raises(ValueError, match="raster size"):
        ChipGrid(0, 10, 4, 4)


@pytest.mark.parametrize(("chip", "stride"), [(16, 16), (16, 8), (12, 4)])
@pytest.mark.parametrize(
    "transform",
    [UTM_TRANSFORM, Affine(3.0, 1.0, 100.0, 0.5, -2.0, 50.0)],  # north-up; rotated and sheared
)
def test_cell_transform_centres_cells_on_chips(chip: int, stride: int, transform: Affine) -> None:
    grid = ChipGrid(100, 60, chip, stride)
    cells = grid.cell_transform(transform)
    for row, col in [(0, 0), (1, 2), (grid.n_rows - 1, grid.n_cols - 1)]:
        col_off, row_off, w, h = grid.window(row, col)
        expected = transform @ (col_off + w / 2, row_off + h / 2)
        assert cells @ (col + 0.5, row + 0.5) == pytest.approx(expected)
        # A cell spans stride source pixels.
        corner = transform @ (col_off + (chip - stride) / 2, row_off + (chip - stride) / 2)
        assert cells @ (col, row) == pytest.approx(corner)


def test_read_chip_block_matches_windowed_reads_and_pads(tmp_path: Path) -> None:
    path = position_raster(tmp_path / "pos.tif", width=40, height=24)
    grid = ChipGrid(40, 24, 16, 12)  # 2 x 3 chips; the second row sticks out by 4 pixels
    assert (grid.n_rows, grid.n_cols) == (2, 3)
    with rasterio.open(path) as src:
        raw0, valid0 = read_chip_block(src, grid, 0, 0, 3, (1, 2, 3), all_valid=True)
        raw1, valid1 = read_chip_block(src, grid, 1, 1, 3, (1, 2, 3), all_valid=True)
        raw_masked, valid_masked = read_chip_block(src, grid, 1, 1, 3, (2, 1))
    assert raw0.shape == (3, 3, 16, 16)
    assert raw0.dtype == np.uint16
    # Chip (0, 1): window (12, 0, 16, 16), inside: band 1 is the column, band 2 the row.
    np.testing.assert_array_equal(raw0[1, 0], np.tile(np.arange(12, 28), (16, 1)))
    np.testing.assert_array_equal(raw0[1, 1], np.tile(np.arange(16)[:, None], (1, 16)))
    assert valid0.all()
    # Chip (1, 2): window (24, 12, 16, 16): rows 12..23 inside, 24..27 padded with nodata.
    assert raw1.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(raw1[1, 1, :12], np.tile(np.arange(12, 24)[:, None], (1, 16)))
    assert valid1[:, :12].all()
    assert not valid1[:, 12:].any()
    assert (raw1[:, :, 12:] == 0).all()
    # The mask read path agrees, and bands come in the order asked.
    np.testing.assert_array_equal(valid_masked, valid1)
    np.testing.assert_array_equal(raw_masked[:, 0], raw1[:, 1])


def test_read_chip_block_nodata_and_nan(tmp_path: Path) -> None:
    data = np.ones((1, 16, 16), np.float32)
    data[0, :, :4] = -9999.0  # nodata
    data[0, 0, 8] = np.nan
    path = write_raster(tmp_path / "nd.tif", data, nodata=-9999.0)
    with rasterio.open(path) as src:
        _, valid = read_chip_block(src, ChipGrid(16, 16, 16, 16), 0, 0, 1, (1,))
    assert not valid[0, :, :4].any()
    assert not valid[0, 0, 8]
    assert valid.sum() == 16 * 12 - 1


def test_normalize_chips_formula_and_invalid_pixels() -> None:
    raw = np.array([0, 51, 255, 300], dtype=np.uint16).reshape(1, 1, 2, 2).repeat(2, axis=1)
    valid = np.array([[[True, True], [True, False]]])
    out = normalize_chips(raw, valid, scale=1 / 255, mean=[0.5, 0.2], std=[0.25, 0.5])
    expected_b0 = (np.clip(np.array([0, 51, 255, 300]) / 255, 0, 1) - 0.5) / 0.25
    expected_b1 = (np.clip(np.array([0, 51, 255, 300]) / 255, 0, 1) - 0.2) / 0.5
    expected_b0[3] = expected_b1[3] = 0.0  # invalid pixel -> the band mean
    np.testing.assert_allclose(out[0, 0].ravel(), expected_b0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[0, 1].ravel(), expected_b1, rtol=1e-6, atol=1e-6)
    assert out.dtype == np.float32


def test_footprints_in_geographic_crs_are_the_windows() -> None:
    transform = Affine(0.01, 0.0, 10.0, 0.0, -0.01, 50.0)
    windows = np.array([[0, 0, 10, 10], [10, 0, 10, 10]])
    footprints, lon, lat = chip_footprints(transform, "EPSG:4326", windows)
    assert footprints[0] is not None
    box = shapely.box(10.0, 49.9, 10.1, 50.0)
    assert footprints[0].symmetric_difference(box).area < 1e-12
    assert footprints[0].bounds == pytest.approx(box.bounds)
    assert lon.tolist() == pytest.approx([10.05, 10.15])
    assert lat.tolist() == pytest.approx([49.95, 49.95])


def test_footprints_in_utm_map_back_onto_the_windows() -> None:
    windows = np.array([[0, 0, 16, 16], [16, 0, 16, 16], [0, 16, 16, 16]])
    footprints, lon, lat = chip_footprints(UTM_TRANSFORM, "EPSG:32618", windows, densify=4)
    assert all(isinstance(f, shapely.Polygon) for f in footprints)
    first = footprints[0]
    assert isinstance(first, shapely.Polygon)
    ring = np.asarray(first.exterior.coords)
    assert len(ring) == 4 * 4 + 1  # 4 points per edge, closed
    xs, ys = warp_transform("EPSG:4326", "EPSG:32618", ring[:, 0].tolist(), ring[:, 1].tolist())
    # Back in UTM, every vertex lies on the window's boundary; the corners are exact.
    inverse = ~UTM_TRANSFORM
    cols, rows = np.array([inverse @ (x, y) for x, y in zip(xs, ys, strict=True)]).T
    on_edge = (
        np.isclose(cols, 0) | np.isclose(cols, 16) | np.isclose(rows, 0) | np.isclose(rows, 16)
    )
    assert on_edge.all()
    assert (cols[0], rows[0]) == pytest.approx((0.0, 0.0), abs=1e-6)
    # Centres: the window centre reprojected; neighbours share an edge (no gap, no overlap).
    cx, cy = UTM_TRANSFORM @ (8, 8)
    clon, clat = warp_transform("EPSG:32618", "EPSG:4326", [cx], [cy])
    assert (lon[0], lat[0]) == pytest.approx((clon[0], clat[0]))
    left, right = footprints[0], footprints[1]
    assert left is not None
    assert right is not None
    union = shapely.union_all([left, right])
    assert union.area == pytest.approx(left.area + right.area, rel=1e-9)
    assert isinstance(union, shapely.Polygon)


def test_footprint_across_the_antimeridian_is_split() -> None:
    # UTM 60N (central meridian 177 E): at the equator 180 E is ~333 km east of the CM.
    transform = Affine(1000.0, 0.0, 820_000.0, 0.0, -1000.0, 100_000.0)
    windows = np.array([[0, 0, 30, 30], [0, 0, 5, 5]])
    footprints, lon, _ = chip_footprints(transform, "EPSG:32660", windows)
    crossing, inside = footprints
    assert isinstance(crossing, shapely.MultiPolygon)
    minx, _, maxx, _ = crossing.bounds
    assert minx == pytest.approx(-180.0, abs=1.0)
    assert maxx == pytest.approx(180.0, abs=1.0)
    assert all(-180.0 <= x <= 180.0 for part in crossing.geoms for x, _ in part.exterior.coords)
    assert isinstance(inside, shapely.Polygon)
    assert lon.min() >= -180.0
    assert lon.max() < 180.0


def test_split_antimeridian_keeps_area() -> None:
    polygon = shapely.box(179.0, -1.0, 181.0, 1.0)
    split = split_antimeridian(polygon)
    assert isinstance(split, shapely.MultiPolygon)
    assert split.area == pytest.approx(polygon.area)
    assert split_antimeridian(shapely.box(10, 10, 11, 11)).equals(shapely.box(10, 10, 11, 11))
    west = split_antimeridian(shapely.box(-181.0, 0.0, -179.0, 1.0))
    assert isinstance(west, shapely.MultiPolygon)
    assert west.bounds == pytest.approx((-180.0, 0.0, 180.0, 1.0))


@pytest.mark.parametrize(
    ("crs", "unit"), [("EPSG:4326", 1.0), ("EPSG:4087", 111_319.490_793_273_57)]
)  # lon/lat, and World Equidistant Cylindrical (metres, reprojected by PROJ)
def test_footprint_of_a_chip_wider_than_180_degrees(crs: str, unit: float) -> None:
    # A coarse global raster (1 degree pixels) with 224-pixel chips: 224 degrees of longitude.
    transform = Affine(unit, 0.0, -180.0 * unit, 0.0, -unit, 90.0 * unit)
    windows = np.array([[0, 0, 224, 100], [180, 0, 224, 100]])
    (wide, across), lon, _ = chip_footprints(transform, crs, windows)
    assert wide is not None
    assert wide.bounds == pytest.approx((-180.0, -10.0, 44.0, 90.0))
    assert wide.area == pytest.approx(224.0 * 100.0)
    assert lon[0] == pytest.approx(-68.0)
    # From 0 E over the antimeridian to 44 W: split there, nothing lost.
    assert isinstance(across, shapely.MultiPolygon)
    assert across.area == pytest.approx(224.0 * 100.0)
    assert across.bounds == pytest.approx((-180.0, -10.0, 180.0, 90.0))


def test_footprint_of_a_chip_past_the_pole_is_clipped() -> None:
    # The last chip row of a global lon/lat raster sticks out past the south pole.
    transform = Affine(1.0, 0.0, -180.0, 0.0, -1.0, 90.0)
    windows = np.array([[0, 170, 16, 16]])  # rows 170 .. 186: latitudes -80 .. -96
    (footprint,), lon, lat = chip_footprints(transform, "EPSG:4326", windows)
    assert footprint is not None
    assert footprint.bounds == pytest.approx((-180.0, -90.0, -164.0, -80.0))
    assert (lon[0], lat[0]) == pytest.approx((-172.0, -88.0))  # the window centre
