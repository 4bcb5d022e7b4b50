"""``geossl pretrain`` end to end on the generated sample: fit, checkpoint, resume, errors."""

from pathlib import Path

import pytest
import torch

from geossl.cli import build_args, run_pretrain
from geossl.configs import list_presets, preset_path
from geossl.datasets.fmow_sample import generate_fmow_sample

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "conf" / "fmow_tiny.yaml"


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
    assert {"fmow", "fmow_demo"} <= set(list_presets())
    assert build_args(["--trainer.max_epochs", "1"], "fmow")[:2] == [
        "--config",
        str(preset_path("fmow")),
    ]


def test_fit_checkpoint_and_resume(fmow_sample: Path, tmp_path: Path) -> None:
    cli = run_pretrain(tiny_args(fmow_sample, tmp_path))
    trainer = cli.trainer
    assert trainer.global_step == 4
    run_dir = Path(str(trainer.log_dir))
    metrics = (run_dir / "metrics.csv").read_text()
    for key in ("train_loss", "train/loss_tp", "train/loss_geo", "train/embedding_std"):
        assert key in metrics
    assert (run_dir / "config.yaml").is_file()

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


def test_bad_config_value_fails_before_training(fmow_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.queue_size"):
        run_pretrain(tiny_args(fmow_sample, tmp_path, "--model.queue_size", "-5"))
    with pytest.raises(ValueError, match=r"model\.backbone"):
        run_pretrain(tiny_args(fmow_sample, tmp_path, "--model.backbone", "resnet5000"))


def test_too_many_geo_clusters_names_the_key(fmow_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.num_geo_clusters"):
        run_pretrain(tiny_args(fmow_sample, tmp_path, "--data.num_geo_clusters", "500"))


def test_fit_on_fmow_full_multispectral(tmp_path: Path) -> None:
    # fMoW-full: 8-band 11-bit _ms.tif read through rasterio; in_chans flows from the data to the
    # model, and a band count without normalisation statistics is refused naming the key.
    root = tmp_path / "fmow-full"
    generate_fmow_sample(root, locations=10, seed=1, full=True, image_size=(64, 96))
    args = tiny_args(root, tmp_path, "--data.product", "ms")
    with pytest.raises(ValueError, match=r"model\.mean"):
        run_pretrain(args)
    stats = ["--model.mean", "[" + ",".join(["0.3"] * 8) + "]"]
    stats += ["--model.std", "[" + ",".join(["0.2"] * 8) + "]"]
    cli = run_pretrain([*args, *stats, "--trainer.max_steps", "2"])
    assert cli.model.hparams["in_chans"] == 8
    assert cli.trainer.global_step == 2
