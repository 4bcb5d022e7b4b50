"""Backbone weights for downstream models: ``--weights random|imagenet|TORCHGEO_NAME|FILE``.

Every downstream task (fMoW classification, xView detection, SpaceNet segmentation) starts its
backbone from an [`InitWeights`][geossl.weights.resolve.InitWeights], resolved once from what the
user typed:

==========================================  ================================================
``random``                                  random initialisation (the papers' lower bound)
``imagenet``                                timm's ImageNet weights of the backbone (network or
                                            the Hugging Face cache)
``ResNet50_Weights.FMOW_RGB_GASSL`` (any    a torchgeo weights enum member (downloaded and
torchgeo ``*_Weights.*`` name)              hash-checked by torchgeo)
a path                                      a geossl pretraining checkpoint, a geossl export, a
                                            torchgeo-style checkpoint, a timm file or a bare state
                                            dict
                                            (`geossl.weights.read_weights`)
==========================================  ================================================

The state dict is always timm's ResNet layout without classifier (``conv1.weight``,
``bn1.*``, ``layer1.0.conv1.weight``, ...), the layout of torchvision's ResNet trunk, of the
detection backbone's ``body`` and of segmentation_models_pytorch's ResNet encoders, so one loader
([`load_state_dict_strict`][geossl.weights.load_state_dict_strict]) fills all three, strictly: a
tensor that the weights do not provide is an error, never a silent random initialisation.

Band count: weights trained on 3 bands do not fit a 1-band (SpaceNet pan) or 13-band (Sentinel-2)
model. [`InitWeights.for_in_chans`][geossl.weights.resolve.InitWeights.for_in_chans] adapts the
first convolution only when asked (``adapt=True``), with timm's documented rule
([`adapt_first_conv`][geossl.weights.resolve.adapt_first_conv]).
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import timm
from timm.models import adapt_input_conv
from torch import Tensor, nn

from geossl.models.backbones import check_backbone_name
from geossl.transforms.augmentation import IMAGENET_MEAN, IMAGENET_STD
from geossl.utils.checks import check_at_least

from .loading import (
    _first_conv_key,
    check_backbone_weights,
    classifier_prefixes,
    load_state_dict_strict,
)
from .readers import read_weights

__all__ = [
    "InitWeights",
    "LoadedInitWeights",
    "adapt_first_conv",
    "load_init_weights",
    "resolve_init_weights",
]


#: A torchgeo weights name: ``ResNet50_Weights.FMOW_RGB_GASSL``.
_TORCHGEO_NAME = re.compile(r"^[A-Za-z0-9]+_Weights\.[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class InitWeights:
    """Backbone weights to start a downstream model from.

    Attributes:
        spec: what the user gave (``"random"``, ``"imagenet"``, a torchgeo name or a path).
        kind: ``"random"``, ``"imagenet"``, ``"torchgeo"`` or ``"file"``.
        backbone: timm architecture (``"resnet50"``).
        in_chans: input bands the weights expect (the model's, for ``random``).
        state_dict: timm-key tensors without classifier; None for ``random``.
        mean: per-band mean of the ``[0, 1]`` input the weights were trained on; empty when
            unknown (then the task's ``mean`` / ``std`` must be given).
        std: per-band standard deviation, like `mean`.
        sha256: short hash that identifies the weights (None for ``random`` / ``imagenet``).
        adapted_from: band count of the weights before
            [`for_in_chans`][geossl.weights.resolve.InitWeights.for_in_chans] changed it, or None.
    """

    spec: str
    kind: str
    backbone: str
    in_chans: int
    state_dict: dict[str, Tensor] | None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    sha256: str | None = None
    adapted_from: int | None = None

    @property
    def name(self) -> str:
        """Short label for tables and logs.

        ``random``, ``imagenet``, the torchgeo name, or the file name with its hash.
        """
        if self.kind == "file":
            suffix = f" ({self.sha256})" if self.sha256 else ""
            return f"{Path(self.spec).name}{suffix}"
        return self.spec

    def for_in_chans(self, in_chans: int, *, adapt: bool = False) -> "InitWeights":
        """These weights for a model with ``in_chans`` input bands.

        Args:
            in_chans: the model's band count.
            adapt: allow a different band count, adapting the first convolution with
                [`adapt_first_conv`][geossl.weights.resolve.adapt_first_conv] (the normalisation is
                then unknown: give it to the task).

        Returns:
            ``self`` when the counts agree (or for ``random``), else adapted weights.

        Raises:
            ValueError: if the counts differ and ``adapt`` is False; the message says how to fix it.
        """
        check_at_least("in_chans", in_chans, 1)
        if self.state_dict is None:
            return replace(self, in_chans=in_chans)
        if in_chans == self.in_chans:
            return self
        if not adapt:
            raise ValueError(
                f"{self.spec}: in_chans mismatch: the weights have {self.in_chans} input bands but "
                f"the data has {in_chans}; set model.adapt_in_chans=true to adapt the first "
                "convolution (docs/finetune.md), or give the data "
                f"{self.in_chans} bands"
            )
        state = adapt_first_conv(self.state_dict, self.backbone, in_chans)
        return replace(
            self,
            in_chans=in_chans,
            state_dict=state,
            mean=(),
            std=(),
            adapted_from=self.in_chans,
        )


def adapt_first_conv(
    state_dict: Mapping[str, Tensor], backbone: str, in_chans: int
) -> dict[str, Tensor]:
    """Adapt the first convolution of ``state_dict`` to ``in_chans`` input bands.

    The rule is timm's (``timm.models.adapt_input_conv``), the one ``timm.create_model(...,
    pretrained=True, in_chans=N)`` applies to ImageNet weights:

    - 1 band from 3: the sum of the three kernels, $W' = W_R + W_G + W_B$, so a grey
      image (R = G = B = x) gives exactly the activations the RGB weights give;
    - N bands from 3: the RGB kernels repeated cyclically (R, G, B, R, G, B, ...) and scaled by
      $3 / N$, so the activation keeps its magnitude when the bands are alike.

    Args:
        state_dict: timm-key weights.
        backbone: timm architecture (to find the first convolution).
        in_chans: the new band count.

    Returns:
        A new state dict; only the first convolution's weight differs.
    """
    key = _first_conv_key(backbone, list(state_dict))
    if key is None:
        raise ValueError(f"{backbone}: no first convolution in the weights")
    adapted = dict(state_dict)
    weight = state_dict[key]
    adapted[key] = adapt_input_conv(in_chans, weight.float()).to(weight.dtype).contiguous()
    return adapted


def _imagenet(backbone: str, in_chans: int) -> InitWeights:
    """The ImageNet weights timm has for ``backbone`` (3 bands)."""
    model = timm.create_model(backbone, pretrained=True, num_classes=0)
    classifier = classifier_prefixes(backbone)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(classifier)}
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    return InitWeights("imagenet", "imagenet", backbone, 3, state, mean, std)


def _torchgeo(spec: str, backbone: str) -> InitWeights:
    """A torchgeo weights enum member by name (``ResNet50_Weights.FMOW_RGB_GASSL``)."""
    import torchgeo.models

    try:
        weights = torchgeo.models.get_weight(spec)
    except (KeyError, ValueError, AttributeError) as error:
        raise ValueError(f"--weights {spec}: not a torchgeo weights name ({error})") from None
    meta = dict(weights.meta)
    arch = str(meta.get("model", backbone)).split(".")[0]
    if arch != backbone:
        raise ValueError(
            f"--weights {spec}: these are {arch} weights, but the backbone is {backbone}"
        )
    classifier = classifier_prefixes(arch)
    raw = weights.get_state_dict(progress=True)
    state = {k: v for k, v in raw.items() if not k.startswith(classifier)}
    in_chans = int(meta.get("in_chans", 3))
    check_backbone_weights(state, arch, in_chans, source=spec)
    # torchgeo's RGB SSL weights (GASSL, SeCo, ...) expect ImageNet-normalised [0, 1] input.
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((), ())
    return InitWeights(spec, "torchgeo", arch, in_chans, state, mean, std)


def resolve_init_weights(
    spec: str | os.PathLike[str], *, backbone: str | None = "resnet50", in_chans: int = 3
) -> InitWeights:
    """Resolve ``--weights`` into backbone tensors (see the module doc for the accepted forms).

    Args:
        spec: ``"random"``, ``"imagenet"``, a torchgeo weights name or a weights file.
        backbone: timm architecture of the downstream model; a file or torchgeo name for another
            architecture is an error. None: the file's architecture (``resnet50`` for
            ``random``, ``imagenet`` and torchgeo names).
        in_chans: band count of a ``random`` backbone.

    Returns:
        The weights ([`InitWeights.for_in_chans`][geossl.weights.resolve.InitWeights.for_in_chans]
        fits them to the data's band count).

    Raises:
        FileNotFoundError: if ``spec`` looks like a path and the file does not exist.
        ValueError: on an unknown backbone, a weights file for another architecture, or an
            unreadable file (the message names it).
    """
    text = os.fspath(spec)
    path = Path(text)
    from_file = backbone is None and path.is_file()
    if backbone is None:
        backbone = "resnet50"
    check_backbone_name(backbone)
    if text == "random":
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((), ())
        return InitWeights("random", "random", backbone, in_chans, None, mean, std)
    if text == "imagenet":
        return _imagenet(backbone, in_chans)
    if _TORCHGEO_NAME.match(text) and not path.exists():
        return _torchgeo(text, backbone)
    if not path.is_file():
        raise FileNotFoundError(
            f"--weights {text}: no such file (give random, imagenet, a torchgeo weights name "
            "such as ResNet50_Weights.FMOW_RGB_GASSL, or a geossl checkpoint / exported .pth)"
        )
    state, meta = read_weights(path, backbone=None if from_file else backbone)
    arch = meta.backbone.split(".")[0]
    if from_file:
        check_backbone_name(arch)
    elif arch != backbone:
        raise ValueError(f"{path}: these are {arch} weights, but the backbone is {backbone}")
    check_backbone_weights(state, arch, meta.in_chans, source=str(path))
    known = meta.has_normalization
    return InitWeights(
        text,
        "file",
        arch,
        meta.in_chans,
        state,
        tuple(meta.mean) if known else (),
        tuple(meta.std) if known else (),
        meta.sha256,
    )


@dataclass(frozen=True)
class LoadedInitWeights:
    """What `load_init_weights` loaded into a pretraining backbone.

    Attributes:
        info: what the checkpoints record as ``geossl_init_weights``: file name, sha256,
            backbone, method, format and ``adapted_from`` (the file's band count when the first
            convolution was adapted, else None).
        normalization: the file's ``(mean, std)`` when it records them and was not adapted.
    """

    info: dict[str, object]
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None


def load_init_weights(
    backbone: nn.Module, path: str, *, backbone_name: str, in_chans: int, adapt_in_chans: bool
) -> LoadedInitWeights:
    """Load ``model.init_weights`` into a pretraining backbone (strict keys).

    Args:
        backbone: the query backbone, built with ``backbone_name`` and ``in_chans``.
        path: the weight file.
        backbone_name: the timm name of ``backbone``.
        in_chans: its band count.
        adapt_in_chans: adapt 3-band weights to ``in_chans``
            ([`adapt_first_conv`][geossl.weights.resolve.adapt_first_conv]).

    Returns:
        The record of what was loaded.

    Raises:
        FileNotFoundError: naming ``model.init_weights`` if the file does not exist.
        ValueError: naming ``model.init_weights`` for another backbone, band count (unless
            ``adapt_in_chans`` adapts 3-band weights) or keys.
    """
    where = f"model.init_weights: {path}"
    try:
        state, meta = read_weights(path, backbone=backbone_name)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"model.init_weights: {err}") from err
    except ValueError as err:
        raise ValueError(f"model.init_weights: {err}") from err
    if meta.backbone.partition(".")[0] != backbone_name.partition(".")[0]:
        raise ValueError(
            f"{where} holds {meta.backbone} weights but model.backbone is {backbone_name}"
        )
    adapted_from: int | None = None
    if meta.in_chans != in_chans:
        if meta.in_chans != 3:
            raise ValueError(
                f"{where} has {meta.in_chans}-band weights but model.in_chans={in_chans} "
                "(only 3-band weights can be adapted to another band count)"
            )
        if not adapt_in_chans:
            raise ValueError(
                f"{where} has 3-band weights but model.in_chans={in_chans}: set "
                "model.adapt_in_chans=true to adapt the first convolution (timm's rule), or "
                "give the model 3 bands"
            )
        state = adapt_first_conv(state, backbone_name, in_chans)
        adapted_from = meta.in_chans
    # The file's classifier (an ImageNet fc / head) was dropped by read_weights; every other
    # tensor must match the backbone exactly.
    load_state_dict_strict(backbone, state, source=where, backbone=backbone_name)
    norm = None
    if meta.has_metadata and meta.has_normalization and adapted_from is None:
        norm = (tuple(meta.mean), tuple(meta.std))
    info: dict[str, object] = {
        "file": Path(path).name,
        "sha256": meta.sha256_full,
        "backbone": meta.backbone,
        "method": meta.method,
        "source_format": meta.source_format,
        "adapted_from": adapted_from,
    }
    return LoadedInitWeights(info, norm)
