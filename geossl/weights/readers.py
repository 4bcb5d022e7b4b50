"""Reading every supported backbone weight file: `read_weights`.

A backbone weight file is read by [`read_weights`][geossl.weights.readers.read_weights] into a plain
timm state dict (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ... no classifier) and a
[`WeightsMeta`][geossl.weights.meta.WeightsMeta] describing what the weights expect as input.
Supported files:

* a geossl pretraining checkpoint (``.ckpt`` of [`GeoSSLTask`][geossl.trainers.GeoSSLTask]): the
  query backbone (``backbone.*``; the EMA key encoder is not exported), described by the
  checkpoint's model and data hyper-parameters;
* a geossl export (``{backbone}_{method}-{hash8}.pth`` + ``.json``, see
  [`geossl.weights.export_weights`][geossl.weights.export_weights] and ``docs/export.md``) or its
  Lightning-style ``.ckpt``;
* a torchgeo-style Lightning checkpoint (``hyper_parameters["model"]`` + ``model.<key>``, e.g. a
  fine-tuned ``ClassificationTask``, or ``hyper_parameters["backbone"]`` +
  ``model.backbone.model.<key>``: the layouts torchgeo's ``extract_backbone`` reads), or a
  ``SemanticSegmentationTask`` checkpoint (its smp encoder, ``model.encoder.<key>``);
* a bare state dict (torchgeo's ``ResNet50_Weights.FMOW_RGB_GASSL`` file, a timm ``.pth`` or
  ``.safetensors``) or a timm ``train.py`` checkpoint (``state_dict`` + ``arch``); without a
  sibling ``.json`` the architecture must be given (``backbone=``) unless the file names it.
"""

import argparse
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor

from geossl.errors import CheckpointError
from geossl.models.backbones import check_backbone_name
from geossl.transforms.augmentation import IMAGENET_MEAN, IMAGENET_STD
from geossl.utils.bands import RGB_BANDS, UINT8_SCALE
from geossl.utils.normalization import Normalization

from .checkpoint import _geossl_checkpoint_meta
from .loading import (
    _canonical,
    _file_sha256,
    _first_conv_key,
    _preview,
    classifier_prefixes,
    state_dict_bytes,
)
from .meta import WeightsMeta
from .reading import reading_checkpoint

__all__ = ["read_weights"]


def _torch_load(path: Path) -> Any:
    """Read a torch file without executing pickled code.

    ``weights_only=True`` always: geossl's and Lightning's checkpoints hold only tensors and plain
    containers, so the unsafe ``weights_only=False`` (which runs arbitrary code from the file) is
    never needed. timm's ``train.py`` checkpoints add an ``argparse.Namespace`` (``args``), an
    attribute bag that is allow-listed here.

    Raises:
        CheckpointError: (a `ValueError`) if the file is not a complete torch file or holds other
            Python objects ([`reading_checkpoint`][geossl.weights.reading.reading_checkpoint]).
    """
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except SafetensorError as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
            raise CheckpointError(path, f"not a safetensors weight file ({detail})") from err
    with reading_checkpoint(path), torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


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
    stats = Normalization.of(mean, std, channels=in_chans, where=f"{where}: normalization")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{where}: normalization scale must be > 0, got {scale}")
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
        mean=stats.mean,
        std=stats.std,
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


def _export_digest(path: Path, metadata: Mapping[str, Any], sidecar: Path) -> str:
    """The SHA-256 that identifies an export's weights file (checked against its ``.json``).

    An export's ``.safetensors`` holds the ``.pth``'s tensors and shares its ``.json``: it is
    checked against the ``.json``'s ``safetensors_sha256`` and identified like the ``.pth``
    (``sha256``), so every file of one export reads as the same weights.
    """
    digest = _file_sha256(path)
    if path.suffix != ".safetensors":
        return digest
    if digest != metadata.get("safetensors_sha256"):
        raise ValueError(
            f"{sidecar}: sha256 mismatch: {path.name} is not the .safetensors this metadata "
            "describes (a modified or different file)"
        )
    return str(metadata.get("sha256"))


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
        tensors) and its [`WeightsMeta`][geossl.weights.meta.WeightsMeta].

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file cannot be read safely, has an unknown layout, needs ``backbone``,
            or disagrees with its metadata (in_chans, sha256); the message names the file.

    Example:
        >>> import tempfile, timm, torch
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "resnet18.pth"  # a bare timm state dict
        >>> torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
        >>> state, meta = read_weights(path, backbone="resnet18")
        >>> meta.backbone, meta.in_chans, meta.bands, "fc.weight" in state
        ('resnet18', 3, ('red', 'green', 'blue'), False)
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
        state = _canonical(state)
        digest = _export_digest(path, metadata, sidecar)
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
