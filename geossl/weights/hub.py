"""torchgeo-style weights: GeoSSLWeights, LocalWeights, resnet18 and resnet50.

They mirror torchgeo's ``ResNet50_Weights`` and ``torchgeo.models.resnet50``: a ``WeightsEnum``
member of published weights, local files as ``Weights`` whose ``url`` is the file, and model
builders that load every backbone tensor strictly.
"""

import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn
from torchgeo.models import ResNet50_Weights
from torchvision.models._api import Weights, WeightsEnum

from geossl.transforms.augmentation import IMAGENET_MEAN, IMAGENET_STD
from geossl.utils.bands import RGB_BANDS, UINT8_SCALE

from .loading import _arch, classifier_prefixes, load_state_dict_strict
from .meta import build_transforms
from .readers import read_weights

__all__ = ["GeoSSLWeights", "LocalWeights", "LocalWeightsEnum", "resnet18", "resnet50"]


class LocalWeights(Weights):  # type: ignore[misc]
    """torchvision / torchgeo ``Weights`` of a local file: ``url`` is the file's path.

    ``get_state_dict`` reads the file with [`read_weights`][geossl.weights.readers.read_weights]
    (never the network, never a copy into the torch hub cache), so the object works wherever
    torchgeo's weights do, e.g. ``torchgeo.models.resnet50(weights=GeoSSLWeights.from_file(path))``.
    ``meta`` has torchgeo's keys (``model``, ``in_chans``, ``ssl_method``, ``dataset``, ``bands``)
    plus ``mean``, ``std``, ``scale``, ``image_size``, ``sha256`` and ``geossl_meta`` (the
    `WeightsMeta`).
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


class LocalWeightsEnum(WeightsEnum):  # type: ignore[misc]
    """A ``WeightsEnum`` of one member, ``FILE``: a local file (`GeoSSLWeights.from_file`).

    torchgeo's tasks (``ClassificationTask``, ``SemanticSegmentationTask``, ...) accept
    ``weights=`` as ``True``, a path of *their own* checkpoints, a registered weights name or a
    ``WeightsEnum`` member, which they load with ``member.get_state_dict(progress=True)``; a bare
    ``Weights`` is none of those. Each
    [`GeoSSLWeights.from_file`][geossl.weights.hub.GeoSSLWeights.from_file] call makes a subclass
    with one member whose value is the file's [`LocalWeights`][geossl.weights.hub.LocalWeights], and
    whose ``get_state_dict`` reads the file (never the network), so the member goes wherever
    torchgeo's ``ResNet50_Weights.FMOW_RGB_GASSL`` goes.
    """

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Read the state dict from the file (download options such as ``progress`` ignored).

        Args:
            *args: ignored.
            **kwargs: ignored.

        Returns:
            The plain timm state dict, classifier removed.
        """
        state: dict[str, Tensor] = self.value.get_state_dict()
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
    meta. Local files (an export, a checkpoint) become weights of the same kind with
    [`from_file`][geossl.weights.hub.GeoSSLWeights.from_file].

    Example::

        model = geossl.weights.resnet50(weights=GeoSSLWeights.FMOW_RGB_GASSL)
        weights = GeoSSLWeights.from_file("out/resnet50_tp_geo-1a2b3c4d.pth")
        model = geossl.weights.resnet50(weights=weights, num_classes=10)
    """

    FMOW_RGB_GASSL = Weights(
        url=ResNet50_Weights.FMOW_RGB_GASSL.url,
        transforms=ResNet50_Weights.FMOW_RGB_GASSL.transforms,
        meta=_gassl_meta(),
    )

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, backbone: str | None = None
    ) -> LocalWeightsEnum:
        """Torchgeo weights of a local file, fully offline: a ``WeightsEnum`` member.

        The member (``LocalWeightsEnum.FILE`` of a class made for the file) is what torchgeo's
        tasks and model builders take, like ``ResNet50_Weights.FMOW_RGB_GASSL``:
        ``ClassificationTask(model="resnet50", weights=GeoSSLWeights.from_file(path))``,
        ``torchgeo.models.resnet50(weights=...)``; its ``url``, ``transforms`` and ``meta`` are
        those of its [`LocalWeights`][geossl.weights.hub.LocalWeights] value.

        Args:
            path: any file [`read_weights`][geossl.weights.readers.read_weights] reads (an export's
                ``.pth`` with its ``.json`` is the usual one).
            backbone: timm name for a bare state dict without metadata.

        Returns:
            The member; its value is ``LocalWeights(url=<absolute path>,
                transforms=<build_transforms(meta)>, meta=<meta.torchgeo_meta()>)``.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: as [`read_weights`][geossl.weights.readers.read_weights], or if the input
                normalisation is unknown.
        """
        _, meta = read_weights(path, backbone=backbone)
        local = LocalWeights(
            url=str(Path(path).resolve()),
            transforms=build_transforms(meta),
            meta=meta.torchgeo_meta(),
        )
        # Enum's functional API: a subclass of LocalWeightsEnum with the one member FILE.
        enum = LocalWeightsEnum(f"{Path(path).stem.replace('-', '_')}_weights", [("FILE", local)])
        member: LocalWeightsEnum = enum.FILE
        return member


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
            ``Weights`` (e.g.
            [`GeoSSLWeights.from_file`][geossl.weights.hub.GeoSSLWeights.from_file]) or a path read
            by [`read_weights`][geossl.weights.readers.read_weights].
        *args: passed to `timm.create_model`.
        **kwargs: passed to `timm.create_model` (``num_classes=0`` for a backbone that
            returns pooled features; ``in_chans`` defaults to the weights').

    Returns:
        The timm model; every backbone tensor comes from ``weights`` (checked strictly), only the
        classifier ``fc`` keeps its initialisation.

    Raises:
        ValueError: if the weights are for another architecture or band count, or their keys do
            not match.

    Example:
        >>> import tempfile, timm, torch
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "resnet18.pth"
        >>> torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
        >>> model = resnet18(weights=path, num_classes=10)  # the backbone from the file
        >>> tuple(model.eval()(torch.rand(1, 3, 32, 32)).shape)
        (1, 10)
    """
    return _build("resnet18", weights, *args, **kwargs)


def resnet50(weights: Any = None, *args: Any, **kwargs: Any) -> nn.Module:
    """ResNet-50 (timm) with optional pretrained weights, like ``torchgeo.models.resnet50``.

    Args:
        weights: ``None`` (random init), a ``WeightsEnum`` member (e.g.
            ``GeoSSLWeights.FMOW_RGB_GASSL``, downloaded on first use), a ``Weights`` (e.g.
            [`GeoSSLWeights.from_file`][geossl.weights.hub.GeoSSLWeights.from_file]) or a path read
            by [`read_weights`][geossl.weights.readers.read_weights].
        *args: passed to `timm.create_model`.
        **kwargs: passed to `timm.create_model` (``num_classes=0`` for a backbone that
            returns pooled features; ``in_chans`` defaults to the weights').

    Returns:
        The timm model; every backbone tensor comes from ``weights`` (checked strictly), only the
        classifier ``fc`` keeps its initialisation.

    Raises:
        ValueError: if the weights are for another architecture or band count, or their keys do
            not match.
    """
    return _build("resnet50", weights, *args, **kwargs)
