"""RasterTemporalPairs: two dates of one patch as geossl's pair sample (the pair contract)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters
from geossl.synthetic.rasters import RasterSampleSummary
from tests.raster_helpers import ORIGIN, unix_day, window_read, write_tif


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
    assert np.array_equal(sample["image"][0].numpy(), window_read(stack.files[3], bounds))
    assert np.array_equal(sample["image"][1].numpy(), window_read(stack.files[0], bounds))
    assert sample["time"].tolist() == [unix_day(stack.dates[3]), unix_day(stack.dates[0])]
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
