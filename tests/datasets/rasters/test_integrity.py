"""Corrupt GeoTIFFs of a stack: left out when their tiles are cut, replaced when reads fail."""

import shutil
from pathlib import Path

import pytest
import rasterio

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.datasets.rasters.blocks import truncated_blocks
from geossl.samplers import TemporalGeoPairSampler
from geossl.synthetic.rasters import RasterSampleSummary
from tests.raster_helpers import cut_tiles, garble_tiles, one_line


@pytest.fixture
def copy(stack: RasterSampleSummary, tmp_path: Path) -> list[Path]:
    root = tmp_path / "stack"
    shutil.copytree(stack.root, root)
    return sorted(root.rglob("*.tif"))


def test_truncated_blocks_reads_only_the_tags(copy: list[Path]) -> None:
    with rasterio.open(copy[0]) as src:
        assert truncated_blocks(src) == ""
    cut_tiles(copy[0])
    with rasterio.open(copy[0]) as src:  # the header still opens
        assert "last tile ends at byte" in truncated_blocks(src)


def test_a_file_with_cut_tiles_is_left_out_and_counted(copy: list[Path]) -> None:
    cut_tiles(copy[1])
    series = TimeSeriesRasters(copy[0].parent, cache=False)
    assert len(series.dates) == len(copy) - 1
    assert str(copy[1]) not in set(series.index["filepath"])
    assert series.skipped.bad_by_reason == {"truncated file": 1}
    assert series.skipped.examples["truncated file"] == [str(copy[1])]
    for path in copy[2:]:
        cut_tiles(path)
    cut_tiles(copy[0])
    with pytest.raises(BadDatasetError) as error:
        TimeSeriesRasters(copy[0].parent, cache=False)
    assert "no readable GeoTIFF; most common problem: truncated file" in one_line(error)


def test_tiles_that_fail_to_read_are_counted_and_replaced(copy: list[Path]) -> None:
    # Band 4's tiles are garbage but the file is whole: only a read of band 4 finds it.
    bad = garble_tiles(copy[1], band=4)  # date 1 (date 2 is the cloudy one, rarely drawn)
    series = TimeSeriesRasters(copy[0].parent, cache=False)
    assert series.skipped.num_bad == 0
    sampler = TemporalGeoPairSampler(series, patch_size=32, length=64, seed=0)
    pairs = RasterTemporalPairs(series)
    queries = [q for q in sampler if 1 in {series.date_of(q[0][2]), series.date_of(q[1][2])}]
    with pytest.warns(RuntimeWarning, match=rf"{bad.name}: unreadable tiles \(.*IReadBlock"):
        sample = pairs[queries[0]]
    # The view of the bad date is replaced by the other view, with its date.
    assert sample["index"][0] == sample["index"][1] != 1
    assert (sample["image"][0] == sample["image"][1]).all()
    assert pairs.load_failures.by_reason == {"unreadable tiles": 1}
    assert pairs.load_failures.examples["unreadable tiles"] == [str(bad)]
    # The file is left out of this process's queries: no second failure, no second warning.
    for query in queries[1:4]:
        assert 1 not in pairs[query]["index"].tolist()
    assert pairs.load_failures.count == 1

    strict = RasterTemporalPairs(
        TimeSeriesRasters(copy[0].parent, cache=False), max_load_failures=0
    )
    with pytest.warns(RuntimeWarning), pytest.raises(BadDatasetError) as error:
        strict[queries[0]]
    message = one_line(error)
    assert f"last {bad}: unreadable tiles" in message
    assert "max_load_failures=0" in message
