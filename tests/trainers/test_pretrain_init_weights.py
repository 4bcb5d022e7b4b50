"""GeoSSLTask(init_weights=...): the backbone (and key encoder) start from a weight file."""

import warnings
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch import Tensor

from geossl.cli.pretrain_cli import run_pretrain
from geossl.synthetic.rasters import generate_raster_timeseries_sample
from geossl.trainers import GeoSSLTask
from geossl.weights import ExportedWeights, export_weights
from geossl.weights.resolve import adapt_first_conv
from tests.pretrain_helpers import REPO, shared_tiny_checkpoint, train_tiny_checkpoint

TINY_TASK: dict[str, Any] = {
    "backbone": "resnet18",
    "queue_size": 64,
    "proj_hidden_dim": 64,
    "proj_dim": 32,
    "crop_size": 32,
    "num_geo_clusters": 4,
}


@pytest.fixture(scope="module")
def exported(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportedWeights:
    checkpoint = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)
    return export_weights(checkpoint, tmp_path_factory.mktemp("export"))


def file_tensors(path: Path) -> dict[str, Tensor]:
    loaded: dict[str, Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return loaded


def assert_same_tensors(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_backbone_and_key_encoder_start_from_the_file(exported: ExportedWeights) -> None:
    task = GeoSSLTask(**TINY_TASK, init_weights=str(exported.weights))
    want = file_tensors(exported.weights)
    assert_same_tensors(dict(task.backbone.state_dict()), want)
    assert task.backbone_momentum is not None
    assert_same_tensors(dict(task.backbone_momentum.state_dict()), want)
    assert "init_weights" not in task.hparams  # a local path: not needed to load a checkpoint
    assert task.init_weights_info is not None
    assert task.init_weights_info["sha256"] == exported.meta.sha256_full
    assert task.init_weights_info["file"] == exported.weights.name


def test_timm_file_with_classifier(tmp_path: Path) -> None:
    model = timm.create_model("resnet18")  # fc included, as timm's ImageNet files
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(model.state_dict(), path)
    task = GeoSSLTask(**TINY_TASK, init_weights=str(path))
    want = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert_same_tensors(dict(task.backbone.state_dict()), want)
    # Any other extra tensor is an error, not silently dropped.
    torch.save({**model.state_dict(), "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"model\.init_weights: .*1 unexpected \(extra\.weight\)"):
        GeoSSLTask(**TINY_TASK, init_weights=str(path))


def test_mismatches_name_model_init_weights(exported: ExportedWeights, tmp_path: Path) -> None:
    path = str(exported.weights)
    with pytest.raises(ValueError, match=r"model\.init_weights: .* 3-band .* model\.in_chans=4"):
        GeoSSLTask(**TINY_TASK, in_chans=4, mean=[0.3] * 4, std=[0.2] * 4, init_weights=path)
    with pytest.raises(ValueError, match=r"model\.init_weights: .*resnet18 weights .*resnet34"):
        GeoSSLTask(**{**TINY_TASK, "backbone": "resnet34"}, init_weights=path)
    with pytest.raises(FileNotFoundError, match=r"model\.init_weights: .*missing\.pth"):
        GeoSSLTask(**TINY_TASK, init_weights=str(tmp_path / "missing.pth"))


def test_other_normalisation_warns(exported: ExportedWeights) -> None:
    with pytest.warns(UserWarning, match=r"model\.init_weights: .*normalised with mean="):
        GeoSSLTask(**TINY_TASK, mean=[0.5] * 3, std=[0.25] * 3, init_weights=str(exported.weights))


def test_pretrain_from_init_weights_through_the_cli(
    exported: ExportedWeights, fmow_sample: Path, tmp_path: Path
) -> None:
    checkpoint = train_tiny_checkpoint(
        fmow_sample,
        tmp_path,
        "--model.init_weights",
        str(exported.weights),
        "--trainer.max_steps",
        "1",
    )
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert "init_weights" not in raw["hyper_parameters"]
    assert raw["geossl_init_weights"]["sha256"] == exported.meta.sha256_full
    again = export_weights(checkpoint, tmp_path / "export")
    assert again.meta.info["init_weights"]["file"] == exported.weights.name
    # The checkpoint loads without the file (init_weights is not a saved hyper-parameter).
    restored = GeoSSLTask.load_from_checkpoint(checkpoint, map_location="cpu")
    assert restored.init_weights_info == raw["geossl_init_weights"]


def test_adapt_in_chans_adapts_the_first_convolution(
    exported: ExportedWeights, tmp_path: Path
) -> None:
    path = str(exported.weights)
    rgb = file_tensors(exported.weights)
    with pytest.raises(
        ValueError, match=r"3-band weights but model\.in_chans=4: set model\.adapt_in"
    ):
        GeoSSLTask(**TINY_TASK, in_chans=4, init_weights=path)
    with warnings.catch_warnings():
        # The file's RGB normalisation does not apply to 4 bands: no mismatch warning.
        warnings.simplefilter("error")
        task = GeoSSLTask(**TINY_TASK, in_chans=4, init_weights=path, adapt_in_chans=True)
    want = adapt_first_conv(rgb, "resnet18", 4)
    assert_same_tensors(dict(task.backbone.state_dict()), want)
    assert task.backbone_momentum is not None
    assert_same_tensors(dict(task.backbone_momentum.state_dict()), want)
    # timm's rule: RGB kernels repeated cyclically (R, G, B, R) and scaled by 3 / N.
    conv = task.backbone.state_dict()["conv1.weight"]
    assert torch.allclose(conv[:, 3], rgb["conv1.weight"][:, 0] * 0.75)
    assert task.init_weights_info is not None
    assert task.init_weights_info["adapted_from"] == 3
    assert task.normalization_source == "data"  # the RGB statistics are not reused
    grey = GeoSSLTask(**TINY_TASK, in_chans=1, init_weights=path, adapt_in_chans=True)
    summed = rgb["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.allclose(grey.backbone.state_dict()["conv1.weight"], summed)
    same = GeoSSLTask(**TINY_TASK, init_weights=path, adapt_in_chans=True)
    assert same.init_weights_info is not None
    assert same.init_weights_info["adapted_from"] is None  # nothing to adapt
    four = tmp_path / "four.pth"
    torch.save(timm.create_model("resnet18", num_classes=0, in_chans=4).state_dict(), four)
    with pytest.raises(ValueError, match=r"4-band weights .*only 3-band weights can be adapted"):
        GeoSSLTask(**TINY_TASK, init_weights=str(four), adapt_in_chans=True)


def test_adapted_init_weights_through_the_cli(exported: ExportedWeights, tmp_path: Path) -> None:
    stack = generate_raster_timeseries_sample(tmp_path / "stack", num_dates=3)  # 4 bands
    cli = run_pretrain(
        [
            "--config",
            str(REPO / "tests" / "conf" / "rasters_tiny.yaml"),
            "--data.paths",
            str(stack.root),
            "--data.cache_dir",
            str(tmp_path / "cache"),
            "--model.mean",
            "null",
            "--model.std",
            "null",
            "--model.normalization_samples",
            "8",
            "--model.init_weights",
            str(exported.weights),
            "--model.adapt_in_chans",
            "true",
            "--trainer.max_steps",
            "1",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"),
        ]
    )
    callback = cli.trainer.checkpoint_callback
    assert callback is not None
    raw = torch.load(getattr(callback, "last_model_path", ""), map_location="cpu")
    assert raw["geossl_init_weights"]["adapted_from"] == 3
    assert raw["geossl_init_weights"]["sha256"] == exported.meta.sha256_full
    assert len(raw["hyper_parameters"]["mean"]) == 4  # the data's statistics
