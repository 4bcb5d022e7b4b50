"""The one strict loader: every wrapper of a ResNet trunk, gaps, extras and shapes refused."""

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from torch import Tensor
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from geossl.weights import check_backbone_weights, load_state_dict_strict


def resnet18_state(seed: int = 0) -> dict[str, Tensor]:
    torch.manual_seed(seed)
    return dict(timm.create_model("resnet18", num_classes=0).state_dict())


@pytest.mark.parametrize("trunk_kind", ["timm", "detection", "smp"])
def test_trunk_loading_is_exact_for_every_wrapper(trunk_kind: str) -> None:
    state = resnet18_state(seed=3)
    trunk: torch.nn.Module
    if trunk_kind == "timm":
        trunk = timm.create_model("resnet18", num_classes=0)
    elif trunk_kind == "detection":  # FrozenBatchNorm2d: no num_batches_tracked
        trunk = resnet_fpn_backbone(backbone_name="resnet18", weights=None).body
    else:
        trunk = smp.Unet("resnet18", encoder_weights=None, classes=2).encoder
    load_state_dict_strict(trunk, state, source="w.pth")
    loaded = trunk.state_dict()
    for key, value in state.items():
        if key in loaded:
            assert torch.equal(loaded[key], value), key
        else:
            assert key.endswith("num_batches_tracked"), key


def test_trunk_loading_refuses_gaps_and_extras() -> None:
    trunk = timm.create_model("resnet18", num_classes=0)
    state = resnet18_state()
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    with pytest.raises(ValueError, match=r"w.pth: keys do not match timm 'resnet18': \d+ missing"):
        load_state_dict_strict(trunk, partial, source="w.pth")
    with pytest.raises(ValueError, match=r"1 unexpected \(head\.weight\)"):
        load_state_dict_strict(trunk, {**state, "head.weight": torch.zeros(1)}, source="w.pth")
    bad = {**state, "conv1.weight": torch.zeros(64, 4, 7, 7)}
    with pytest.raises(ValueError, match="in_chans mismatch: the weights have 4 input bands"):
        load_state_dict_strict(trunk, bad, source="w.pth")
    bad = {**state, "bn1.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"shape mismatch .*bn1\.weight \(3,\) vs \(64,\)"):
        load_state_dict_strict(trunk, bad, source="w.pth")


def test_backbone_check_needs_no_model_memory() -> None:
    state = resnet18_state()
    check_backbone_weights(state, "resnet18", 3, source="w.pth")
    with pytest.raises(ValueError, match=r"w.pth: keys do not match timm 'resnet34'"):
        check_backbone_weights(state, "resnet34", 3, source="w.pth")
