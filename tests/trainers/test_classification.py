"""fMoW classification task: weights loaded exactly, linear probe frozen, temporal averaging."""

from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch import Tensor

from geossl.trainers import FMoWClassificationTask
from geossl.trainers.downstream import FROM_CHECKPOINT
from geossl.weights import export_weights
from tests.pretrain_helpers import shared_tiny_checkpoint


@pytest.fixture(scope="module")
def exported_weights(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)
    return export_weights(checkpoint, tmp_path_factory.mktemp("export")).weights


def tiny_task(**kwargs: object) -> FMoWClassificationTask:
    options: dict[str, object] = {"backbone": "resnet18", "num_classes": 5}
    options.update(kwargs)
    return FMoWClassificationTask(**options)  # type: ignore[arg-type]


def test_backbone_tensors_equal_the_exported_weights(exported_weights: Path) -> None:
    task = tiny_task(weights=str(exported_weights))
    exported = torch.load(exported_weights, map_location="cpu", weights_only=True)
    loaded = task.backbone.state_dict()
    assert set(loaded) == set(exported)
    for key, value in exported.items():
        assert torch.equal(loaded[key], value), key
    assert task.init_weights_info is not None
    assert task.init_weights_info["kind"] == "file"
    assert task.init_weights_info["sha256"] in exported_weights.name


def batch(size: int = 4, classes: int = 5, seed: int = 0) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, generator=generator),
        "label": torch.randint(0, classes, (size,), generator=generator),
    }


# The steps run outside a Trainer on purpose (to look at one optimiser step); self.log is a no-op.
@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`:UserWarning")
def test_linear_probe_trains_only_the_classifier() -> None:
    task = tiny_task(mode="linear", lr=1.0, lr_schedule="constant")
    task.train()
    assert not task.backbone.training  # BN statistics stay fixed
    before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    head_before = task.classifier.weight.detach().clone()
    optimizer = task.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(task.classifier.weight), id(task.classifier.bias)}
    loss = task.training_step(batch(), 0)
    loss.backward()
    optimizer.step()
    after = task.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # running stats included
    assert not torch.equal(task.classifier.weight, head_before)
    assert float(head_before.std()) < 0.05  # N(0, 0.01) start


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`:UserWarning")
def test_finetune_updates_the_backbone() -> None:
    task = tiny_task(lr=0.1, lr_schedule="constant")
    task.train()
    before = task.backbone.get_parameter("conv1.weight").detach().clone()
    optimizer = task.configure_optimizers()
    task.training_step(batch(), 0).backward()
    optimizer.step()
    assert not torch.equal(task.backbone.get_parameter("conv1.weight"), before)


def test_temporal_features_average_the_valid_views_only() -> None:
    task = tiny_task().eval()
    images = torch.randn(2, 3, 3, 32, 32)
    views = torch.tensor([[True, True, False], [True, False, False]])
    features = task.features(images, views)
    singles = task.features(images.flatten(0, 1)).view(2, 3, -1)
    torch.testing.assert_close(features[0], singles[0, :2].mean(dim=0))
    torch.testing.assert_close(features[1], singles[1, 0])
    changed = images.clone()
    changed[0, 2] = 100.0  # an empty slot's content must not matter
    torch.testing.assert_close(task.features(changed, views), features)


def test_normalisation_and_augmentation_of_a_batch() -> None:
    task = tiny_task().eval()
    sample = batch(size=2)
    prepared = task._prepare(sample, train=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(prepared, (sample["image"].float() / 255 - mean) / std)
    augmented = task._prepare(sample, train=True)
    assert augmented.shape == prepared.shape
    assert not torch.equal(augmented, prepared)
    temporal = {"image": sample["image"][:, None].expand(2, 3, 3, 32, 32).contiguous()}
    assert task._prepare(temporal, train=True).shape == (2, 3, 3, 32, 32)
    # Batched on the device: a meta batch (whose values cannot be read) goes through.
    assert task._augment(torch.empty(4, 3, 32, 32, device="meta")).shape == (4, 3, 32, 32)


def test_band_adaptation_is_explicit(tmp_path: Path) -> None:
    path = tmp_path / "rgb.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"in_chans mismatch: .* model.adapt_in_chans=true"):
        tiny_task(weights=str(path), in_channels=4)
    with pytest.raises(ValueError, match=r"give model\.mean and model\.std"):
        tiny_task(weights=str(path), in_channels=4, adapt_in_chans=True)
    task = tiny_task(
        weights=str(path), in_channels=4, adapt_in_chans=True, mean=[0.5] * 4, std=[0.2] * 4
    )
    assert task.backbone.get_parameter("conv1.weight").shape[1] == 4
    assert task.init_weights_info is not None
    assert task.init_weights_info["adapted_from"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "frozen"}, "model.mode"),
        ({"lr": 0.0}, "model.lr"),
        ({"min_scale": 0.0}, "model.min_scale"),
        ({"class_names": ["a"]}, "model.class_names has 1 names for 5 classes"),
        ({"mean": [0.5, 0.5]}, "3 values"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_task(**kwargs)


def test_reload_from_checkpoint_keeps_normalisation(tmp_path: Path) -> None:
    task = tiny_task(mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    path = tmp_path / "model.ckpt"
    checkpoint = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "pytorch-lightning_version": "2.6.0",
    }
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    assert checkpoint["geossl_task"] == "fmow-cls"
    reloaded = FMoWClassificationTask.load_from_checkpoint(path, weights=FROM_CHECKPOINT)
    torch.testing.assert_close(
        reloaded.get_buffer("input_mean").flatten(), torch.tensor([0.1, 0.2, 0.3])
    )
    assert reloaded.init_weights_info == task.init_weights_info
    for key, value in task.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_progress_bar_loss_is_a_host_copy_read_on_logging_steps() -> None:
    # A device tensor with prog_bar=True costs a host sync at the end of every step.
    task = tiny_task()
    logged: dict[str, tuple[torch.Tensor, dict[str, Any]]] = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, (value, kw))  # type: ignore[method-assign]
    task.training_step(batch(size=2), 0)
    assert not logged["train_loss"][1].get("prog_bar")
    value, options = logged["loss"]
    assert options["prog_bar"]
    assert value.device.type == "cpu"
    torch.testing.assert_close(value, logged["train_loss"][0].detach())
