"""The DataLoader settings every data module shares, in one place.

Each data module builds its loaders from [`loader_kwargs`][geossl.datamodules.loaders.loader_kwargs]
and adds only what is its own (sampler or shuffle, ``drop_last``, ``collate_fn``, a seeded
generator). The rule:

- ``pin_memory`` only when CUDA is available: pinned host memory speeds up the copy to a GPU
  and is wasted work (and a warning) without one.
- ``persistent_workers`` only with ``num_workers > 0``: DataLoader refuses it without worker
  processes; with them it saves re-forking (and re-opening files) every epoch.
- ``prefetch_factor`` only with ``num_workers > 0``: DataLoader refuses it without workers;
  4 batches per worker (the default is 2) hide the decode time of large images. A module whose
  batches are cheap passes ``prefetch_factor=None`` to keep DataLoader's default.
"""

from typing import Any

import torch

__all__ = ["PREFETCH_FACTOR", "loader_kwargs"]

PREFETCH_FACTOR = 4
"""Batches each worker loads ahead where decoding images is the bottleneck."""


def loader_kwargs(
    batch_size: int,
    num_workers: int,
    *,
    pin_memory: bool,
    persistent_workers: bool,
    prefetch_factor: int | None = PREFETCH_FACTOR,
) -> dict[str, Any]:
    """DataLoader keyword arguments for the shared settings (see the module's docstring).

    Args:
        batch_size: samples per batch.
        num_workers: worker processes (0: load in the main process).
        pin_memory: pin batches if CUDA is available (ignored without CUDA).
        persistent_workers: keep the workers between epochs (ignored without workers).
        prefetch_factor: batches each worker loads ahead (ignored without workers; None keeps
            DataLoader's default).

    Returns:
        ``batch_size``, ``num_workers``, ``pin_memory`` and, with workers,
        ``persistent_workers`` and ``prefetch_factor``: to unpack into ``DataLoader(...)``.

    Example:
        >>> kwargs = loader_kwargs(8, 0, pin_memory=False, persistent_workers=True)
        >>> print(tuple(sorted(kwargs)))
        ('batch_size', 'num_workers', 'pin_memory')
    """
    kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "pin_memory": pin_memory and torch.cuda.is_available(),
    }
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return kwargs
