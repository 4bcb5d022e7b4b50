"""The [`WeightsMeta`][geossl.weights.WeightsMeta] of a geossl pretraining checkpoint.

A [`GeoSSLTask`][geossl.trainers.GeoSSLTask] checkpoint describes itself: its hyper-parameters hold
the resolved ``losses`` and ``loss_options`` and an ``input_block`` (band names, bands, the
raw-to-``[0, 1]`` scale, mean, std, image size) that the data module supplies, ``geossl
pretrain`` links into the task and the task completes when it saves. Reading it needs no
trainer and no dataset import. Checkpoints written before the ``input_block`` existed are read
from their data module's hyper-parameters (`_legacy_input`), as they were then.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geossl.transforms.augmentation import IMAGENET_MEAN, IMAGENET_STD
from geossl.utils.bands import UINT8_SCALE

from .meta import WeightsMeta

__all__ = ["LEGACY_DEFAULT_LOSSES", "pretrain_method"]

#: What ``losses: null`` meant in the checkpoints written before they recorded their resolved
#: losses (GeoSSLTask's default then). Newer checkpoints always name their losses.
LEGACY_DEFAULT_LOSSES: dict[str, float] = {"tp": 1.0, "geo": 1.0}


def pretrain_method(losses: Mapping[str, float] | None) -> str:
    """Name of a pretraining recipe: its active loss terms joined by ``_``.

    Args:
        losses: the recipe's loss weights (``None``: an old checkpoint's default, TP + Geo).

    Returns:
        E.g. ``"tp_geo"`` (GeoSSL's full method), ``"moco"``, ``"tp_co2"``.

    Example:
        >>> pretrain_method({"tp": 1.0, "geo": 1.0, "co2": 0.0})
        'tp_geo'
    """
    if losses is None:
        losses = LEGACY_DEFAULT_LOSSES
    return "_".join(name for name, weight in losses.items() if weight > 0) or "none"


def _fmow_bands(datamodule: Mapping[str, Any], in_chans: int) -> tuple[str, ...] | None:
    """Band names of an FMoWDataModule's images, None if the hyper-parameters do not say."""
    # Imported here: geossl.datasets is heavy and only FMoW checkpoints need its product table.
    from geossl.datasets.fmow.constants import product_band_names

    product = datamodule.get("product")
    selected = datamodule.get("bands")
    bands = [int(b) for b in selected] if selected else None
    names = product_band_names(product, bands) if isinstance(product, str) else None
    return names if names is not None and len(names) == in_chans else None


def _fmow_scale(datamodule: Mapping[str, Any]) -> float:
    """Raw-to-[0, 1] factor of an FMoWDataModule product.

    1/255 (JPEG), 1/2047 (11-bit ms) or 1e-4 (fMoW-Sentinel reflectance x 10,000).
    """
    from geossl.datasets.fmow.constants import product_input_scale

    product = datamodule.get("product")
    scale = product_input_scale(product) if isinstance(product, str) else None
    return UINT8_SCALE if scale is None else scale


def _legacy_input(
    hp: Mapping[str, Any], datamodule: Mapping[str, Any], in_chans: int
) -> tuple[tuple[str, ...] | None, float, str | None]:
    """Band names, scale and dataset of an old checkpoint, from its data module's parameters."""
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
    return bands, scale, "fmow" if is_fmow else ("rasters" if is_rasters else None)


def _geossl_checkpoint_meta(
    path: Path, checkpoint: Mapping[str, Any], in_chans: int, digest: str
) -> WeightsMeta:
    """Meta of a GeoSSLTask checkpoint: its ``input_block``, or its old data hyper-parameters."""
    hp: Mapping[str, Any] = checkpoint["hyper_parameters"]
    block = hp.get("input_block")
    if isinstance(block, Mapping) and "mean" in block:  # a checkpoint that describes itself
        bands: tuple[str, ...] | None = tuple(str(b) for b in block["band_names"])
        mean, std = block["mean"], block["std"]
        scale, dataset = float(block["scale"]), block.get("dataset")
        image_size = int(block["image_size"])
    else:
        datamodule: Mapping[str, Any] = checkpoint.get("datamodule_hyper_parameters") or {}
        bands, scale, dataset = _legacy_input(hp, datamodule, in_chans)
        mean = hp.get("mean") or (IMAGENET_MEAN if in_chans == 3 else ())
        std = hp.get("std") or (IMAGENET_STD if in_chans == 3 else ())
        image_size = int(hp.get("crop_size", 224))
    if bands is None or len(bands) != in_chans:
        bands = tuple(f"band_{i + 1}" for i in range(in_chans))
    losses = hp.get("losses")
    if losses is None:
        losses = LEGACY_DEFAULT_LOSSES
    info = {k: v for k, v in hp.items() if not k.startswith("_")}
    return WeightsMeta(
        backbone=str(hp["backbone"]),
        in_chans=in_chans,
        bands=bands,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        # GeoSSLAugmentation divides uint8 batches by 255; float batches are taken as [0, 1].
        scale=scale,
        image_size=image_size,
        method=pretrain_method(losses),
        sha256=digest[:8],
        source=path,
        source_format="geossl-checkpoint",
        has_metadata=True,
        sha256_full=digest,
        losses={str(name): float(weight) for name, weight in losses.items()},
        dataset=None if dataset is None else str(dataset),
        epoch=checkpoint.get("epoch"),
        global_step=checkpoint.get("global_step"),
        info=info,
    )
