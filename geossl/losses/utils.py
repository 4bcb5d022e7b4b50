"""Checks and preprocessing shared by the queue-based contrastive losses."""

import math

import torch.nn.functional as F
from torch import Tensor


def check_temperature(temperature: float) -> None:
    """Refuse a temperature that is not a finite positive number.

    Args:
        temperature: the softmax temperature.

    Raises:
        ValueError: naming ``temperature``.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")


def normalize_query_key_negatives(
    query: Tensor, key: Tensor, negatives: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes, detach the key and the negatives, and L2-normalise all three in float32.

    Call it with autocast disabled: the similarities that follow are divided by small
    temperatures (0.02), where bf16 rounding would dominate.

    Args:
        query: ``[B, D]`` query embeddings (gradient flows through).
        key: ``[B, D]`` positive key of each query.
        negatives: ``[K, D]`` negatives shared by every query.

    Returns:
        ``q [B, D]``, ``k [B, D]`` and ``n [K, D]``, float32 unit vectors; ``k`` and ``n`` detached.

    Raises:
        ValueError: if the shapes do not match.
    """
    if query.ndim != 2 or key.shape != query.shape:
        raise ValueError(
            f"query and key must both be [B, D], got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    if negatives.ndim != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(f"negatives must be [K, {query.shape[1]}], got {tuple(negatives.shape)}")
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(key.detach().float(), dim=1)
    n = F.normalize(negatives.detach().float(), dim=1)
    return q, k, n
