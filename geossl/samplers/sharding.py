"""Splitting one epoch of samples over ``num_replicas`` processes (DistributedSampler's rule).

Shared by the pair samplers: every replica draws the same epoch (same seed) and keeps every
``num_replicas``-th sample from ``rank``, after the epoch is trimmed (``drop_last``) or padded by
wrapping around to a multiple of ``num_replicas``, so every replica yields the same count.
"""

import math

import torch
from torch import Tensor

__all__ = ["check_replicas", "shard_indices", "sharded_len"]


def check_replicas(num_replicas: int, rank: int) -> None:
    """Validate a replica count and rank.

    Raises:
        ValueError: unless ``num_replicas >= 1`` and ``0 <= rank < num_replicas``.
    """
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {rank}")


def sharded_len(total: int, num_replicas: int, drop_last: bool) -> int:
    """Samples one replica yields from an epoch of ``total``."""
    if num_replicas == 1:
        return total
    return total // num_replicas if drop_last else math.ceil(total / num_replicas)


def shard_indices(total: int, num_replicas: int, rank: int, drop_last: bool) -> Tensor:
    """Positions in ``0..total-1`` of this replica's samples, in order.

    Args:
        total: samples in the epoch.
        num_replicas: processes sharing it.
        rank: this process.
        drop_last: trim the tail that does not divide evenly (else pad by wrapping around).

    Returns:
        ``int64 [sharded_len(total, num_replicas, drop_last)]`` (empty when ``total`` is 0).

    Example:
        >>> shard_indices(10, num_replicas=3, rank=1, drop_last=False).tolist()  # padded: 0 again
        [1, 4, 7, 0]
        >>> shard_indices(10, num_replicas=3, rank=1, drop_last=True).tolist()
        [1, 4, 7]
    """
    if total == 0:
        return torch.zeros(0, dtype=torch.int64)
    padded = sharded_len(total, num_replicas, drop_last) * num_replicas
    return (torch.arange(padded) % total)[rank::num_replicas]
