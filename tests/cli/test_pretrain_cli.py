"""``geossl pretrain`` end to end on the generated sample: fit, checkpoint, resume, errors."""

import re
from pathlib import Path

import pytest
import torch

from geossl.cli.pretrain import DEFAULT_DATAMODULE
from geossl.cli.pretrain_cli import build_args, data_class_path, run_pretrain
from geossl.configs import list_presets, preset_path
from geossl.datamodules import RasterTimeSeriesDataModule
from geossl.errors import CheckpointError
from geossl.synthetic.fmow import generate_fmow_sample
from geossl.synthetic.fmow_sentinel import generate_fmow_sentinel_sample
from geossl.synthetic.rasters import generate_raster_timeseries_sample
from geossl.trainers.loss_curve import LOSS_CURVE_NAME, LossCurve
from tests.payload_helpers import PicklePayload
from tests.plot_helpers import assert_readable_png
from tests.raster_helpers import cut_tiles

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "conf" / "fmow_tiny.yaml"
RASTERS_TINY = REPO / "tests" / "conf" / "rasters_tiny.yaml"


def tiny_args(root: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(TINY),
        "--data.root",
        str(root),
        "--data.cache_dir",
        str(runs / "index"),
        "--trainer.logger.init_args.save_dir",
        str(runs),
        *extra,
    ]


def test_presets_exist() -> None:
    assert {"fmow", "fmow_demo", "fmow_sentinel"} <= set(list_presets())
    assert preset_path("fmow-sentinel") == preset_path("fmow_sentinel")
    assert build_args(["--trainer.max_epochs", "1"], "fmow")[:2] == [
        "--config",
        str(preset_path("fmow")),
    ]


def test_fit_checkpoint_and_resume(
    fmow_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = run_pretrain(tiny_args(fmow_sample, tmp_path))
    trainer = cli.trainer
    assert trainer.global_step == 4
    run_dir = Path(str(trainer.log_dir))
    metrics = (run_dir / "metrics.csv").read_text()
    for key in ("train_loss", "train/loss_tp", "train/loss_geo", "train/embedding_std"):
        assert key in metrics
    assert (run_dir / "config.yaml").is_file()
    # The loss curve of every logged term, named by the end-of-run summary.
    curve = run_dir / LOSS_CURVE_NAME
    assert_readable_png(curve)
    # Trainer.callbacks is set at run time (not declared on the class, so mypy does not see it).
    (recorder,) = (c for c in trainer.callbacks if isinstance(c, LossCurve))  # type: ignore[attr-defined]
    assert set(recorder.history) == {"train_loss", "train/loss_tp", "train/loss_geo"}
    assert [s for s, _ in recorder.history["train_loss"]] == [1, 2, 3, 4]
    # A rich table: the path wraps over lines of the value column.
    summary = re.sub(r"[│\s]", "", capsys.readouterr().err)
    assert f"losscurve{curve}" in summary

    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt_path.is_file()
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    queue_keys = [k for k in checkpoint["state_dict"] if k.endswith("queue")]
    assert queue_keys, "the MoCo queue must be saved in the checkpoint"
    queue = checkpoint["state_dict"][queue_keys[0]]
    assert queue.shape == (64, 32)
    model_queue = dict(cli.model.state_dict())[queue_keys[0]]
    torch.testing.assert_close(queue, model_queue.cpu())

    # Resume: training continues from step 4 with the saved queue, up to the new max_steps.
    resumed = run_pretrain(
        tiny_args(
            fmow_sample,
            tmp_path / "resumed",
            "--trainer.max_steps",
            "6",
            "--trainer.max_epochs",
            "10",
            "--ckpt_path",
            str(ckpt_path),
        )
    )
    assert resumed.trainer.global_step == 6
    # The resumed run draws the whole curve: the checkpoint kept the first run's points.
    callbacks = resumed.trainer.callbacks  # type: ignore[attr-defined]
    (recorder,) = (c for c in callbacks if isinstance(c, LossCurve))
    assert [s for s, _ in recorder.history["train_loss"]] == [1, 2, 3, 4, 5, 6]


def test_bad_config_value_fails_before_training(fmow_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.queue_size"):
        run_pretrain(tiny_args(fmow_sample, tmp_path, "--model.queue_size", "-5"))
    with pytest.raises(ValueError, match=r"model\.backbone"):
        run_pretrain(tiny_args(fmow_sample, tmp_path, "--model.backbone", "resnet5000"))


def test_too_many_geo_clusters_names_the_key(fmow_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.num_geo_clusters"):
        run_pretrain(tiny_args(fmow_sample, tmp_path, "--data.num_geo_clusters", "500"))


def test_fit_with_the_jpegs_decoded_on_the_device(fmow_sample: Path, tmp_path: Path) -> None:
    # The workers send bytes; Lightning's transfer hook decodes them before training_step.
    args = tiny_args(fmow_sample, tmp_path, "--data.decode_on_device", "true")
    cli = run_pretrain([*args, "--trainer.max_steps", "2"])
    assert cli.trainer.global_step == 2
    assert cli.datamodule.decode_on_device
    assert cli.datamodule.num_decode_failures == 0


def test_fit_on_fmow_full_multispectral(tmp_path: Path) -> None:
    # fMoW-full: 8-band 11-bit _ms.tif read through rasterio; in_chans flows from the data to the
    # model, and the normalisation of a band count other than 3 is estimated from the images
    # (FMoWDataModule.band_statistics) when model.mean / model.std are not given.
    root = tmp_path / "fmow-full"
    generate_fmow_sample(root, locations=10, seed=1, full=True, image_size=(64, 96))
    args = tiny_args(root, tmp_path, "--data.product", "ms")
    cli = run_pretrain([*args, "--trainer.max_steps", "2"])
    assert cli.model.hparams["in_chans"] == 8
    assert len(cli.model.hparams["mean"]) == len(cli.model.hparams["std"]) == 8
    assert cli.trainer.global_step == 2


def test_fit_on_fmow_sentinel_and_export(tmp_path: Path) -> None:
    # The fmow-sentinel preset: 13-band GeoTIFFs listed in CSVs; in_chans 13 flows into the model,
    # per-band statistics are estimated from the images, and the exported weights name the bands
    # and the reflectance scale.
    import json

    from geossl.datasets.fmow.constants import FMOW_SENTINEL_BANDS
    from geossl.weights import export_weights

    root = tmp_path / "fmow-sentinel"
    generate_fmow_sentinel_sample(root, locations=8, seed=1, image_size=(16, 24))
    args = tiny_args(root, tmp_path, "--trainer.max_steps", "2", "--data.num_geo_clusters", "2")
    cli = run_pretrain(build_args(args, "fmow-sentinel"))
    assert cli.datamodule.hparams["product"] == "sentinel"
    assert cli.model.hparams["in_chans"] == 13
    assert len(cli.model.hparams["mean"]) == len(cli.model.hparams["std"]) == 13
    assert cli.trainer.global_step == 2
    ckpt = Path(str(cli.trainer.log_dir)) / "checkpoints" / "last.ckpt"
    exported = export_weights(ckpt, tmp_path / "weights")
    meta = json.loads(exported.metadata.read_text())
    assert meta["bands"] == list(FMOW_SENTINEL_BANDS)
    assert meta["normalization"]["scale"] == pytest.approx(1e-4)
    assert len(meta["normalization"]["mean"]) == 13


def test_fit_on_a_raster_time_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The rasters preset swaps the data module (class_path); in_chans and the geo-cluster count
    # still flow from the data to the model. Raster pairs share one canvas, so the temporal SCRL
    # recipe (which sets data.shared_canvas, an fMoW key the raster module accepts) runs too.
    stack = generate_raster_timeseries_sample(tmp_path / "stack", num_dates=4)
    with pytest.raises(SystemExit):
        run_pretrain(build_args(["--data.paths", str(stack.root), "--print_config"], "rasters"))
    printed = capsys.readouterr().out
    assert "class_path: geossl.datamodules.RasterTimeSeriesDataModule" in printed
    # The defaults are the raster module's own, not fMoW's (shared_canvas is false there).
    assert "shared_canvas: true" in printed
    args = [
        "--config",
        str(RASTERS_TINY),
        "--data.paths",
        str(stack.root),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
    ]
    tscrl = REPO / "configs" / "pretrain" / "ablations" / "all_tscrl.yaml"
    small_boxes = ["--model.loss_options", "{scrl: {temporal: true, min_size: 8}}"]
    cli = run_pretrain([*args, "--config", str(tscrl), *small_boxes])
    assert isinstance(cli.datamodule, RasterTimeSeriesDataModule)
    assert cli.model.hparams["in_chans"] == 4
    assert cli.model.hparams["num_geo_clusters"] == 4
    assert cli.trainer.global_step == 2
    metrics = (Path(str(cli.trainer.log_dir)) / "metrics.csv").read_text()
    assert "train/loss_tp" in metrics
    assert "train/loss_scrl" in metrics
    nulls = ["--model.mean", "null", "--model.std", "null", "--model.normalization", "imagenet"]
    with pytest.raises(ValueError, match=r"model\.normalization=imagenet needs model\.in_chans=3"):
        run_pretrain([*args, *nulls])


def test_pretraining_skips_a_raster_whose_tiles_are_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The header opens, the tiles are cut: a rasterio traceback from the loader before.
    stack = generate_raster_timeseries_sample(tmp_path / "stack", num_dates=4)
    cut = cut_tiles(sorted(Path(stack.root).rglob("*.tif"))[1])
    save_dir = ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    cli = run_pretrain(["--config", str(RASTERS_TINY), "--data.paths", str(stack.root), *save_dir])
    assert cli.trainer.global_step == 2
    assert cli.datamodule.rasters.skipped.examples == {"truncated file": [str(cut)]}
    assert "1 of 4 files skipped" in capsys.readouterr().err


def test_data_class_path_is_the_last_one_given(tmp_path: Path) -> None:
    rasters = "geossl.datamodules.RasterTimeSeriesDataModule"
    assert data_class_path([]) == DEFAULT_DATAMODULE
    assert data_class_path(["--config", str(TINY), "--data.root", "x"]) == DEFAULT_DATAMODULE
    assert data_class_path(build_args(["--data.paths", "x"], "rasters")) == rasters
    assert data_class_path([f"--config={RASTERS_TINY}", "--data.batch_size", "2"]) == rasters
    assert data_class_path(["--config", str(RASTERS_TINY), "--data", "Other"]) == "Other"
    assert data_class_path(["--data", "{class_path: A, init_args: {}}"]) == "A"
    assert data_class_path(["--data.class_path=B", "--config", str(tmp_path / "no.yaml")]) == "B"


def test_resume_never_unpickles_the_checkpoint(
    fmow_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": PicklePayload(marker)}, evil)
    # The variable only changes torch.load's default: the explicit weights_only=True still holds.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused: it holds pickled Python"):
        run_pretrain(tiny_args(fmow_sample, tmp_path / "runs", "--ckpt_path", str(evil)))
    assert not marker.exists()
