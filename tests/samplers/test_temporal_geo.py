"""TemporalGeoPairSampler and TemporalGeoGridSampler: pairs, area-uniformity, nodata, seeds, DDP."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.samplers import TemporalGeoGridSampler, TemporalGeoPairSampler
from geossl.synthetic.rasters import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)
from tests.raster_helpers import real_stack, scene, write_tif

ORIGIN = (485900.0, 5209248.0)
PATCH = 24


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    """5 dates: 0 and 4 complete, 1 and 3 with a nodata wedge, 2 cloudy (70 % nodata)."""
    return generate_raster_timeseries_sample(tmp_path_factory.mktemp("rasters") / "stack")


@pytest.fixture(scope="module")
def rasters(stack: RasterSampleSummary) -> TimeSeriesRasters:
    return TimeSeriesRasters(stack.root)


def _bounds(query: tuple[slice, slice, slice]) -> tuple[float, float, float, float]:
    x, y, _ = query
    return (x.start, y.start, x.stop, y.stop)


def _nodata_fraction(image: torch.Tensor) -> float:
    return float((image == 0).all(dim=0).float().mean())


def test_pairs_are_one_footprint_at_two_dates(rasters: TimeSeriesRasters) -> None:
    sampler = TemporalGeoPairSampler(rasters, PATCH, length=200, seed=0)
    pairs = list(sampler)
    assert len(pairs) == len(sampler) == 200
    left, bottom, right, top = rasters.extent
    for first, second in pairs:
        assert _bounds(first) == _bounds(second)
        date_a, date_b = rasters.date_of(first[2]), rasters.date_of(second[2])
        assert date_a is not None
        assert date_b is not None
        assert date_a != date_b
        xmin, ymin, xmax, ymax = _bounds(first)
        assert first[0].step == first[1].step == 2.0
        assert (xmax - xmin, ymax - ymin) == (PATCH * 2.0, PATCH * 2.0)
        # Corners on the pixel grid, inside the files.
        assert (xmin - ORIGIN[0]) / 2.0 == round((xmin - ORIGIN[0]) / 2.0)
        assert (ORIGIN[1] - ymax) / 2.0 == round((ORIGIN[1] - ymax) / 2.0)
        assert left <= xmin < xmax <= right
        assert bottom <= ymin < ymax <= top
    # Both orders and every date appear.
    dates = {(rasters.date_of(a[2]), rasters.date_of(b[2])) for a, b in pairs}
    assert {d for pair in dates for d in pair} == set(range(5))
    assert any((b, a) in dates for a, b in dates)


def test_views_are_pixel_aligned(stack: RasterSampleSummary, rasters: TimeSeriesRasters) -> None:
    sampler = TemporalGeoPairSampler(rasters, PATCH, length=20, seed=3)
    pairs = RasterTemporalPairs(rasters)
    for query in sampler:
        sample = pairs[query]
        xmin, _, _, ymax = sample["bounds"].tolist()
        col, row = round((xmin - ORIGIN[0]) / 2.0), round((ORIGIN[1] - ymax) / 2.0)
        for view, q in enumerate(query):
            date = rasters.date_of(q[2])
            assert date is not None
            with rasterio.open(stack.files[date]) as src:
                expected = src.read(window=Window(col, row, PATCH, PATCH))
            assert np.array_equal(sample["image"][view].numpy(), expected)


def test_seeded_and_per_epoch(rasters: TimeSeriesRasters) -> None:
    a = TemporalGeoPairSampler(rasters, PATCH, length=50, seed=7)
    b = TemporalGeoPairSampler(rasters, PATCH, length=50, seed=7)
    epoch0 = list(a)
    assert epoch0 == list(b)
    epoch1 = list(a)  # the epoch advanced
    assert epoch1 != epoch0
    a.set_epoch(0)
    assert list(a) == epoch0
    b.set_epoch(1)
    assert list(b) == epoch1
    other = TemporalGeoPairSampler(rasters, PATCH, length=50, seed=8)
    assert list(other) != epoch0
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with_generator = TemporalGeoPairSampler(rasters, PATCH, length=30, generator=g1)
    boxes, dates = with_generator.draw(30, g2)
    pairs = list(with_generator)
    assert [_bounds(p[0]) for p in pairs] == [tuple(b) for b in boxes.tolist()]
    assert [[rasters.date_of(q[2]) for q in p] for p in pairs] == dates.tolist()


def test_nodata_patches_are_rejected(
    stack: RasterSampleSummary, rasters: TimeSeriesRasters
) -> None:
    pairs = RasterTemporalPairs(rasters)
    strict = TemporalGeoPairSampler(rasters, PATCH, length=150, max_nodata_fraction=0.0, seed=1)
    fractions = [_nodata_fraction(pairs[q]["image"][v]) for q in strict for v in (0, 1)]
    # The rule is estimated on 8 x 8 points per patch: a sliver between points may slip through.
    assert max(fractions) <= 0.15
    assert np.mean(fractions) < 0.01
    loose = TemporalGeoPairSampler(rasters, PATCH, length=150, max_nodata_fraction=1.0, seed=1)
    fractions = [_nodata_fraction(pairs[q]["image"][v]) for q in loose for v in (0, 1)]
    assert max(fractions) > 0.5  # without the rule, the cloudy date gives mostly-empty views
    # The cloudy date (2) still pairs where it is clear (its bottom band).
    used = {rasters.date_of(q[2]) for p in strict for q in p}
    assert 2 in used


def test_patches_are_uniform_over_the_area_not_the_files(tmp_path: Path) -> None:
    # Every date has one file over the whole 64 x 64 px area and, at the same date, three extra
    # copies of its left quarter: a per-file sampler would put most patches in the left quarter.
    for day in ("20200101", "20200601"):
        write_tif(tmp_path / f"a_full_{day}.tif", scene(int(day)))
        for copy in range(3):
            write_tif(tmp_path / f"b_left{copy}_{day}.tif", scene(int(day), (4, 64, 16)))
    ds = TimeSeriesRasters(tmp_path)
    assert len(ds) == 8
    sampler = TemporalGeoPairSampler(ds, 8, length=4000, seed=0)
    boxes, _ = sampler.draw(4000, torch.Generator().manual_seed(0))
    centre_col = ((boxes[:, 0] + boxes[:, 2]) / 2 - ORIGIN[0]) / 2.0  # pixels, in [4, 60]
    share_left = float(np.mean(centre_col < 16))
    assert share_left == pytest.approx(12 / 56, abs=0.04)  # area share of the left quarter


def test_no_valid_pair_is_one_clear_line(tmp_path: Path) -> None:
    # Two dates that never overlap: west half in January, east half in June.
    write_tif(tmp_path / "west_20200101.tif", scene(0, (4, 64, 32)))
    write_tif(tmp_path / "east_20200601.tif", scene(1, (4, 64, 32)), origin=(485964.0, 5209248.0))
    ds = TimeSeriesRasters(tmp_path)
    with pytest.raises(ValueError, match="no valid pair") as error:
        TemporalGeoPairSampler(ds, 8, length=10)
    assert "\n" not in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_one_date_or_too_large_patches_fail(rasters: TimeSeriesRasters, tmp_path: Path) -> None:
    write_tif(tmp_path / "only_20200101.tif", scene(0))
    with pytest.raises(ValueError, match="no valid pair: temporal pairs need two"):
        TemporalGeoPairSampler(TimeSeriesRasters(tmp_path), 8, length=10)
    with pytest.raises(ValueError, match="no valid pair"):
        TemporalGeoPairSampler(rasters, 200, length=10)
    with pytest.raises(ValueError, match="length"):
        TemporalGeoPairSampler(rasters, 8, length=0)
    with pytest.raises(ValueError, match="max_nodata_fraction"):
        TemporalGeoPairSampler(rasters, 8, length=1, max_nodata_fraction=1.5)


def test_single_date_pairs_are_explicit(tmp_path: Path) -> None:
    # The west half is seen in January and June, the east half in January only.
    write_tif(tmp_path / "full_20200101.tif", scene(0, (4, 64, 64)))
    write_tif(tmp_path / "west_20200601.tif", scene(1, (4, 64, 32)))
    ds = TimeSeriesRasters(tmp_path)
    default = TemporalGeoPairSampler(ds, 8, length=400, seed=0)
    assert default.single_date_rate == 0.0
    boxes, dates = default.draw(400, torch.Generator().manual_seed(0))
    assert (dates[:, 0] != dates[:, 1]).all()
    assert (boxes[:, 2] <= ORIGIN[0] + 64.0).all()  # the east half has no pair: never drawn
    sampler = TemporalGeoPairSampler(ds, 8, length=400, seed=0, single_date_pairs=True)
    boxes, dates = sampler.draw(400, torch.Generator().manual_seed(0))
    east = boxes[:, 0] >= ORIGIN[0] + 64.0
    assert east.any()
    assert (dates[east, 0] == dates[east, 1]).all()  # one date: paired with itself
    assert (dates[east, 0] == 0).all()
    west = boxes[:, 2] <= ORIGIN[0] + 64.0
    assert (dates[west, 0] != dates[west, 1]).all()  # two dates: still two different ones
    assert 0.0 < sampler.single_date_rate < 1.0
    single = next(pair for pair in sampler if pair[0] == pair[1])
    sample = RasterTemporalPairs(ds)[single]  # one image for both views
    assert torch.equal(sample["image"][0], sample["image"][1])
    assert sample["time"][0] == sample["time"][1]


def test_single_date_pairs_on_separate_places(tmp_path: Path) -> None:
    # BigEarthNet-like: two places, one date each. No temporal pair: a clear error that says
    # what to do; with single_date_pairs every pair is a date with itself.
    write_tif(tmp_path / "west_20200101.tif", scene(0, (4, 64, 32)))
    write_tif(tmp_path / "east_20200601.tif", scene(1, (4, 64, 32)), origin=(485964.0, 5209248.0))
    ds = TimeSeriesRasters(tmp_path)
    with pytest.raises(ValueError, match=r"no valid pair: .*single_date_pairs=True pairs a place"):
        TemporalGeoPairSampler(ds, 8, length=10)
    sampler = TemporalGeoPairSampler(ds, 8, length=50, single_date_pairs=True)
    assert sampler.single_date_rate == 1.0
    for first, second in sampler:
        assert first == second
    write_tif(tmp_path / "one" / "only_20200101.tif", scene(0))
    one = TemporalGeoPairSampler(TimeSeriesRasters(tmp_path / "one"), 8, 5, single_date_pairs=True)
    assert all(first == second for first, second in one)


def test_ddp_shards_partition_the_epoch(rasters: TimeSeriesRasters) -> None:
    full = list(TemporalGeoPairSampler(rasters, PATCH, length=41, seed=2))
    shards = [
        list(TemporalGeoPairSampler(rasters, PATCH, 41, seed=2, num_replicas=2, rank=r))
        for r in range(2)
    ]
    assert [len(s) for s in shards] == [21, 21]  # padded by wrapping around
    assert shards[0] + shards[1][:20] == full[0::2] + full[1::2]
    dropped = TemporalGeoPairSampler(rasters, PATCH, 41, seed=2, num_replicas=2, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 20


def test_grid_sampler_is_deterministic_and_complete(rasters: TimeSeriesRasters) -> None:
    grid = TemporalGeoGridSampler(rasters, PATCH, max_nodata_fraction=0.0)
    pairs = list(grid)
    assert pairs == list(TemporalGeoGridSampler(rasters, PATCH, max_nodata_fraction=0.0))
    assert len(grid.boxes) == (96 // PATCH) * (128 // PATCH)
    expected = sum(max(int(v.sum()) - 1, 0) for v in grid.valid)
    assert len(pairs) == len(grid) == expected
    assert grid.valid[:, [0, 4]].all()  # complete dates
    assert not grid.valid[:, 2].all()  # the cloudy date
    for first, second in pairs:
        assert _bounds(first) == _bounds(second)
        date_a, date_b = rasters.date_of(first[2]), rasters.date_of(second[2])
        assert date_a is not None
        assert date_b is not None
        assert date_a < date_b
    # Non-overlapping tiles of the pixel grid.
    starts = {(b[0], b[3]) for b in grid.boxes.tolist()}
    assert len(starts) == len(grid.boxes)
    shard = TemporalGeoGridSampler(rasters, PATCH, max_nodata_fraction=0.0, num_replicas=3, rank=1)
    assert list(shard) == (pairs * 2)[1 : 3 * len(shard) : 3]


def test_real_stacks_give_valid_pairs() -> None:
    for name, dates in (("landsat_pucallpa", 8), ("naip_north_dakota", 10)):
        ds = TimeSeriesRasters(real_stack(name))
        sampler = TemporalGeoPairSampler(ds, 64, length=32, seed=0)
        pairs = RasterTemporalPairs(ds)
        for query in sampler:
            sample = pairs[query]
            assert sample["image"].shape == (2, 4, 64, 64)
            assert sample["index"][0] != sample["index"][1]
            assert 0 <= int(sample["index"].max()) < dates
            assert _nodata_fraction(sample["image"][0]) < 0.2
