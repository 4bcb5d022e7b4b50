"""Pretrained backbone weights: reading every supported file, strict loading, a WeightsEnum.

A backbone weight file is read by :func:`read_weights` into a plain timm state dict
(``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ... no classifier) and a
:class:`WeightsMeta` describing what the weights expect as input. Supported files:

* a geossl pretraining checkpoint (``.ckpt`` of :class:`~geossl.trainers.GeoSSLTask`): the query
  backbone (``backbone.*``; the EMA key encoder is not exported), described by the checkpoint's
  model and data hyper-parameters;
* a geossl export (``{backbone}_{method}-{hash8}.pth`` + ``.json``, see
  :func:`geossl.export.export_weights` and ``docs/export.md``) or its Lightning-style ``.ckpt``;
* a torchgeo-style Lightning checkpoint (``hyper_parameters["model"]`` + ``model.<key>``, e.g. a
  fine-tuned ``ClassificationTask``, or ``hyper_parameters["backbone"]`` +
  ``model.backbone.model.<key>``: the layouts torchgeo's ``extract_backbone`` reads), or a
  ``SemanticSegmentationTask`` checkpoint (its smp encoder, ``model.encoder.<key>``);
* a bare state dict (torchgeo's ``ResNet50_Weights.FMOW_RGB_GASSL`` file, a timm ``.pth`` or
  ``.safetensors``) or a timm ``train.py`` checkpoint (``state_dict`` + ``arch``); without a
  sibling ``.json`` the architecture must be given (``backbone=``) unless the file names it.

Loading is strict (:func:`load_state_dict_strict`): every tensor of the model must come from the
file and every tensor of the file must land in the model; the only keys ever dropped are a
classifier's (``fc.*`` for ResNets, timm's ``pretrained_cfg["classifier"]``), which pretrained
backbones do not use. :class:`GeoSSLWeights` and :func:`resnet50` / :func:`resnet18` mirror
torchgeo's ``ResNet50_Weights`` and ``torchgeo.models.resnet50``.
"""

import argparse
import hashlib
import io
import json
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision.transforms.v2 as T
from torch import Tensor, nn
from torchgeo.models import ResNet50_Weights
from torchvision.models._api import Weights, WeightsEnum

from geossl.models.backbones import check_backbone_name
from geossl.transforms.augmentation import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "RGB_BANDS",
    "UINT8_SCALE",
    "GeoSSLWeights",
    "LocalWeights",
    "WeightsMeta",
    "build_transforms",
    "classifier_prefixes",
    "load_state_dict_strict",
    "pretrain_method",
    "read_weights",
    "resnet18",
    "resnet50",
    "state_dict_bytes",
]

#: Band names of an RGB image (fMoW-rgb JPEGs, torchgeo's GASSL weights, timm's ImageNet weights).
RGB_BANDS: tuple[str, ...] = ("red", "green", "blue")

#: Scale from 8-bit pixel values to ``[0, 1]``.
UINT8_SCALE = 1.0 / 255.0

#: ``format`` of the metadata JSON written by :func:`geossl.export.export_weights`.
METADATA_FORMAT = "geossl-weights"

#: Version of that JSON's layout (bumped on incompatible changes).
METADATA_VERSION = 1


@dataclass(frozen=True)
class WeightsMeta:
    """What a backbone weight file holds and what input it expects.

    The input the weights were trained on is ``x = (raw * scale - mean) / std`` per band, on images
    resized to ``image_size`` (:func:`build_transforms` builds this).

    Attributes:
        backbone: timm model name (``"resnet50"``).
        in_chans: input bands (from the first convolution's weight).
        bands: band names in input order (``("band_1", ...)`` when unknown).
        mean: per-band mean of the ``[0, 1]`` input (empty when unknown, see
            :attr:`has_normalization`).
        std: per-band standard deviation of the ``[0, 1]`` input (empty when unknown).
        scale: factor from raw pixel values to ``[0, 1]`` (1/255 for 8-bit JPEG / PNG, 1/2047 for
            fMoW-full's 11-bit GeoTIFFs).
        image_size: side in pixels of the images the backbone was trained on (the pretraining
            ``crop_size``; 224 for torchgeo's and timm's weights).
        method: pretraining recipe: the active loss terms joined by ``_`` (``"tp_geo"`` is
            GeoSSL's full method, ``"moco"`` MoCo-v2); ``"unknown"`` for a bare file.
        sha256: first 8 hex digits of the SHA-256 of the weight file: of the file itself for a
            ``.pth`` / ``.safetensors``, of the ``.pth`` that :func:`geossl.export.export_weights`
            writes for a checkpoint (so the same weights get the same id from either file).
        source: the file read.
        source_format: ``"geossl-checkpoint"``, ``"geossl-weights"`` (an export's ``.pth`` or
            ``.ckpt``), ``"lightning-checkpoint"`` (torchgeo layout), ``"timm-checkpoint"`` or
            ``"state-dict"``.
        has_metadata: True when bands and normalisation come from the file's metadata (a geossl
            checkpoint or export, or a hand-written ``.json``); False when they are the RGB /
            ImageNet defaults assumed for a bare 3-band file.
        sha256_full: the whole SHA-256 hex digest behind :attr:`sha256`.
        losses: loss term -> weight of the pretraining (empty when unknown).
        dataset: pretraining dataset (``"fmow"``), None when unknown.
        epoch: training epoch of the checkpoint, None when unknown.
        global_step: optimiser steps of the checkpoint, None when unknown.
        info: everything else known: the metadata JSON of an export (see ``docs/export.md``), or
            the checkpoint's hyper-parameters.
    """

    backbone: str
    in_chans: int
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    image_size: int
    method: str
    sha256: str
    source: Path
    source_format: str
    has_metadata: bool
    sha256_full: str
    losses: Mapping[str, float] = field(default_factory=dict)
    dataset: str | None = None
    epoch: int | None = None
    global_step: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_normalization(self) -> bool:
        """Whether :attr:`mean` and :attr:`std` are known (one value per band)."""
        return len(self.mean) == self.in_chans and len(self.std) == self.in_chans

    def require_normalization(self) -> None:
        """Raise unless the input normalisation is known.

        Raises:
            ValueError: for a bare file of ``in_chans != 3`` bands (no default applies), naming the
                file and the ``.json`` to write next to it.
        """
        if not self.has_normalization:
            raise ValueError(
                f"{self.source}: {self.in_chans}-band weights without metadata: the input "
                f"normalisation is unknown; write {self.source.with_suffix('.json')} with "
                "backbone, in_chans and normalization {scale, mean, std} (docs/export.md)"
            )

    def torchgeo_meta(self) -> dict[str, Any]:
        """The meta dict of a torchgeo-style :class:`Weights` (torchgeo's keys, then geossl's).

        Returns:
            ``dataset``, ``in_chans``, ``model``, ``ssl_method``, ``bands`` as in torchgeo's
            weights, plus ``mean``, ``std``, ``scale``, ``image_size``, ``sha256`` and
            ``geossl_meta`` (this object).
        """
        return {
            "dataset": self.dataset,
            "in_chans": self.in_chans,
            "model": self.backbone,
            "ssl_method": self.method,
            "bands": list(self.bands),
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "image_size": self.image_size,
            "sha256": self.sha256,
            "geossl_meta": self,
        }


# --------------------------------------------------------------------------------------------------
# Hashing and canonical serialisation


def state_dict_bytes(state_dict: Mapping[str, Tensor]) -> bytes:
    """Serialise a state dict exactly as :func:`geossl.export.export_weights` writes its ``.pth``.

    ``torch.save`` into memory, so the archive's inner folder is always ``archive/`` whatever the
    file is called; with contiguous, compact tensors (see :func:`_canonical`) the bytes depend only
    on the keys, their order and the tensors, so their SHA-256 identifies the weights.

    Args:
        state_dict: plain timm state dict (contiguous tensors).

    Returns:
        The bytes of the ``.pth`` file.
    """
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    return buffer.getvalue()


def _canonical(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous, compact copies (channels-last or view tensors would save otherwise)."""
    return {
        key: value.detach().clone(memory_format=torch.contiguous_format)
        for key, value in state_dict.items()
    }


def _file_sha256(path: Path) -> str:
    """Full SHA-256 hex digest of a file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --------------------------------------------------------------------------------------------------
# Strict loading


def _arch(name: str) -> str:
    """Architecture of a timm name without its tag (``resnet50.a1_in1k`` -> ``resnet50``)."""
    return name.partition(".")[0]


def classifier_prefixes(backbone: str) -> tuple[str, ...]:
    """Key prefixes of the classifier of a timm architecture (``("fc.",)`` for ResNets).

    Args:
        backbone: timm model name.

    Returns:
        ``pretrained_cfg["classifier"]`` of the architecture, each with a trailing dot
        (``("head.fc.",)`` for ConvNeXt, ``("head.", "head_dist.")`` for distilled DeiT); the
        common names ``fc.``, ``head.`` and ``classifier.`` when timm does not say.
    """
    cfg = timm.get_pretrained_cfg(backbone, allow_unregistered=True)
    classifier = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(classifier, str) and classifier:
        return (f"{classifier}.",)
    if isinstance(classifier, tuple | list) and classifier:
        return tuple(f"{name}." for name in classifier)
    return ("fc.", "head.", "classifier.")


def _first_conv_key(backbone: str, keys: Sequence[str]) -> str | None:
    """The weight key of the input layer: timm's ``first_conv`` (``conv1.weight`` for ResNets)."""
    cfg = timm.get_pretrained_cfg(backbone, allow_unregistered=True)
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    if isinstance(first, str) and f"{first}.weight" in keys:
        return f"{first}.weight"
    return None


def _preview(keys: Sequence[str], limit: int = 3) -> str:
    """``a, b, c, ... (+N more)``."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    backbone: str | None = None,
    allow_missing: Sequence[str] = (),
) -> None:
    """Load a state dict into a model, refusing any missing, unexpected or mis-shaped tensor.

    Unlike ``model.load_state_dict(strict=False)`` (torchgeo's loaders) nothing is dropped or left
    at its random initialisation silently; unlike ``strict=True`` the error is one line that
    names the file and says what differs, with the input-band count first.

    Args:
        model: the timm model to fill.
        state_dict: plain timm state dict.
        source: what to name in errors (the file, or ``model.init_weights: FILE``).
        backbone: timm name of the model (to find its first convolution); ``None`` reads
            ``model.pretrained_cfg["architecture"]``.
        allow_missing: key prefixes of the model that may be absent from ``state_dict`` and keep
            their initialisation (a new classifier, e.g. ``("fc.",)``).

    Raises:
        ValueError: on an input-band (in_chans) mismatch, missing or unexpected keys, or other
            shape mismatches.
    """
    expected = model.state_dict()
    if backbone is None:
        cfg = getattr(model, "pretrained_cfg", None)
        backbone = str(cfg.get("architecture", "")) if isinstance(cfg, Mapping) else ""
    conv = _first_conv_key(backbone, list(expected)) if backbone else None
    if conv is not None and conv in state_dict:
        got, want = state_dict[conv].shape, expected[conv].shape
        if len(got) >= 2 and len(want) >= 2 and got[1] != want[1]:
            raise ValueError(
                f"{source}: in_chans mismatch: the weights have {got[1]} input bands "
                f"({conv} {tuple(got)}) but the model has in_chans={want[1]}"
            )
    missing = [
        k for k in expected if k not in state_dict and not k.startswith(tuple(allow_missing))
    ]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_preview(unexpected)})")
        name = f"timm {backbone!r}" if backbone else type(model).__name__
        raise ValueError(f"{source}: keys do not match {name}: {'; '.join(parts)}")
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if v.shape != expected[k].shape
    ]
    if mismatched:
        raise ValueError(f"{source}: shape mismatch (file vs model): {_preview(mismatched)}")
    model.load_state_dict(dict(state_dict), strict=not allow_missing)


# --------------------------------------------------------------------------------------------------
# Reading files


def _torch_load(path: Path) -> Any:
    """Read a torch file without executing pickled code.

    ``weights_only=True`` always: geossl's and Lightning's checkpoints hold only tensors and plain
    containers, so the unsafe ``weights_only=False`` (which runs arbitrary code from the file) is
    never needed. timm's ``train.py`` checkpoints add an ``argparse.Namespace`` (``args``), an
    attribute bag that is allow-listed here.

    Raises:
        ValueError: if the file is not a torch file or holds other Python objects.
    """
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except SafetensorError as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
            raise ValueError(f"{path}: not a safetensors weight file ({detail})") from err
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        # torch's message starts with generic advice; the reason is on its "WeightsUnpickler" line.
        first = next(
            (x for x in lines if x.startswith("WeightsUnpickler")), lines[0] if lines else ""
        )
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) (a weight file holds only "
            f"tensors and plain containers): {first}"
        ) from err
    except OSError:
        raise
    except Exception as err:  # garbage makes the unpickler fail in many ways (KeyError, EOF, ...)
        detail = f"{type(err).__name__}: {err}".splitlines()[0]
        raise ValueError(f"{path}: not a torch weight file ({detail})") from err


def _is_state_dict(obj: Any) -> bool:
    """Whether ``obj`` is a non-empty ``{str: Tensor}`` mapping."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Keys that start with ``prefix``, without it."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _strip_module(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove DistributedDataParallel's ``module.`` prefix when every key has it."""
    if all(k.startswith("module.") for k in state_dict):
        return _strip_prefix(state_dict, "module.")
    return dict(state_dict)


def _drop_classifier(state_dict: Mapping[str, Tensor], backbone: str) -> dict[str, Tensor]:
    """Drop the classifier keys (a pretrained backbone is used without its ImageNet / task head)."""
    prefixes = classifier_prefixes(backbone)
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def _in_chans(state_dict: Mapping[str, Tensor], backbone: str, path: Path) -> int:
    """Input bands of the weights: dim 1 of the first convolution (``conv1.weight``)."""
    conv = _first_conv_key(backbone, list(state_dict))
    if conv is None:
        raise ValueError(
            f"{path}: no input-layer weight of timm {backbone!r} in the file (keys start with "
            f"{_preview(list(state_dict))}); is it a {backbone} backbone?"
        )
    return int(state_dict[conv].shape[1])


def _default_image_size(backbone: str) -> int:
    """Default input side of a timm architecture (224 for ResNets)."""
    cfg = timm.get_pretrained_cfg(backbone, allow_unregistered=True)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if isinstance(size, tuple | list) and size else 224


def _bare_meta(
    path: Path,
    backbone: str,
    in_chans: int,
    digest: str,
    source_format: str,
) -> WeightsMeta:
    """Meta of a file without metadata: RGB / ImageNet / 1/255 for 3 bands, unknown otherwise."""
    rgb = in_chans == 3
    return WeightsMeta(
        backbone=backbone,
        in_chans=in_chans,
        bands=RGB_BANDS if rgb else tuple(f"band_{i + 1}" for i in range(in_chans)),
        mean=IMAGENET_MEAN if rgb else (),
        std=IMAGENET_STD if rgb else (),
        scale=UINT8_SCALE,
        image_size=_default_image_size(backbone),
        method="unknown",
        sha256=digest[:8],
        source=path,
        source_format=source_format,
        has_metadata=False,
        sha256_full=digest,
    )


def pretrain_method(losses: Mapping[str, float] | None) -> str:
    """Name of a pretraining recipe: its active loss terms joined by ``_``.

    Args:
        losses: ``GeoSSLTask``'s ``losses`` (``None``: the default, TP + Geo).

    Returns:
        E.g. ``"tp_geo"`` (GeoSSL's full method), ``"moco"``, ``"tp_co2"``.
    """
    if losses is None:
        # Imported here: geossl.trainers imports geossl.models.
        from geossl.trainers.terms import DEFAULT_LOSSES

        losses = DEFAULT_LOSSES
    return "_".join(name for name, weight in losses.items() if weight > 0) or "none"


def _fmow_bands(datamodule: Mapping[str, Any], in_chans: int) -> tuple[str, ...] | None:
    """Band names of an FMoWDataModule's images, None if the hyper-parameters do not say."""
    product = datamodule.get("product")
    if product in ("rgb", "msrgb"):
        names: tuple[str, ...] = RGB_BANDS
    elif product == "ms":
        # Imported here: geossl.datasets is heavy and only FMoW checkpoints need its constants.
        from geossl.datasets.fmow.constants import FMOW_MS_BANDS

        names = FMOW_MS_BANDS
    elif product == "sentinel":
        from geossl.datasets.fmow.constants import FMOW_SENTINEL_BANDS

        names = FMOW_SENTINEL_BANDS
    else:
        return None
    selected = datamodule.get("bands")
    if selected:
        names = tuple(names[int(b) - 1] for b in selected)
    return names if len(names) == in_chans else None


def _fmow_scale(datamodule: Mapping[str, Any]) -> float:
    """Raw-to-[0, 1] factor of an FMoWDataModule product.

    1/255 (JPEG), 1/2047 (11-bit ms) or 1e-4 (fMoW-Sentinel reflectance x 10,000).
    """
    if datamodule.get("product") == "ms":
        from geossl.datasets.fmow.constants import MS_SCALE

        return MS_SCALE
    if datamodule.get("product") == "sentinel":
        from geossl.datasets.fmow.constants import FMOW_SENTINEL_SCALE

        return FMOW_SENTINEL_SCALE
    return UINT8_SCALE


def _geossl_checkpoint_meta(
    path: Path, checkpoint: Mapping[str, Any], in_chans: int, digest: str
) -> WeightsMeta:
    """Meta of a GeoSSLTask checkpoint from its model and data hyper-parameters."""
    hp: Mapping[str, Any] = checkpoint["hyper_parameters"]
    datamodule: Mapping[str, Any] = checkpoint.get("datamodule_hyper_parameters") or {}
    is_fmow = "product" in datamodule and "pair_mode" in datamodule
    is_rasters = "paths" in datamodule and "patch_size" in datamodule
    bands = _fmow_bands(datamodule, in_chans) if is_fmow else None
    # RasterTimeSeriesDataModule: its band names (band files) and its raw-to-[0, 1] scale
    # (uint8 stacks are divided by 255 whatever data.scale says; other dtypes need data.scale).
    names = datamodule.get("band_names") if is_rasters else None
    if isinstance(names, list | tuple) and len(names) == in_chans:
        bands = tuple(str(n) for n in names)
    scale = UINT8_SCALE
    if is_fmow:
        scale = _fmow_scale(datamodule)
    elif is_rasters and datamodule.get("scale"):
        scale = float(datamodule["scale"])
    if bands is None:
        bands = tuple(f"band_{i + 1}" for i in range(in_chans))
    mean = hp.get("mean") or (IMAGENET_MEAN if in_chans == 3 else ())
    std = hp.get("std") or (IMAGENET_STD if in_chans == 3 else ())
    losses = hp.get("losses")
    if losses is None:
        # Imported here: geossl.trainers imports geossl.models.
        from geossl.trainers.terms import DEFAULT_LOSSES

        losses = DEFAULT_LOSSES
    info = {k: v for k, v in hp.items() if not k.startswith("_")}
    return WeightsMeta(
        backbone=str(hp["backbone"]),
        in_chans=in_chans,
        bands=bands,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        # GeoSSLAugmentation divides uint8 batches by 255; float batches are taken as [0, 1].
        scale=scale,
        image_size=int(hp.get("crop_size", 224)),
        method=pretrain_method(losses),
        sha256=digest[:8],
        source=path,
        source_format="geossl-checkpoint",
        has_metadata=True,
        sha256_full=digest,
        losses={str(name): float(weight) for name, weight in losses.items()},
        dataset="fmow" if is_fmow else ("rasters" if is_rasters else None),
        epoch=checkpoint.get("epoch"),
        global_step=checkpoint.get("global_step"),
        info=info,
    )


def _meta_from_metadata(
    metadata: Mapping[str, Any], where: Path, weights: Path, in_chans: int, digest: str, fmt: str
) -> WeightsMeta:
    """Meta from an export's metadata (the ``.json``, or the dict inside its ``.ckpt``).

    Args:
        metadata: the parsed JSON.
        where: the file the metadata came from (named in errors).
        weights: the weight file.
        in_chans: input bands of the weight tensors.
        digest: SHA-256 of the weights.
        fmt: ``source_format`` to record.

    Raises:
        ValueError: if required fields are missing or disagree with the weights.
    """
    try:
        backbone = str(metadata["backbone"])
        declared = int(metadata["in_chans"])
        norm = metadata["normalization"]
        scale = float(norm["scale"])
        mean = tuple(float(m) for m in norm["mean"])
        std = tuple(float(s) for s in norm["std"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{where}: invalid weights metadata ({type(err).__name__}: {err}); it needs backbone, "
            "in_chans and normalization {scale, mean, std} (docs/export.md)"
        ) from err
    if declared != in_chans:
        raise ValueError(
            f"{where}: in_chans mismatch: the metadata says in_chans={declared} but the weights "
            f"in {weights} have {in_chans} input bands"
        )
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(
            f"{where}: normalization has {len(mean)} means and {len(std)} stds for "
            f"in_chans={in_chans}"
        )
    if not (math.isfinite(scale) and scale > 0) or any(not s > 0 for s in std):
        raise ValueError(f"{where}: normalization scale and std must be > 0")
    recorded = metadata.get("sha256")
    if recorded is not None and str(recorded) != digest:
        raise ValueError(
            f"{where}: sha256 mismatch: the metadata describes weights {str(recorded)[:8]} but "
            f"{weights} is {digest[:8]} (a modified or different file)"
        )
    bands = metadata.get("bands") or [f"band_{i + 1}" for i in range(in_chans)]
    if len(bands) != in_chans:
        raise ValueError(f"{where}: {len(bands)} band names for in_chans={in_chans}")
    dataset = metadata.get("dataset")
    try:  # optional fields of a hand-written .json: a bad one is a one-line error naming the file
        image_size = int(metadata.get("image_size") or _default_image_size(backbone))
        losses = {str(k): float(v) for k, v in (metadata.get("losses") or {}).items()}
    except (AttributeError, TypeError, ValueError) as err:
        raise ValueError(
            f"{where}: invalid weights metadata ({type(err).__name__}: {err}); image_size is a "
            "number of pixels and losses maps loss terms to weights (docs/export.md)"
        ) from err
    return WeightsMeta(
        backbone=backbone,
        in_chans=in_chans,
        bands=tuple(str(b) for b in bands),
        mean=mean,
        std=std,
        scale=scale,
        image_size=image_size,
        method=str(metadata.get("method") or "unknown"),
        sha256=digest[:8],
        source=weights,
        source_format=fmt,
        has_metadata=True,
        sha256_full=digest,
        losses=losses,
        dataset=str(dataset["name"])
        if isinstance(dataset, Mapping) and "name" in dataset
        else None,
        epoch=metadata.get("epoch"),
        global_step=metadata.get("global_step"),
        info=dict(metadata),
    )


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a metadata JSON (one-line ValueError if it is not a JSON object)."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the weights metadata must be a JSON object")
    return data


def _check_backbone(name: Any, path: Path) -> str:
    """Validate a backbone name found in a file or given by the caller."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: no backbone name in the file; pass backbone= (a timm name)")
    try:
        check_backbone_name(name)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return name


def read_weights(
    path: str | os.PathLike[str], *, backbone: str | None = None
) -> tuple[dict[str, Tensor], WeightsMeta]:
    """Read backbone weights and their metadata from any supported file (see the module doc).

    Args:
        path: a geossl pretraining ``.ckpt``, a geossl export (``.pth`` + ``.json``, or its
            ``.ckpt``), a torchgeo-style Lightning checkpoint, a bare state dict (``.pth``,
            ``.safetensors``) or a timm ``train.py`` checkpoint.
        backbone: timm name for files that do not name their architecture (a bare state dict
            without a ``.json``); ignored when the file names it (callers compare
            ``meta.backbone`` with what they expect).

    Returns:
        ``(state_dict, meta)``: a plain timm state dict without classifier (contiguous CPU
        tensors) and its :class:`WeightsMeta`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file cannot be read safely, has an unknown layout, needs ``backbone``,
            or disagrees with its metadata (in_chans, sha256); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    obj = _torch_load(path)

    if isinstance(obj, Mapping) and "state_dict" in obj and "hyper_parameters" in obj:
        return _read_lightning(path, obj)

    timm_checkpoint = False
    if not _is_state_dict(obj) and isinstance(obj, Mapping):
        # timm train.py checkpoints: the non-EMA weights, as timm.models.load_checkpoint reads them.
        nested = next((k for k in ("state_dict", "model") if _is_state_dict(obj.get(k))), None)
        if nested is not None:
            timm_checkpoint = True
            backbone = backbone or obj.get("arch")
            obj = obj[nested]
    if not _is_state_dict(obj):
        raise ValueError(
            f"{path}: not a backbone weight file (expected a state dict, a geossl / torchgeo "
            "Lightning checkpoint or a timm checkpoint)"
        )
    state = _strip_module(obj)
    sidecar = path.with_suffix(".json")
    if not timm_checkpoint and sidecar.is_file():
        metadata = _read_json(sidecar)
        name = _check_backbone(metadata.get("backbone"), sidecar)
        digest = _file_sha256(path)
        state = _canonical(state)
        meta = _meta_from_metadata(
            metadata, sidecar, path, _in_chans(state, name, path), digest, "geossl-weights"
        )
        return state, meta
    if backbone is None:
        raise ValueError(
            f"{path}: a bare state dict without metadata ({sidecar.name} not found): pass the "
            "timm architecture (backbone=..., e.g. 'resnet50')"
        )
    name = _check_backbone(backbone, path)
    # A bare or timm file may carry an ImageNet / task classifier; a backbone never uses it.
    state = _canonical(_drop_classifier(state, name))
    if timm_checkpoint:  # identified by the .pth that an export of these tensors would write
        digest = hashlib.sha256(state_dict_bytes(state)).hexdigest()
    else:  # identified by the file itself, as torch hub / torchgeo name their files
        digest = _file_sha256(path)
    fmt = "timm-checkpoint" if timm_checkpoint else "state-dict"
    return state, _bare_meta(path, name, _in_chans(state, name, path), digest, fmt)


def _read_lightning(
    path: Path, checkpoint: Mapping[str, Any]
) -> tuple[dict[str, Tensor], WeightsMeta]:
    """Read a Lightning checkpoint: GeoSSLTask, a geossl export or a torchgeo task."""
    hp = checkpoint["hyper_parameters"]
    full = checkpoint["state_dict"]
    if not isinstance(hp, Mapping) or not isinstance(full, Mapping):
        raise ValueError(f"{path}: hyper_parameters and state_dict must be dicts")
    if "losses" in hp and "backbone" in hp and any(k.startswith("backbone.") for k in full):
        # GeoSSLTask: the query backbone; backbone_momentum.* (the EMA key encoder) is not used.
        name = _check_backbone(hp["backbone"], path)
        state = _canonical(_strip_prefix(full, "backbone."))
        digest = hashlib.sha256(state_dict_bytes(state)).hexdigest()
        in_chans = _in_chans(state, name, path)
        return state, _geossl_checkpoint_meta(path, checkpoint, in_chans, digest)
    if "model" in hp and "backbone" in hp and any(k.startswith("model.encoder.") for k in full):
        # A torchgeo SemanticSegmentationTask: its smp encoder (timm's keys for ResNets).
        name, prefix = hp["backbone"], "model.encoder."
    elif "model" in hp:  # torchgeo's extract_backbone layout, first branch
        name, prefix = hp["model"], "model."
    elif "backbone" in hp:  # its second branch
        name, prefix = hp["backbone"], "model.backbone.model."
    else:
        raise ValueError(
            f"{path}: unknown Lightning checkpoint: hyper_parameters has neither 'model' nor "
            "'backbone' (expected a GeoSSLTask, a geossl export or a torchgeo task checkpoint)"
        )
    name = _check_backbone(name, path)
    state = _strip_prefix(full, prefix)
    if not state:
        raise ValueError(f"{path}: no '{prefix}*' tensors in the checkpoint's state_dict")
    metadata = checkpoint.get("geossl_metadata")
    if isinstance(metadata, Mapping):  # a geossl export: exactly the .pth's tensors
        state = _canonical(state)
        digest = hashlib.sha256(state_dict_bytes(state)).hexdigest()
        in_chans = _in_chans(state, name, path)
        return state, _meta_from_metadata(metadata, path, path, in_chans, digest, "geossl-weights")
    # A torchgeo task checkpoint (e.g. a fine-tuned ClassificationTask): without its head.
    state = _canonical(_drop_classifier(state, name))
    digest = hashlib.sha256(state_dict_bytes(state)).hexdigest()
    meta = _bare_meta(path, name, _in_chans(state, name, path), digest, "lightning-checkpoint")
    return state, meta


# --------------------------------------------------------------------------------------------------
# torchgeo-style weights API


def build_transforms(meta: WeightsMeta) -> nn.Module:
    """The input transforms of the weights, as torchgeo declares its weights' ``transforms``.

    ``float32 -> Resize(image_size) -> x * scale -> (x - mean) / std`` on ``[B, C, H, W]`` or
    ``[C, H, W]`` raw pixel values (uint8 or float), like torchgeo's GASSL transforms
    ``Resize(224) -> /255 -> ImageNet mean/std``; the input is not modified in place.

    Args:
        meta: the weights' metadata.

    Returns:
        An ``nn.Sequential`` of torchvision ``transforms.v2``.

    Raises:
        ValueError: if the normalisation is unknown (see :meth:`WeightsMeta.require_normalization`).
    """
    meta.require_normalization()
    size = meta.image_size
    return nn.Sequential(
        T.ToDtype(torch.float32),
        T.Resize((size, size), antialias=True),
        T.Normalize(mean=[0.0], std=[1.0 / meta.scale]),
        T.Normalize(mean=list(meta.mean), std=list(meta.std)),
    )


class LocalWeights(Weights):  # type: ignore[misc]
    """torchvision / torchgeo ``Weights`` of a local file: ``url`` is the file's path.

    ``get_state_dict`` reads the file with :func:`read_weights` (never the network, never a copy
    into the torch hub cache), so the object works wherever torchgeo's weights do, e.g.
    ``torchgeo.models.resnet50(weights=GeoSSLWeights.from_file(path))``. ``meta`` has torchgeo's
    keys (``model``, ``in_chans``, ``ssl_method``, ``dataset``, ``bands``) plus ``mean``, ``std``,
    ``scale``, ``image_size``, ``sha256`` and ``geossl_meta`` (the :class:`WeightsMeta`).
    """

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Read the state dict from the file (arguments such as ``progress`` are ignored).

        Args:
            *args: ignored (torch hub's download options).
            **kwargs: ignored.

        Returns:
            The plain timm state dict, classifier removed.
        """
        state, _ = read_weights(self.url, backbone=self.meta["model"])
        return state


def _gassl_meta() -> dict[str, Any]:
    """The meta of torchgeo's FMOW_RGB_GASSL plus geossl's input description."""
    return {
        **ResNet50_Weights.FMOW_RGB_GASSL.meta,
        "bands": list(RGB_BANDS),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "scale": UINT8_SCALE,
        "image_size": 224,
    }


class GeoSSLWeights(WeightsEnum):  # type: ignore[misc]
    """Published Geography-aware SSL backbone weights, declared like torchgeo's.

    geossl has no published weights of its own yet: the only entry is torchgeo's
    ``ResNet50_Weights.FMOW_RGB_GASSL`` (Ayush et al.'s ResNet-50, MoCo-v2 + TP + Geo on fMoW-rgb;
    same url and transforms, downloaded on first use), with geossl's input keys added to its
    meta. Local files (an export, a checkpoint) become ``Weights`` with :meth:`from_file`.

    Example::

        model = geossl.models.resnet50(weights=GeoSSLWeights.FMOW_RGB_GASSL)
        weights = GeoSSLWeights.from_file("out/resnet50_tp_geo-1a2b3c4d.pth")
        model = geossl.models.resnet50(weights=weights, num_classes=10)
    """

    FMOW_RGB_GASSL = Weights(
        url=ResNet50_Weights.FMOW_RGB_GASSL.url,
        transforms=ResNet50_Weights.FMOW_RGB_GASSL.transforms,
        meta=_gassl_meta(),
    )

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, backbone: str | None = None
    ) -> LocalWeights:
        """torchgeo-style ``Weights`` of a local file, fully offline.

        Args:
            path: any file :func:`read_weights` reads (an export's ``.pth`` with its ``.json`` is
                the usual one).
            backbone: timm name for a bare state dict without metadata.

        Returns:
            ``LocalWeights(url=<absolute path>, transforms=<build_transforms(meta)>,
            meta=<meta.torchgeo_meta()>)``.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: as :func:`read_weights`, or if the input normalisation is unknown.
        """
        _, meta = read_weights(path, backbone=backbone)
        return LocalWeights(
            url=str(Path(path).resolve()),
            transforms=build_transforms(meta),
            meta=meta.torchgeo_meta(),
        )


def _resolve(
    weights: Any, backbone: str
) -> tuple[dict[str, Tensor] | None, dict[str, Any] | None, str]:
    """State dict, meta and name of a ``weights`` argument (None, enum member, Weights or path)."""
    if weights is None:
        return None, None, ""
    if isinstance(weights, str | os.PathLike):
        path = Path(weights)
        state, meta = read_weights(path, backbone=backbone)
        return state, meta.torchgeo_meta(), str(path)
    if isinstance(weights, WeightsEnum | Weights):
        meta_dict: dict[str, Any] = dict(weights.meta)
        getter = getattr(weights, "get_state_dict", None)  # a plain Weights has none
        if getter is not None:
            state = dict(getter(progress=True))
        else:
            state = dict(torch.hub.load_state_dict_from_url(weights.url, progress=True))
        return state, meta_dict, str(weights.url)
    raise TypeError(
        f"weights must be None, a WeightsEnum member, a Weights or a path, got {type(weights)}"
    )


def _build(name: str, weights: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """timm.create_model(name) with ``weights`` loaded strictly (classifier left at its init)."""
    state, meta, source = _resolve(weights, name)
    if state is None or meta is None:
        model: nn.Module = timm.create_model(name, *args, **kwargs)
        return model
    if _arch(str(meta.get("model", name))) != name:
        raise ValueError(f"{source}: these are {meta.get('model')} weights, not {name}")
    in_chans = int(meta["in_chans"])
    if kwargs.setdefault("in_chans", in_chans) != in_chans:
        raise ValueError(
            f"{source}: in_chans mismatch: the weights have {in_chans} input bands but "
            f"in_chans={kwargs['in_chans']} was requested"
        )
    model = timm.create_model(name, *args, **kwargs)
    classifier = classifier_prefixes(name)
    # Weights carry no classifier (geossl, torchgeo); timm's ImageNet files do: drop it, the
    # model's own head (num_classes) keeps its initialisation.
    state = {k: v for k, v in state.items() if not k.startswith(classifier)}
    load_state_dict_strict(model, state, source=source, backbone=name, allow_missing=classifier)
    return model


def resnet18(weights: Any = None, *args: Any, **kwargs: Any) -> nn.Module:
    """ResNet-18 (timm) with optional pretrained weights, like ``torchgeo.models.resnet18``.

    Args:
        weights: ``None`` (random init), a ``WeightsEnum`` member (geossl's or torchgeo's), a
            ``Weights`` (e.g. :meth:`GeoSSLWeights.from_file`) or a path read by
            :func:`read_weights`.
        *args: passed to :func:`timm.create_model`.
        **kwargs: passed to :func:`timm.create_model` (``num_classes=0`` for a backbone that
            returns pooled features; ``in_chans`` defaults to the weights').

    Returns:
        The timm model; every backbone tensor comes from ``weights`` (checked strictly), only the
        classifier ``fc`` keeps its initialisation.

    Raises:
        ValueError: if the weights are for another architecture or band count, or their keys do
            not match.
    """
    return _build("resnet18", weights, *args, **kwargs)


def resnet50(weights: Any = None, *args: Any, **kwargs: Any) -> nn.Module:
    """ResNet-50 (timm) with optional pretrained weights, like ``torchgeo.models.resnet50``.

    Args:
        weights: ``None`` (random init), a ``WeightsEnum`` member (e.g.
            ``GeoSSLWeights.FMOW_RGB_GASSL``, downloaded on first use), a ``Weights`` (e.g.
            :meth:`GeoSSLWeights.from_file`) or a path read by :func:`read_weights`.
        *args: passed to :func:`timm.create_model`.
        **kwargs: passed to :func:`timm.create_model` (``num_classes=0`` for a backbone that
            returns pooled features; ``in_chans`` defaults to the weights').

    Returns:
        The timm model; every backbone tensor comes from ``weights`` (checked strictly), only the
        classifier ``fc`` keeps its initialisation.

    Raises:
        ValueError: if the weights are for another architecture or band count, or their keys do
            not match.
    """
    return _build("resnet50", weights, *args, **kwargs)
