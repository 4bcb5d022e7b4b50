"""--weights resolution, first-conv adaptation and strict trunk loading for downstream models."""

from pathlib import Path
from typing import Any, ClassVar

import pytest
import timm
import torch
from torch import Tensor

from geossl.transforms.augmentation import IMAGENET_MEAN
from geossl.weights import (
    InitWeights,
    adapt_first_conv,
    resolve_init_weights,
)


def resnet18_state(seed: int = 0) -> dict[str, Tensor]:
    torch.manual_seed(seed)
    return dict(timm.create_model("resnet18", num_classes=0).state_dict())


@pytest.fixture
def bare_file(tmp_path: Path) -> Path:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state(), path)
    return path


def test_random_has_no_tensors_and_imagenet_normalisation() -> None:
    weights = resolve_init_weights("random", backbone="resnet18")
    assert weights.state_dict is None
    assert weights.kind == "random"
    assert weights.mean == IMAGENET_MEAN
    four = resolve_init_weights("random", backbone="resnet18", in_chans=4)
    assert four.mean == ()  # unknown for 4 bands: the task must be given model.mean / std
    assert four.for_in_chans(4).in_chans == 4


def test_file_is_read_strictly_with_its_hash(bare_file: Path) -> None:
    weights = resolve_init_weights(bare_file, backbone="resnet18")
    assert weights.kind == "file"
    assert weights.state_dict is not None
    want = resnet18_state()
    assert set(weights.state_dict) == set(want)
    assert all(torch.equal(weights.state_dict[k], v) for k, v in want.items())
    assert weights.sha256 is not None
    assert weights.name == f"resnet18.pth ({weights.sha256})"


def test_file_for_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(timm.create_model("resnet34", num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"r34.pth: keys do not match .*\d+ unexpected"):
        resolve_init_weights(path, backbone="resnet18")


def test_missing_file_and_unknown_backbone() -> None:
    with pytest.raises(FileNotFoundError, match=r"--weights nope.pth: no such file"):
        resolve_init_weights("nope.pth", backbone="resnet18")
    with pytest.raises(ValueError, match="unknown backbone"):
        resolve_init_weights("random", backbone="resnet_18")


def test_torchgeo_name_goes_through_torchgeo(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {**resnet18_state(), "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}

    class FakeWeights:
        meta: ClassVar[dict[str, Any]] = {"model": "resnet18", "in_chans": 3}

        def get_state_dict(self, progress: bool) -> dict[str, Tensor]:
            return state

    import torchgeo.models

    seen: list[str] = []

    def get_weight(name: str) -> FakeWeights:
        seen.append(name)
        return FakeWeights()

    monkeypatch.setattr(torchgeo.models, "get_weight", get_weight)
    weights = resolve_init_weights("ResNet18_Weights.SENTINEL2_RGB_MOCO", backbone="resnet18")
    assert seen == ["ResNet18_Weights.SENTINEL2_RGB_MOCO"]
    assert weights.kind == "torchgeo"
    assert weights.state_dict is not None
    assert "fc.weight" not in weights.state_dict  # a classifier never reaches the trunk
    with pytest.raises(ValueError, match="these are resnet18 weights, but the backbone is"):
        resolve_init_weights("ResNet18_Weights.SENTINEL2_RGB_MOCO", backbone="resnet50")


def test_imagenet_uses_timm_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real = timm.create_model

    def create_model(name: str, **kwargs: Any) -> Any:
        calls.append({"name": name, **kwargs})
        kwargs["pretrained"] = False  # no network in tests
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)
    weights = resolve_init_weights("imagenet", backbone="resnet18")
    assert calls == [{"name": "resnet18", "pretrained": True, "num_classes": 0}]
    assert weights.kind == "imagenet"
    assert weights.in_chans == 3
    assert weights.state_dict is not None
    assert len(weights.mean) == 3


def test_adapt_first_conv_follows_timm_rule() -> None:
    state = resnet18_state()
    rgb = state["conv1.weight"]  # [64, 3, 7, 7]
    one = adapt_first_conv(state, "resnet18", 1)["conv1.weight"]
    torch.testing.assert_close(one, rgb.sum(dim=1, keepdim=True))
    five = adapt_first_conv(state, "resnet18", 5)["conv1.weight"]
    want = torch.cat([rgb, rgb[:, :2]], dim=1) * (3 / 5)  # R G B R G, scaled by 3/N
    torch.testing.assert_close(five, want)
    # A grey image through the summed kernel gives the RGB model's first activation exactly.
    grey = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(
        torch.conv2d(grey, one), torch.conv2d(grey.expand(1, 3, 16, 16), rgb), atol=1e-5, rtol=0
    )
    others = adapt_first_conv(state, "resnet18", 1)
    assert all(torch.equal(others[k], v) for k, v in state.items() if k != "conv1.weight")


def test_band_mismatch_needs_adapt() -> None:
    weights = InitWeights(
        "w.pth", "file", "resnet18", 3, resnet18_state(), IMAGENET_MEAN, (1, 1, 1)
    )
    with pytest.raises(ValueError, match=r"w.pth: in_chans mismatch: .* set model.adapt_in_chans"):
        weights.for_in_chans(1)
    adapted = weights.for_in_chans(1, adapt=True)
    assert adapted.in_chans == 1
    assert adapted.adapted_from == 3
    assert adapted.mean == ()  # the RGB statistics do not describe the new band
    assert weights.for_in_chans(3) is weights
