"""The encoders of [`GeoSSLTask`][geossl.trainers.GeoSSLTask]: backbone + projection head on a view.

One free function of tensors and modules ([`run_encoder`][geossl.trainers.encoders.run_encoder])
does the work, so that ``torch.compile`` traces it once for every task
([`compiled_encoder`][geossl.trainers.encoders.compiled_encoder]);
[`encode_view`][geossl.trainers.encoders.encode_view] and
[`encode_keys`][geossl.trainers.encoders.encode_keys] wrap it for the query encoder and for the key
encoder under shuffle-BN.
"""

import functools
from collections.abc import Callable, Set
from typing import cast

import torch
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead
from torch import Tensor, nn

from geossl.models import forward_feature_map, pool_feature_map
from geossl.trainers.terms import VIEW_SOURCES, EncoderOutput
from geossl.transforms import GeoSSLAugmentation, ViewParams
from geossl.utils import batch_shuffle, batch_unshuffle

__all__ = [
    "compiled_encoder",
    "draw_views",
    "encode_keys",
    "encode_view",
    "projection_head",
    "run_encoder",
]


def projection_head(num_features: int, hidden_dim: int, dim: int, *, needed: bool) -> nn.Module:
    """MoCo-v2's 2-layer MLP head, or ``nn.Identity`` when no active term reads the projection.

    A recipe whose terms never read the MoCo projection (SCRL alone) gets no head: parameters
    without gradients would stop DDP (``find_unused_parameters`` is off by default). The query is
    then the normalised pooled feature, which the collapse monitor still reads.

    Example:
        >>> projection_head(512, 2048, 128, needed=True).layers[2].out_features
        128
        >>> projection_head(512, 2048, 128, needed=False)
        Identity()
    """
    head: nn.Module = MoCoProjectionHead(num_features, hidden_dim, dim) if needed else nn.Identity()
    return head


def run_encoder(
    backbone: nn.Module, head: nn.Module, x: Tensor, feature_map: bool, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One encoder on a view: ``(features [B, F], projection [B, D], embedding [B, D], map)``.

    A free function of tensors and modules (no ``self``), so that ``torch.compile`` can trace it
    once for every task (see [`compiled_encoder`][geossl.trainers.encoders.compiled_encoder]); the
    embedding is float32 and unit-norm, the map is ``[B, F, h, w]`` when ``feature_map`` is true,
    else ``None``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> features, projection, embedding, fmap = run_encoder(
        ...     backbone, nn.Linear(4, 2), torch.rand(5, 3, 8, 8), False, False
        ... )
        >>> features.shape, embedding.shape, fmap is None
        (torch.Size([5, 4]), torch.Size([5, 2]), True)
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fmap: Tensor | None = None
    if feature_map:
        fmap = forward_feature_map(backbone, x)  # [B, F, h, w]
        features = pool_feature_map(backbone, fmap)  # [B, F]
    else:
        features = backbone(x)  # [B, F]
    projection: Tensor = head(features)  # [B, D]
    embedding = F.normalize(projection.float(), dim=1)  # [B, D] float32
    return features, projection, embedding, fmap


EncoderFn = Callable[
    [nn.Module, nn.Module, Tensor, bool, bool], tuple[Tensor, Tensor, Tensor, Tensor | None]
]


@functools.cache
def compiled_encoder() -> EncoderFn:
    """`run_encoder` through ``torch.compile``, created once (``model.compile``).

    Dynamo specialises on the modules (query / key encoder), the flags, the grad mode and the
    autocast state, so one compiled function serves every task in the process.
    """
    return cast(EncoderFn, torch.compile(run_encoder))


def encode_view(
    backbone: nn.Module,
    head: nn.Module,
    x: Tensor,
    *,
    feature_map: bool,
    channels_last: bool,
    compile: bool,
) -> EncoderOutput:
    """Run one encoder (backbone + projection head) on a view.

    Args:
        backbone: the query or key backbone.
        head: its projection head.
        x: ``[B, C, S, S]`` view.
        feature_map: also return the un-pooled map.
        channels_last: feed the backbone a channels-last input.
        compile: go through [`compiled_encoder`][geossl.trainers.encoders.compiled_encoder].

    Returns:
        The encoder's outputs.
    """
    encode = compiled_encoder() if compile else run_encoder
    features, projection, embedding, fmap = encode(backbone, head, x, feature_map, channels_last)
    return EncoderOutput(features, projection, embedding, fmap)


@torch.no_grad()
def encode_keys(
    backbone: nn.Module,
    head: nn.Module,
    x: Tensor,
    *,
    shuffle_bn: bool,
    feature_map: bool,
    channels_last: bool,
    compile: bool,
) -> EncoderOutput:
    """Run the key encoder, with shuffle-BN (MoCo, Sec. 3.3) when ``shuffle_bn``.

    Args:
        backbone: the key (EMA) backbone.
        head: its projection head.
        x: ``[B, C, S, S]`` view.
        shuffle_bn: shuffle the batch (across ranks under DDP) so BN cannot leak the positive.
        feature_map: also return the un-pooled map.
        channels_last: feed the backbone a channels-last input.
        compile: go through [`compiled_encoder`][geossl.trainers.encoders.compiled_encoder].

    Returns:
        The key encoder's outputs, in the batch's original order.
    """
    flags = {"feature_map": feature_map, "channels_last": channels_last, "compile": compile}
    if not shuffle_bn:
        return encode_view(backbone, head, x, **flags)
    x, index = batch_shuffle(x)
    out = encode_view(backbone, head, x, **flags)
    return EncoderOutput(
        features=batch_unshuffle(out.features, index),
        projection=batch_unshuffle(out.projection, index),
        embedding=batch_unshuffle(out.embedding, index),
        feature_map=None if out.feature_map is None else batch_unshuffle(out.feature_map, index),
    )


def draw_views(
    augment: GeoSSLAugmentation,
    images: Tensor,
    sources: Set[str],
    *,
    in_chans: int,
    with_params: bool,
) -> tuple[dict[str, Tensor], dict[str, ViewParams]]:
    """The augmented views of ``sources`` (see `VIEW_SOURCES`) of a batch's image pairs.

    Args:
        augment: the batched augmentation.
        images: ``batch["image"]``, ``[B, 2, in_chans, H, W]`` (uint8 or float in [0, 1]).
        sources: the view sources the active terms encode.
        in_chans: the model's band count.
        with_params: also return each view's crop / flip parameters.

    Returns:
        The views by source, and their parameters (empty unless ``with_params``).

    Raises:
        ValueError: if ``images`` is not ``[B, 2, in_chans, H, W]``.
    """
    if images.ndim != 5 or images.shape[1] != 2 or images.shape[2] != in_chans:
        raise ValueError(
            f"batch['image'] must be [B, 2, {in_chans}, H, W], got {tuple(images.shape)}"
        )
    views: dict[str, Tensor] = {}
    view_params: dict[str, ViewParams] = {}
    for source in VIEW_SOURCES:  # fixed order: reproducible random draws
        if source not in sources:
            continue
        raw = images[:, VIEW_SOURCES[source]]  # [B, C, H, W]
        if with_params:
            views[source], view_params[source] = augment(raw, return_params=True)
        else:
            views[source] = augment(raw)
    return views, view_params
