"""Backbones from timm, with registry-checked names.

A backbone is a plain timm model created with ``num_classes=0``: calling it returns pooled
features ``[B, num_features]``, and its state dict has timm's own keys (``conv1.weight``,
``layer1.0.conv1.weight``, ... no ``fc``), the layout torchgeo's pretrained weights use.
"""

import difflib
from collections.abc import Callable
from typing import cast

import timm
from torch import Tensor, nn

from geossl.utils.checks import check_at_least

__all__ = [
    "check_backbone_name",
    "create_backbone",
    "forward_feature_map",
    "get_num_features",
    "pool_feature_map",
]


def check_backbone_name(name: str) -> None:
    """Check that ``name`` is a timm architecture, with or without a pretrained tag.

    Args:
        name: a timm model name such as ``"resnet50"`` or ``"resnet50.a1_in1k"``.

    Raises:
        ValueError: if timm does not know the name; the message lists the closest matches.
    """
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean one of {close}?" if close else "; see timm.list_models()"
    raise ValueError(f"unknown backbone {name!r}{hint}")


def create_backbone(name: str, in_chans: int = 3, pretrained: bool = False) -> nn.Module:
    """Create a timm backbone that returns pooled features.

    Args:
        name: timm model name (e.g. ``"resnet50"``, the GeoSSL backbone; ``"resnet18"`` for tests).
        in_chans: number of input bands (3 for RGB; 4 / 8 / 13 for multispectral). With
            ``pretrained=True`` and ``in_chans != 3`` timm adapts the first convolution's weights.
        pretrained: load timm's default pretrained weights (needs the network or the HF cache).

    Returns:
        The timm model with ``num_classes=0``: ``model(x)`` maps ``[B, in_chans, H, W]`` to
        ``[B, model.num_features]`` (e.g. 2048 for ResNet-50). See
        [`get_num_features`][geossl.models.backbones.get_num_features].

    Raises:
        ValueError: if the name is unknown (with close matches) or ``in_chans < 1``.
    """
    check_at_least("in_chans", in_chans, 1)
    check_backbone_name(name)
    model: nn.Module = timm.create_model(
        name, pretrained=pretrained, in_chans=in_chans, num_classes=0
    )
    get_num_features(model)  # fail early if the model does not expose its feature size
    return model


def get_num_features(model: nn.Module) -> int:
    """Size of the pooled features of a timm backbone.

    Args:
        model: a model from [`create_backbone`][geossl.models.backbones.create_backbone].

    Returns:
        ``model.num_features`` (timm's attribute).

    Raises:
        TypeError: if the model has no integer ``num_features`` attribute.
    """
    num_features = getattr(model, "num_features", None)
    if not isinstance(num_features, int):
        raise TypeError(f"{type(model).__name__} has no integer attribute 'num_features'")
    return num_features


def forward_feature_map(model: nn.Module, x: Tensor) -> Tensor:
    """Un-pooled features of a timm backbone (timm's ``forward_features``).

    Args:
        model: a model from [`create_backbone`][geossl.models.backbones.create_backbone].
        x: ``[B, C, H, W]`` images.

    Returns:
        ``[B, num_features, H / s, W / s]`` for CNNs (``s = 32`` for ResNets: C5), tokens
        ``[B, N, num_features]`` for ViTs.
    """
    forward_features = cast(Callable[[Tensor], Tensor], model.forward_features)
    return forward_features(x)


def pool_feature_map(model: nn.Module, feature_map: Tensor) -> Tensor:
    """Pool a feature map from `forward_feature_map` as ``model(x)`` would.

    ``pool_feature_map(m, forward_feature_map(m, x))`` equals ``m(x)`` for a model built with
    ``num_classes=0``, so a step that needs both the map and the pooled vector runs the network
    once.

    Args:
        model: a model from [`create_backbone`][geossl.models.backbones.create_backbone].
        feature_map: output of [`forward_feature_map`][geossl.models.backbones.forward_feature_map].

    Returns:
        ``[B, num_features]`` pooled features.
    """
    forward_head = cast(Callable[[Tensor], Tensor], model.forward_head)
    return forward_head(feature_map)
