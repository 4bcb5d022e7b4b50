"""GeoSSLTask normalisation: ImageNet, given, or estimated from the data at fit start."""

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import lightning
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from geossl.cli.pretrain_cli import give_data_normalization, run_pretrain
from geossl.datamodules import RasterTimeSeriesDataModule
from geossl.synthetic.rasters import (
    RasterSampleSummary,
    generate_raster_timeseries_sample,
)
from geossl.trainers import GeoSSLTask
from geossl.transforms import IMAGENET_MEAN, IMAGENET_STD
from geossl.weights import read_weights

REPO = Path(__file__).resolve().parents[2]
RASTERS_TINY = REPO / "tests" / "conf" / "rasters_tiny.yaml"

TINY: dict[str, Any] = {
    "backbone": "resnet18",
    "crop_size": 32,
    "queue_size": 64,
    "proj_hidden_dim": 64,
    "proj_dim": 16,
    "num_geo_clusters": 5,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> RasterSampleSummary:
    return generate_raster_timeseries_sample(tmp_path_factory.mktemp("norm") / "stack", 4)


def _buffers(task: GeoSSLTask) -> tuple[list[float], list[float]]:
    mean: list[float] = task.augment.mean.flatten().tolist()
    std: list[float] = task.augment.std.flatten().tolist()
    return mean, std


def _assert_buffers(task: GeoSSLTask, mean: Sequence[float], std: Sequence[float]) -> None:
    """The augmentation normalises with ``mean`` / ``std`` (float32 buffers)."""
    got_mean, got_std = _buffers(task)
    assert got_mean == pytest.approx(list(mean))
    assert got_std == pytest.approx(list(std))


def test_where_the_statistics_come_from() -> None:
    rgb = GeoSSLTask(**TINY)
    assert rgb.normalization_source == "imagenet"
    assert not rgb.normalization_pending
    assert _buffers(rgb)[0] == pytest.approx(IMAGENET_MEAN)
    assert rgb.hparams["mean"] is None  # ImageNet's: exports read None as ImageNet for 3 bands
    half = GeoSSLTask(**TINY, mean=[0.5] * 3)  # 3 bands: the missing std is ImageNet's
    assert half.normalization_source == "given"
    _assert_buffers(half, [0.5] * 3, IMAGENET_STD)
    for task in (GeoSSLTask(**TINY, in_chans=4), GeoSSLTask(**TINY, normalization="data")):
        assert task.normalization_source == "data"
        assert task.normalization_pending
    given = GeoSSLTask(**TINY, in_chans=4, mean=[0.3] * 4, std=[0.2] * 4, normalization="data")
    assert given.normalization_source == "given"  # given values always win (checkpoints)
    _assert_buffers(given, [0.3] * 4, [0.2] * 4)


def test_pending_statistics_refuse_a_step_and_set_normalization_records_them() -> None:
    task = GeoSSLTask(**TINY, in_chans=4, losses={"moco": 1.0})
    batch = {"image": torch.zeros(2, 2, 4, 40, 40, dtype=torch.uint8)}
    with pytest.raises(RuntimeError, match=r"model\.mean / model\.std are not known yet"):
        task.compute_step_outputs(batch)
    with pytest.raises(ValueError, match=r"model\.mean / model\.std: mean has 3 values"):
        task.set_normalization([0.5] * 3, [0.2] * 3)
    task.set_normalization([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8])
    assert not task.normalization_pending
    _assert_buffers(task, [0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8])
    assert task.hparams["mean"] == [0.1, 0.2, 0.3, 0.4]
    assert task.hparams_initial["std"] == [0.5, 0.6, 0.7, 0.8]  # what the loggers record
    assert task.compute_step_outputs(batch).q.shape == (2, 16)


def test_fit_without_the_statistics_says_how_to_give_them() -> None:
    task = GeoSSLTask(**TINY, in_chans=4)
    samples = [{"image": torch.zeros(2, 4, 40, 40)}] * 2
    loader: DataLoader[dict[str, torch.Tensor]] = DataLoader(cast(Any, samples), batch_size=2)
    trainer = lightning.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False
    )
    with pytest.raises(
        ValueError, match=r"model\.mean / model\.std are not set .*set_normalization"
    ):
        trainer.fit(task, train_dataloaders=loader)


def test_data_without_band_statistics_names_the_keys() -> None:
    task = GeoSSLTask(**TINY, in_chans=4)
    with pytest.raises(
        ValueError, match=r"no band_statistics\(\) .*set model\.mean and model\.std"
    ):
        give_data_normalization(task, cast(Any, object()))
    assert task.normalization_pending


def test_cli_fit_estimates_and_records_the_statistics(
    stack: RasterSampleSummary, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # rasters_tiny.yaml sets model.mean / model.std for its 4 bands: null them to estimate them.
    args = [
        "--config",
        str(RASTERS_TINY),
        "--data.paths",
        str(stack.root),
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--model.mean",
        "null",
        "--model.std",
        "null",
        "--model.normalization_samples",
        "32",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
    ]
    with caplog.at_level(logging.INFO):
        cli = run_pretrain(args)
    dm = cli.datamodule
    assert isinstance(dm, RasterTimeSeriesDataModule)
    mean, std = dm.band_statistics(32)  # from the cache the fit wrote
    assert cli.model.hparams["mean"] == mean
    assert cli.model.hparams["std"] == std
    _assert_buffers(cli.model, mean, std)
    printed = [r for r in caplog.records if "per-band statistics of Raster" in r.message]
    assert len(printed) == 1
    # The checkpoint, the logged hyper-parameters and the weights' metadata all carry them.
    callback = cli.trainer.checkpoint_callback
    assert callback is not None
    last = Path(getattr(callback, "last_model_path", ""))
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["mean"] == mean
    assert checkpoint["hyper_parameters"]["std"] == std
    logged = yaml.safe_load((Path(str(cli.trainer.log_dir)) / "hparams.yaml").read_text())
    assert logged["mean"] == pytest.approx(mean)
    _, meta = read_weights(last)
    assert meta.mean == pytest.approx(tuple(mean))
    assert meta.std == pytest.approx(tuple(std))
    restored = GeoSSLTask.load_from_checkpoint(last, map_location="cpu")
    assert restored.normalization_source == "given"
    _assert_buffers(restored, mean, std)

    # Resume after the data changed (here: the cached estimate is edited): the weights were
    # trained with the checkpoint's statistics, so those are kept, with a warning.
    (cache,) = (tmp_path / "cache").glob("band-stats-rasters-*.json")
    edited = json.loads(cache.read_text())
    edited["mean"] = [0.25] * 4
    cache.write_text(json.dumps(edited))
    more = ["--trainer.max_steps", "3", "--trainer.max_epochs", "2", "--ckpt_path", str(last)]
    with pytest.warns(UserWarning, match=r"resuming with the checkpoint's model\.mean="):
        resumed = run_pretrain([*args, *more])
    assert resumed.trainer.global_step == 3
    assert resumed.model.hparams["mean"] == mean
    assert _buffers(resumed.model)[0] == pytest.approx(mean)
