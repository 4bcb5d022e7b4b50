"""The one strict loader, and the hashing that identifies weights.

Loading is strict ([`load_state_dict_strict`][geossl.weights.loading.load_state_dict_strict],
[`check_state_dict`][geossl.weights.loading.check_state_dict]): every tensor of the model must come
from the file and every tensor of the file must land in the model; the only keys ever dropped are a
classifier's (``fc.*`` for ResNets, timm's ``pretrained_cfg["classifier"]``), which pretrained
backbones do not use, and prefixes the caller names.
[`state_dict_bytes`][geossl.weights.loading.state_dict_bytes] serialises a state dict exactly as an
export's ``.pth``, so its SHA-256 identifies the weights.
"""

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

__all__ = [
    "check_backbone_weights",
    "check_state_dict",
    "classifier_prefixes",
    "load_state_dict_strict",
    "state_dict_bytes",
]


#: Buffers that torchvision's FrozenBatchNorm2d (detection backbones) does not have.
_OPTIONAL_BUFFERS = ("num_batches_tracked",)


def state_dict_bytes(state_dict: Mapping[str, Tensor]) -> bytes:
    """Serialise a state dict exactly as `geossl.weights.export_weights` writes its ``.pth``.

    ``torch.save`` into memory, so the archive's inner folder is always ``archive/`` whatever the
    file is called; with contiguous, compact tensors (see `_canonical`) the bytes depend only
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
    """The weight key of the input layer: timm's ``first_conv`` (``conv1.weight`` for ResNets).

    Returns:
        The key when ``keys`` hold it, else None.
    """
    cfg = timm.get_pretrained_cfg(backbone, allow_unregistered=True) if backbone else None
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    key = f"{first}.weight" if isinstance(first, str) else "conv1.weight"
    return key if key in keys else None


def _preview(keys: Sequence[str], limit: int = 3) -> str:
    """``a, b, c, ... (+N more)``."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    expected: Mapping[str, Tensor],
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    backbone: str = "",
    allow_missing: Sequence[str] = (),
    ignore_prefixes: Sequence[str] = (),
) -> dict[str, Tensor]:
    """The tensors of ``state_dict`` for a model with ``expected`` tensors, checked strictly.

    Args:
        expected: the model's state dict (a ``meta``-device one is enough).
        state_dict: plain timm-key weights.
        source: what to name in errors (the file, or ``model.init_weights: FILE``).
        backbone: timm name of the model (to find its first convolution); ``""`` skips the
            band-count check.
        allow_missing: key prefixes of the model that may be absent from ``state_dict`` and keep
            their initialisation (a new classifier, e.g. ``("fc.",)``).
        ignore_prefixes: key prefixes of ``state_dict`` the model lacks on purpose (a trunk cut
            short, e.g. ``("layer4.",)``).

    Returns:
        The tensors to load: ``state_dict`` without ``ignore_prefixes`` and without the
        ``num_batches_tracked`` buffers that torchvision's ``FrozenBatchNorm2d`` lacks.

    Raises:
        ValueError: on an input-band (in_chans) mismatch, missing or unexpected keys, or other
            shape mismatches, in one line naming ``source``.

    Example:
        >>> import torch
        >>> expected = {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(2, 8)}
        >>> sorted(check_state_dict(expected, expected, source="w.pth"))
        ['conv1.weight', 'fc.weight']
        >>> check_state_dict(expected, {"conv1.weight": torch.zeros(8, 3, 3, 3)}, source="w.pth")
        Traceback (most recent call last):
        ...
        ValueError: w.pth: keys do not match the model: 1 missing (fc.weight)
    """
    wanted = {
        k: v
        for k, v in state_dict.items()
        if not k.startswith(tuple(ignore_prefixes))
        and not (k.endswith(_OPTIONAL_BUFFERS) and k not in expected)
    }
    conv = _first_conv_key(backbone, list(expected))
    if conv is not None and conv in wanted:
        got, want = wanted[conv].shape, expected[conv].shape
        if len(got) >= 2 and len(want) >= 2 and got[1] != want[1]:
            raise ValueError(
                f"{source}: in_chans mismatch: the weights have {got[1]} input bands "
                f"({conv} {tuple(got)}) but the model has in_chans={want[1]}"
            )
    missing = [k for k in expected if k not in wanted and not k.startswith(tuple(allow_missing))]
    unexpected = [k for k in wanted if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_preview(unexpected)})")
        name = f"timm {backbone!r}" if backbone else "the model"
        raise ValueError(f"{source}: keys do not match {name}: {'; '.join(parts)}")
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in wanted.items()
        if v.shape != expected[k].shape
    ]
    if mismatched:
        raise ValueError(f"{source}: shape mismatch (file vs model): {_preview(mismatched)}")
    return wanted


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    backbone: str | None = None,
    allow_missing: Sequence[str] = (),
    ignore_prefixes: Sequence[str] = (),
) -> None:
    """Load a state dict into a model, refusing any missing, unexpected or mis-shaped tensor.

    The one strict loader of geossl: pretraining ``init_weights``, the downstream trunks (a timm
    or torchvision ResNet, the ``body`` of a torchvision detection backbone, an smp encoder: all
    use timm's keys), [`resnet50`][geossl.weights.resnet50] and the probe. Unlike
    ``model.load_state_dict(strict=False)`` (torchgeo's loaders) nothing is dropped or left at its
    random initialisation silently; unlike ``strict=True`` the error is one line that names the
    file and says what differs, with the input-band count first
    ([`check_state_dict`][geossl.weights.loading.check_state_dict]).

    Args:
        model: the model to fill.
        state_dict: plain timm state dict.
        source: what to name in errors.
        backbone: timm name of the model (to find its first convolution); ``None`` reads
            ``model.pretrained_cfg["architecture"]`` (``""`` when the model is not timm's).
        allow_missing: key prefixes of the model that may keep their initialisation.
        ignore_prefixes: key prefixes of ``state_dict`` the model lacks on purpose.

    Raises:
        ValueError: as [`check_state_dict`][geossl.weights.loading.check_state_dict].

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=0)
        >>> load_state_dict_strict(model, model.state_dict(), source="same.pth")
    """
    if backbone is None:
        cfg = getattr(model, "pretrained_cfg", None)
        backbone = str(cfg.get("architecture", "")) if isinstance(cfg, Mapping) else ""
    wanted = check_state_dict(
        model.state_dict(),
        state_dict,
        source=source,
        backbone=backbone,
        allow_missing=allow_missing,
        ignore_prefixes=ignore_prefixes,
    )
    with torch.no_grad():
        model.load_state_dict(wanted, strict=not allow_missing)


def check_backbone_weights(
    state_dict: Mapping[str, Tensor], backbone: str, in_chans: int, *, source: str
) -> None:
    """Check that ``state_dict`` fills a timm ``backbone`` exactly, without building it.

    The model is created on the ``meta`` device (no memory, no initialisation), so the check is
    cheap even for large backbones.

    Raises:
        ValueError: as [`check_state_dict`][geossl.weights.loading.check_state_dict].
    """
    with torch.device("meta"):
        model = timm.create_model(backbone, num_classes=0, in_chans=in_chans)
    check_state_dict(model.state_dict(), state_dict, source=source, backbone=backbone)
