"""The MoCo queue of negative keys, as checkpointed state."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geossl.utils.checks import check_at_least
from geossl.utils.distributed import concat_all_gather, world_size

__all__ = ["KeyQueue"]


class KeyQueue(nn.Module):
    """A first-in first-out ring buffer of L2-normalised keys (MoCo's dictionary).

    MoCo (He et al., CVPR 2020, https://arxiv.org/abs/1911.05722) contrasts each query with the
    $K$ most recent keys of the momentum encoder. The queue is training state: both ``queue``
    and ``ptr`` are *persistent* buffers, so they are saved in ``state_dict()`` / Lightning
    checkpoints and restored on resume (lightly's ``MemoryBankModule`` registers its bank
    with ``persistent=False``).

    Under DDP, [`enqueue`][geossl.models.queue.KeyQueue.enqueue] first all-gathers the keys of every
    rank (concatenated in rank order, as MoCo's ``concat_all_gather``), so every rank holds the same
    queue.

    Attributes:
        queue: ``[size, dim]`` float32 keys, initialised with L2-normalised Gaussian noise
            (MoCo initialises with random unit vectors too).
        ptr: long scalar, the row the next key goes to.

    Args:
        dim: key dimension (128 for MoCo-v2).
        size: number of keys $K$ (65,536 in MoCo and Geography-aware SSL).

    Raises:
        ValueError: if ``dim`` or ``size`` is < 1.
    """

    queue: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int = 65536) -> None:
        super().__init__()
        check_at_least("dim", dim, 1)
        check_at_least("size", size, 1)
        self.dim = dim
        self.size = size
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1), persistent=True)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long), persistent=True)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write a batch of keys over the oldest ones and advance the pointer.

        With ``N = B * world_size`` gathered keys and pointer ``p``, key ``i`` goes to row
        ``(p + i) mod size`` (keys past the end continue at row 0), and the pointer becomes
        ``(p + N) mod size``. When ``N > size`` only the last ``size`` keys are kept, at the rows
        they would have reached by writing all ``N`` in order. Runs on the device without a host
        synchronisation.

        Args:
            keys: ``[B, dim]`` L2-normalised keys of this rank (detached; cast to the queue dtype).
                Under DDP every rank must pass the same ``B``.

        Raises:
            ValueError: if ``keys`` is not ``[B, dim]``.
        """
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be [B, {self.dim}], got {tuple(keys.shape)}")
        keys = keys.detach()
        if world_size() > 1:
            keys = concat_all_gather(keys)  # [B * world, dim], rank order
        keys = keys.to(dtype=self.queue.dtype, device=self.queue.device)
        n = keys.shape[0]
        first = max(n - self.size, 0)  # keys before `first` would be overwritten in the same call
        offsets = torch.arange(first, n, device=self.queue.device)  # [min(n, size)]
        rows = (self.ptr + offsets) % self.size
        self.queue.index_copy_(0, rows, keys[first:])
        self.ptr.copy_((self.ptr + n) % self.size)

    def negatives(self) -> Tensor:
        """A snapshot of the queue to use as negatives.

        The step computes the loss, then enqueues the new keys *before* backward runs, and the
        in-place write would invalidate a tensor that autograd saved for the backward of
        ``query @ negatives.T``. So this returns a detached copy.

        Returns:
            ``[size, dim]`` detached copy of the queue.
        """
        return self.queue.detach().clone()

    def extra_repr(self) -> str:
        """Describe the queue in ``repr``."""
        return f"dim={self.dim}, size={self.size}"
