"""Distributed helpers that are safe to call in a single process.

Every function here checks [`world_size`][geossl.utils.distributed.world_size] first and is a no-op
(or the identity) when ``torch.distributed`` is not initialised, so losses, the key queue and the
trainer call them unconditionally and the same code runs on one CPU, one GPU or under DDP.

The batch-shuffle helpers wrap lightly's ``batch_shuffle`` / ``batch_unshuffle`` (the MoCo
reference implementation, He et al., CVPR 2020, https://arxiv.org/abs/1911.05722) and choose the
distributed variant automatically.
"""

import torch
import torch.distributed as dist
from lightly.models.utils import batch_shuffle as _lightly_batch_shuffle
from lightly.models.utils import batch_unshuffle as _lightly_batch_unshuffle
from torch import Tensor

__all__ = ["batch_shuffle", "batch_unshuffle", "concat_all_gather", "rank", "world_size"]


def world_size() -> int:
    """Number of processes in the default process group.

    Returns:
        ``torch.distributed.get_world_size()`` when a process group is initialised, else 1.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """Rank of this process in the default process group.

    Returns:
        ``torch.distributed.get_rank()`` when a process group is initialised, else 0.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


@torch.no_grad()
def concat_all_gather(t: Tensor) -> Tensor:
    """Concatenate a tensor from every rank along dim 0, in rank order.

    No gradient flows through the gather (it runs under ``torch.no_grad``), as in MoCo's
    ``concat_all_gather``: it is meant for keys, which come from the momentum encoder.

    Every rank must pass a tensor of the same shape (``torch.distributed.all_gather``
    requirement): use ``drop_last=True`` in the training loader under DDP.

    Args:
        t: tensor ``[N, ...]`` on this rank.

    Returns:
        ``[world_size * N, ...]``, rank 0's rows first; ``t`` itself when not distributed.
    """
    n = world_size()
    if n == 1:
        return t
    t = t.contiguous()
    gathered = [torch.empty_like(t) for _ in range(n)]
    dist.all_gather(gathered, t)
    return torch.cat(gathered, dim=0)


@torch.no_grad()
def batch_shuffle(batch: Tensor) -> tuple[Tensor, Tensor]:
    """Shuffle a batch for shuffle-BN (across all ranks when distributed).

    MoCo's shuffle-BN: the key encoder sees its samples in a random order (and, under DDP, mixed
    across GPUs) so that its batch-norm statistics cannot leak which key pairs with which query.
    Under DDP every rank must pass the same batch size (lightly gathers, permutes with rank 0's
    permutation and scatters back a ``B``-sized slice).

    Args:
        batch: ``[B, ...]`` tensor on this rank.

    Returns:
        ``(shuffled [B, ...], index)``; pass ``index`` to
        [`batch_unshuffle`][geossl.utils.distributed.batch_unshuffle].
    """
    shuffled, index = _lightly_batch_shuffle(batch, distributed=world_size() > 1)
    return shuffled, index


@torch.no_grad()
def batch_unshuffle(batch: Tensor, index: Tensor) -> Tensor:
    """Undo `batch_shuffle` on an output of the shuffled batch.

    Args:
        batch: ``[B, ...]`` computed from the shuffled batch (any trailing shape).
        index: the index returned by [`batch_shuffle`][geossl.utils.distributed.batch_shuffle].

    Returns:
        ``[B, ...]`` in this rank's original sample order.
    """
    out: Tensor = _lightly_batch_unshuffle(batch, index, distributed=world_size() > 1)
    return out
