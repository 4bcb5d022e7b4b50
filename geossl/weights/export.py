"""Export pretrained backbones in torchgeo's and timm's formats, and load them back.

[`export_weights`][geossl.weights.export.export_weights] turns a geossl pretraining checkpoint
(Lightning ``.ckpt`` of [`GeoSSLTask`][geossl.trainers.GeoSSLTask], with optimiser, queue, heads and
EMA key encoder) into four files named ``{backbone}_{method}-{hash8}`` like torchvision's /
torchgeo's weight files (``hash8``: the first 8 hex digits of the ``.pth``'s SHA-256, e.g.
``resnet50_tp_geo-1a2b3c4d``):

* ``.pth``: the query backbone as a plain timm state dict (``conv1.weight``, ``bn1.*``,
  ``layer1.0.conv1.weight``, ... no ``fc``), the format of torchgeo's
  ``ResNet50_Weights.FMOW_RGB_GASSL``: ``timm.create_model(backbone, num_classes=0)`` loads it
  with ``strict=True``;
* ``.safetensors``: the same state dict in safetensors (no pickle), what timm loads as a local
  pretrained file: ``timm.create_model(backbone, pretrained=True, num_classes=0,
  pretrained_cfg_overlay=dict(file=PATH))``. Not the ``.ckpt``: timm then reads ``model.*`` keys,
  matches none, logs "Unexpected keys" and keeps its random weights;
* ``.ckpt``: the same tensors as a Lightning-style checkpoint (``hyper_parameters["model"]`` and
  ``state_dict`` keys ``model.<key>``), the layout torchgeo's trainers read with
  ``weights=PATH`` (``ClassificationTask(model=..., weights=PATH)``,
  ``SemanticSegmentationTask(backbone=..., weights=PATH)``);
* ``.json``: the metadata (architecture, bands, input normalisation, image size, recipe, loss
  weights and options, dataset, training progress, versions, SHA-256), ``docs/export.md``.

[`load_backbone`][geossl.weights.export.load_backbone] loads any of these (or the pretraining
checkpoint, a torchgeo / timm file) into a timm model for inference, e.g. ``geossl embed``.
"""

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning
import timm
import torch
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from geossl import __version__
from geossl.models.backbones import create_backbone, get_num_features
from geossl.utils.io import atomic_output

from .loading import load_state_dict_strict, state_dict_bytes
from .meta import METADATA_FORMAT, METADATA_VERSION, WeightsMeta
from .readers import read_weights

__all__ = ["ExportedWeights", "LoadedBackbone", "export_weights", "load_backbone"]


#: Data-module hyper-parameters recorded in the metadata (local paths and loader settings are not).
_DATASET_KEYS = (
    "product",
    "bands",
    "splits",
    "image_size",
    "num_geo_clusters",
    "pair_mode",
    "seed",
    "batch_size",
)


@dataclass(frozen=True)
class ExportedWeights:
    """The files written by [`export_weights`][geossl.weights.export.export_weights].

    Attributes:
        weights: the ``.pth`` timm state dict.
        safetensors: the same state dict as ``.safetensors`` (timm's ``pretrained_cfg_overlay``).
        checkpoint: the ``.ckpt`` for torchgeo's trainers (``weights=PATH``).
        metadata: the ``.json`` metadata.
        meta: the weights' metadata as [`load_backbone`][geossl.weights.export.load_backbone] reads
            it back from the ``.pth``.
    """

    weights: Path
    safetensors: Path
    checkpoint: Path
    metadata: Path
    meta: WeightsMeta


@dataclass(frozen=True)
class LoadedBackbone:
    """A backbone ready for inference, and what its input must look like.

    Attributes:
        model: the timm model (``num_classes=0``: ``model(x)`` is ``[B, num_features]``), in eval
            mode, on the requested device.
        meta: bands, normalisation (``(raw * scale - mean) / std``), image size, recipe and hash.
    """

    model: nn.Module
    meta: WeightsMeta


#: Marker of a value that JSON cannot hold (dropped from the metadata).
_SKIP = object()


def _json_safe(value: Any) -> Any:
    """``value`` if it is made of JSON types (str, number, bool, None, lists, str-keyed dicts)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        items = [_json_safe(v) for v in value]
        return items if all(i is not _SKIP for i in items) else _SKIP
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        out = {k: _json_safe(v) for k, v in value.items()}
        return out if all(v is not _SKIP for v in out.values()) else _SKIP
    return _SKIP


def _resolved_loss_options(meta: WeightsMeta) -> dict[str, Any]:
    """Every option of every active term, as the checkpoint records them.

    A checkpoint that describes itself (``input_block`` with ``mean``) records every option with
    its default filled in; an older one records the options as they were given.
    """
    given = meta.info.get("loss_options") or {}
    active = [name for name, weight in meta.losses.items() if weight > 0]
    return {name: dict(given.get(name) or {}) for name in active}


def _metadata(
    meta: WeightsMeta,
    checkpoint: Mapping[str, Any],
    num_features: int,
    files: Mapping[str, str],
    source_sha256: str,
) -> dict[str, Any]:
    """The metadata JSON of an export (see ``docs/export.md``)."""
    datamodule = checkpoint.get("datamodule_hyper_parameters") or {}
    dataset: dict[str, Any] | None = None
    if meta.dataset is not None:
        dataset = {"name": meta.dataset}
        values = {k: _json_safe(datamodule[k]) for k in _DATASET_KEYS if k in datamodule}
        dataset.update({k: v for k, v in values.items() if v is not _SKIP})
    hparams = {k: _json_safe(v) for k, v in meta.info.items()}
    init_weights = _json_safe(checkpoint.get("geossl_init_weights"))
    return {
        "format": METADATA_FORMAT,
        "format_version": METADATA_VERSION,
        "backbone": meta.backbone,
        "in_chans": meta.in_chans,
        "num_features": num_features,
        "bands": list(meta.bands),
        "normalization": {
            "scale": meta.scale,
            "mean": list(meta.mean),
            "std": list(meta.std),
            "formula": "x = (raw * scale - mean) / std, per band, on images resized to image_size",
        },
        "image_size": meta.image_size,
        "method": meta.method,
        "losses": dict(meta.losses),
        "loss_options": _resolved_loss_options(meta),
        "dataset": dataset,
        "epoch": meta.epoch,
        "global_step": meta.global_step,
        "pretrain_hparams": {k: v for k, v in hparams.items() if v is not _SKIP},
        "init_weights": None if init_weights is _SKIP else init_weights,
        "source": {"file": meta.source.name, "sha256": source_sha256},
        "files": dict(files),
        "sha256": meta.sha256_full,
        "versions": {
            "geossl": __version__,
            "torch": str(torch.__version__),  # a TorchVersion: torch.load(weights_only) refuses it
            "timm": str(timm.__version__),
            "lightning": str(lightning.__version__),
            "python": platform.python_version(),
        },
    }


def _export_paths(out: Path, stem: str, overwrite: bool) -> dict[str, Path]:
    """The files to write by suffix; refuse existing ones unless ``overwrite``."""
    paths = {ext: out / f"{stem}.{ext}" for ext in ("pth", "safetensors", "ckpt", "json")}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise FileExistsError(
                    f"{path} exists; pass overwrite=True (--overwrite) to replace it"
                )
    return paths


def _lightning_checkpoint(
    meta: WeightsMeta, state: dict[str, Tensor], metadata: dict[str, Any]
) -> dict[str, Any]:
    """The exported ``.ckpt``: the backbone in the layout torchgeo's ``extract_backbone`` reads."""
    return {
        "epoch": meta.epoch,
        "global_step": meta.global_step,
        "pytorch-lightning_version": str(lightning.__version__),
        # torchgeo's extract_backbone: hyper_parameters["model"] names the timm architecture and
        # state_dict keys "model.<timm key>" hold the backbone (read with weights_only=True).
        "state_dict": {f"model.{key}": tensor for key, tensor in state.items()},
        "hyper_parameters": {"model": meta.backbone, "in_channels": meta.in_chans},
        "geossl_metadata": metadata,
    }


def _write_export(
    paths: dict[str, Path],
    data: bytes,
    meta: WeightsMeta,
    state: dict[str, Tensor],
    metadata: dict[str, Any],
) -> None:
    """Write the export's files, all under temporary names, renamed together once all are written.

    An interrupted export thus leaves no ``.pth`` without its ``.json`` (which a re-run would
    then refuse to replace). ``metadata`` gets the ``.safetensors``' hash (its bytes are
    deterministic too).
    """
    safetensors_data = safetensors_save(state, metadata={"format": "pt"})
    metadata["safetensors_sha256"] = hashlib.sha256(safetensors_data).hexdigest()
    lightning_checkpoint = _lightning_checkpoint(meta, state, metadata)
    with ExitStack() as stack:
        tmp = {ext: stack.enter_context(atomic_output(path)) for ext, path in paths.items()}
        tmp["pth"].write_bytes(data)
        tmp["safetensors"].write_bytes(safetensors_data)
        torch.save(lightning_checkpoint, tmp["ckpt"])
        tmp["json"].write_bytes((json.dumps(metadata, indent=2) + "\n").encode())


def export_weights(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> ExportedWeights:
    """Export a pretraining checkpoint's backbone for torchgeo and timm (see the module doc).

    Writes ``{output_dir}/{backbone}_{method}-{hash8}.{pth,safetensors,ckpt,json}`` under temporary
    names renamed together (an interrupted export leaves none); the ``.pth`` bytes are
    deterministic, so exporting the same weights twice gives the same names and hash.

    Args:
        checkpoint: a Lightning checkpoint of [`GeoSSLTask`][geossl.trainers.GeoSSLTask] (read with
            ``torch.load(weights_only=True)``).
        output_dir: folder to write to (created if needed).
        overwrite: replace existing files of the same names.

    Returns:
        The paths written and the metadata.

    Raises:
        FileNotFoundError: if ``checkpoint`` does not exist.
        FileExistsError: if an output file exists and ``overwrite`` is False.
        ValueError: if ``checkpoint`` is not a geossl pretraining checkpoint.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from geossl.trainers import GeoSSLTask
        >>> folder = Path(tempfile.mkdtemp())
        >>> task = GeoSSLTask(backbone="resnet18", crop_size=32, queue_size=64)
        >>> checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
        >>> task.on_save_checkpoint(checkpoint)  # what Lightning's ModelCheckpoint calls
        >>> torch.save(checkpoint, folder / "run.ckpt")
        >>> exported = export_weights(folder / "run.ckpt", folder / "export")
        >>> exported.weights.name.startswith("resnet18_tp_geo-"), exported.meta.image_size
        (True, 32)
    """
    source = Path(checkpoint)
    state, meta = read_weights(source)
    if meta.source_format != "geossl-checkpoint":
        raise ValueError(
            f"{source}: not a geossl pretraining checkpoint (GeoSSLTask .ckpt); it reads as "
            f"{meta.source_format}"
        )
    raw = torch.load(source, map_location="cpu", weights_only=True)  # read_weights checked it

    model = create_backbone(meta.backbone, in_chans=meta.in_chans)
    load_state_dict_strict(model, state, source=str(source), backbone=meta.backbone)
    num_features = get_num_features(model)

    data = state_dict_bytes(state)
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.sha256_full:  # read_weights hashed the same serialisation
        raise RuntimeError(f"{source}: non-deterministic serialisation of the weights")
    out = Path(output_dir)
    stem = f"{meta.backbone}_{meta.method}-{digest[:8]}"
    paths = _export_paths(out, stem, overwrite)
    out.mkdir(parents=True, exist_ok=True)

    with source.open("rb") as f:
        source_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    files = {
        "weights": paths["pth"].name,
        "safetensors": paths["safetensors"].name,
        "checkpoint": paths["ckpt"].name,
    }
    metadata = _metadata(meta, raw, num_features, files, source_sha256)

    _write_export(paths, data, meta, state, metadata)

    _, exported = read_weights(paths["pth"])
    return ExportedWeights(
        weights=paths["pth"],
        safetensors=paths["safetensors"],
        checkpoint=paths["ckpt"],
        metadata=paths["json"],
        meta=exported,
    )


def load_backbone(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    backbone: str | None = None,
) -> LoadedBackbone:
    """Load a pretrained backbone for inference, with the description of its input.

    Args:
        path: a geossl pretraining ``.ckpt``, an exported ``.pth`` (with its ``.json``) or
            ``.ckpt``, a torchgeo-style Lightning checkpoint, a bare state dict or a timm
            checkpoint (see [`read_weights`][geossl.weights.read_weights]).
        device: where to put the model.
        backbone: timm architecture of a bare state dict without metadata (required there; a
            file that names its own must agree).

    Returns:
        The timm model (``num_classes=0``, eval mode, every tensor from the file: strict keys)
        and its [`WeightsMeta`][geossl.weights.WeightsMeta].

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: (one line, naming the file) for an unreadable or unknown file, a bare state
            dict without ``backbone``, a backbone other than the given one, key / in_chans
            mismatches, or unknown normalisation (a bare file of other than 3 bands).

    Example:
        >>> import tempfile, timm, torch
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "resnet18.pth"
        >>> torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
        >>> loaded = load_backbone(path, backbone="resnet18")
        >>> tuple(loaded.model(torch.rand(2, 3, 32, 32)).shape), loaded.meta.image_size
        ((2, 512), 224)
    """
    state, meta = read_weights(path, backbone=backbone)
    if backbone is not None and backbone.partition(".")[0] != meta.backbone.partition(".")[0]:
        raise ValueError(f"{path}: holds {meta.backbone} weights, not {backbone}")
    meta.require_normalization()
    model = create_backbone(meta.backbone, in_chans=meta.in_chans)
    load_state_dict_strict(model, state, source=str(path), backbone=meta.backbone)
    model.eval()
    model.to(device)
    return LoadedBackbone(model=model, meta=meta)
