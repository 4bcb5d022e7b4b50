"""A plain shuffle whose order is a function of ``(seed, epoch)``, so a resumed run repeats it."""

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffleSampler"]


class EpochShuffleSampler(Sampler[int]):
    """Every index of ``0..num_samples-1`` once per epoch, in the order of ``seed + epoch``.

    What ``DataLoader(shuffle=True)`` does, except that its permutation comes from
    ``torch.Generator().manual_seed(seed + epoch)`` instead of torch's global generator: the order
    of an epoch can be drawn again after a restart. The epoch advances by one after each
    ``__iter__``; [`set_epoch`][geossl.samplers.shuffle.EpochShuffleSampler.set_epoch] sets it
    (Lightning calls it before every epoch), as for
    [`TemporalPairSampler`][geossl.samplers.TemporalPairSampler].

    Args:
        num_samples: the dataset's length.
        seed: base seed (``seed + epoch``).

    Raises:
        ValueError: if ``num_samples`` is negative.

    Example:
        >>> sampler = EpochShuffleSampler(5, seed=0)
        >>> first = list(sampler)
        >>> sorted(first), sampler.epoch
        ([0, 1, 2, 3, 4], 1)
        >>> sampler.set_epoch(0)
        >>> list(sampler) == first
        True
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be non-negative, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used by the next ``__iter__`` (seed + epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Indexes per epoch."""
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        """This epoch's permutation; advances the epoch."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())
