"""RasterTimeSeriesDataModule: batches in the pair contract, geo clusters, workers, errors."""

from typing import Any

import pytest
import torch

from geossl.datamodules import RasterTimeSeriesDataModule
from geossl.datasets.rasters_sample import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)
from geossl.samplers import TemporalGeoPairSampler
from tests.raster_helpers import real_stack

KEYS = {"image", "time", "index", "location", "lat", "lon", "geo_label", "label", "bounds"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    root = tmp_path_factory.mktemp("rasters") / "stack"
    return generate_raster_timeseries_sample(root, num_dates=4, tiles=2, size=(96, 160))


def _module(paths: Any, **kwargs: Any) -> RasterTimeSeriesDataModule:
    options: dict[str, Any] = {
        "paths": paths,
        "patch_size": 32,
        "batch_size": 4,
        "num_workers": 0,
        "num_geo_clusters": 3,
        "length": 12,
        "geo_cluster_points": 200,
        "pin_memory": False,
    }
    options.update(kwargs)
    return RasterTimeSeriesDataModule(**options)


def test_training_batch_follows_the_contract(stack: RasterSampleSummary) -> None:
    dm = _module(str(stack.root))
    assert dm.in_chans == 4
    assert dm.num_geo_clusters == 3
    assert dm.pairs_share_canvas
    dm.setup("fit")
    assert dm.centroids is not None
    assert dm.centroids.shape == (3, 3)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, TemporalGeoPairSampler)
    batches = list(loader)
    assert len(batches) == 3
    batch = batches[0]
    assert set(batch) == KEYS
    assert batch["image"].shape == (4, 2, 4, 32, 32)
    assert batch["image"].dtype == torch.uint8
    for key in ("label", "geo_label", "location"):
        assert batch[key].shape == (4,)
        assert batch[key].dtype == torch.int64
    for key in ("time", "index"):
        assert batch[key].shape == (4, 2)
        assert batch[key].dtype == torch.int64
    assert (batch["index"][:, 0] != batch["index"][:, 1]).all()
    assert (batch["time"][:, 0] != batch["time"][:, 1]).all()
    assert batch["lat"].dtype == batch["lon"].dtype == torch.float32
    assert batch["bounds"].shape == (4, 4)
    assert (batch["label"] == -1).all()
    labels = torch.cat([b["geo_label"] for b in batches])
    assert labels.min() >= 0
    assert labels.max() < 3
    assert dm.crs.to_epsg() == 32614


def test_bands_select_channels(stack: RasterSampleSummary) -> None:
    dm = _module([str(stack.root)], bands=[1, 2, 3], batch_size=2, length=2)
    assert dm.in_chans == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 2, 3, 32, 32)


def test_workers_give_the_same_batches(stack: RasterSampleSummary) -> None:
    serial = [b["image"] for b in _module(str(stack.root)).train_dataloader()]
    dm = _module(str(stack.root), num_workers=2, persistent_workers=False)
    dm.setup("fit")
    assert dm.rasters is not None
    dm.rasters[dm.rasters.query((485900.0, 5209184.0, 485964.0, 5209248.0), 0)]  # parent opens
    parallel = [b["image"] for b in dm.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_geo_clusters_are_seeded(stack: RasterSampleSummary) -> None:
    a, b = _module(str(stack.root)), _module(str(stack.root))
    a.setup()
    b.setup()
    assert a.centroids is not None
    assert b.centroids is not None
    assert (a.centroids == b.centroids).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"paths": []}, "data.paths"),
        ({"bands": [0, 1]}, "data.bands"),
        ({"patch_size": 0}, "data.patch_size"),
        ({"length": 0}, "data.length"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"max_nodata_fraction": 2.0}, "data.max_nodata_fraction"),
        ({"scale": 0.0}, "data.scale"),
        ({"shared_canvas": False}, "data.shared_canvas"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict[str, Any], key: str) -> None:
    options = {"paths": "somewhere", **kwargs}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _module(**options)


def test_too_many_geo_clusters_name_the_key(stack: RasterSampleSummary) -> None:
    dm = _module(str(stack.root), num_geo_clusters=500, geo_cluster_points=50)
    with pytest.raises(ValueError, match=r"data\.num_geo_clusters"):
        dm.setup()


def test_real_landsat_batch() -> None:
    dm = _module(str(real_stack("landsat_pucallpa")), patch_size=64, num_geo_clusters=8)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 2, 4, 64, 64)
    assert (batch["lat"] < -8).all()  # Pucallpa, Peru
    assert (batch["geo_label"] < 8).all()
