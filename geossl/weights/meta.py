"""What a backbone weight file holds and expects as input: `WeightsMeta`.

The input the weights were trained on is ``x = (raw * scale - mean) / std`` per band, on images
resized to ``image_size``; [`build_transforms`][geossl.weights.meta.build_transforms] builds that as
torchgeo builds its weights' ``transforms``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.v2 as T
from torch import nn

__all__ = [
    "METADATA_FORMAT",
    "METADATA_VERSION",
    "WeightsMeta",
    "build_transforms",
]


#: ``format`` of the metadata JSON written by :func:`geossl.weights.export_weights`.
METADATA_FORMAT = "geossl-weights"


#: Version of that JSON's layout (bumped on incompatible changes).
METADATA_VERSION = 1


@dataclass(frozen=True)
class WeightsMeta:
    """What a backbone weight file holds and what input it expects.

    The input the weights were trained on is ``x = (raw * scale - mean) / std`` per band, on images
    resized to ``image_size`` ([`build_transforms`][geossl.weights.meta.build_transforms] builds
    this).

    Attributes:
        backbone: timm model name (``"resnet50"``).
        in_chans: input bands (from the first convolution's weight).
        bands: band names in input order (``("band_1", ...)`` when unknown).
        mean: per-band mean of the ``[0, 1]`` input (empty when unknown, see
            [`has_normalization`][geossl.weights.meta.WeightsMeta.has_normalization]).
        std: per-band standard deviation of the ``[0, 1]`` input (empty when unknown).
        scale: factor from raw pixel values to ``[0, 1]`` (1/255 for 8-bit JPEG / PNG, 1/2047 for
            fMoW-full's 11-bit GeoTIFFs).
        image_size: side in pixels of the images the backbone was trained on (the pretraining
            ``crop_size``; 224 for torchgeo's and timm's weights).
        method: pretraining recipe: the active loss terms joined by ``_`` (``"tp_geo"`` is
            GeoSSL's full method, ``"moco"`` MoCo-v2); ``"unknown"`` for a bare file.
        sha256: first 8 hex digits of the SHA-256 of the weight file: of the file itself for a
            ``.pth`` / ``.safetensors``, of the ``.pth`` that
            [`geossl.weights.export_weights`][geossl.weights.export_weights] writes for a checkpoint
            (so the same weights get the same id from either file).
        source: the file read.
        source_format: ``"geossl-checkpoint"``, ``"geossl-weights"`` (an export's ``.pth`` or
            ``.ckpt``), ``"lightning-checkpoint"`` (torchgeo layout), ``"timm-checkpoint"`` or
            ``"state-dict"``.
        has_metadata: True when bands and normalisation come from the file's metadata (a geossl
            checkpoint or export, or a hand-written ``.json``); False when they are the RGB /
            ImageNet defaults assumed for a bare 3-band file.
        sha256_full: the whole SHA-256 hex digest behind `sha256`.
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
        """Whether `mean` and `std` are known (one value per band)."""
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
        """The meta dict of a torchgeo-style `Weights` (torchgeo's keys, then geossl's).

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
        ValueError: if the normalisation is unknown (see
            `WeightsMeta.require_normalization`).
    """
    meta.require_normalization()
    size = meta.image_size
    return nn.Sequential(
        T.ToDtype(torch.float32),
        T.Resize((size, size), antialias=True),
        T.Normalize(mean=[0.0], std=[1.0 / meta.scale]),
        T.Normalize(mean=list(meta.mean), std=list(meta.std)),
    )
