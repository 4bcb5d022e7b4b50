"""A training DataLoader that a checkpoint can resume mid-epoch, batch for batch.

Lightning saves the ``state_dict()`` of every training loader that has one in its checkpoints
(``loops.fit_loop.state_dict.combined_loader``) and gives it back with ``load_state_dict``
before the resumed run iterates.
[`ResumableDataLoader`][geossl.datamodules.resumable.ResumableDataLoader] records which epoch it
is in and how many batches it has handed out; after a reload the next iteration of that epoch
skips those batches at the sampler (their indexes are drawn and dropped, no image is read), so
the resumed run sees exactly the batches the uninterrupted run would have seen next. Two
conditions make that order the same:

- the sampler's order is a function of its epoch (``set_epoch``, which Lightning calls before
  every epoch): the pair samplers and
  [`EpochShuffleSampler`][geossl.samplers.shuffle.EpochShuffleSampler] draw from
  ``seed + epoch``;
- the loader's own ``generator``, which gives the workers' base seed (``torch.initial_seed()``
  in each worker is ``base_seed + worker_id``), is re-seeded from ``(seed, epoch)`` at the start
  of each epoch ([`epoch_seed`][geossl.datamodules.resumable.epoch_seed]), so iterating never
  draws from torch's global generator, whose state belongs to the training step.

Under DDP Lightning re-creates the loader with a ``DistributedSamplerWrapper`` around the sampler
(the ``seed`` is kept, and Lightning forwards ``set_epoch`` to the wrapped sampler): every rank
hands out the same number of batches, rank 0's count is saved and every rank skips it, each in
its own shard.
"""

from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = ["ResumableDataLoader", "epoch_seed"]

T = TypeVar("T")

_SEED_BITS = 63  # torch.Generator.manual_seed takes any int below 2**64; stay positive


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of a loader's generator in ``epoch``: ``(seed, epoch)`` mixed by a SeedSequence.

    Mixed rather than added so that it does not coincide with the pair samplers' ``seed + epoch``.

    Args:
        seed: the data module's seed.
        epoch: the epoch (0-based).

    Returns:
        A non-negative 63-bit integer.

    Example:
        >>> epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2)
        True
    """
    words = np.random.SeedSequence([seed % 2**64, epoch % 2**64]).generate_state(2, np.uint32)
    return (int(words[0]) << 32 | int(words[1])) & ((1 << _SEED_BITS) - 1)


class _SkippingIndexSampler:
    """The loader's index sampler, dropping the first batches the loader asks to skip."""

    def __init__(self, loader: "ResumableDataLoader[Any]", inner: Any) -> None:
        self.loader = loader
        self.inner = inner

    def __len__(self) -> int:
        # The whole epoch: Lightning counts the resumed batches itself.
        return len(self.inner)

    def __iter__(self) -> Iterator[Any]:
        # The count now (DataLoader asks for the iterator while the loader sets it), the draws
        # at the first next(), as BatchSampler's: DataLoader may build an iterator it drops.
        return self._indexes(self.loader._skip)

    def _indexes(self, skip: int) -> Iterator[Any]:
        indexes = iter(self.inner)
        deque(islice(indexes, skip), maxlen=0)  # draw and drop: nothing is loaded
        yield from indexes


class ResumableDataLoader(DataLoader[T]):
    """A map-style DataLoader whose position in the epoch is saved and restored by Lightning.

    Args:
        dataset: a map-style dataset.
        *args: DataLoader's positional arguments.
        seed: seed of the loader's ``generator`` (re-seeded with ``epoch_seed(seed, epoch)``
            at the start of every epoch).
        **kwargs: DataLoader's keyword arguments (``sampler`` or ``shuffle``, ``batch_size``,
            ``num_workers``, ...). A ``generator`` given here is re-seeded the same way.

    Raises:
        TypeError: for an iterable-style dataset (its position cannot be skipped to).

    Example:
        >>> data = torch.arange(10)
        >>> loader = ResumableDataLoader(data, batch_size=2)
        >>> batches = iter(loader)
        >>> next(batches).tolist(), next(batches).tolist()
        ([0, 1], [2, 3])
        >>> state = loader.state_dict()
        >>> state
        {'epoch': 0, 'batches': 2}
        >>> resumed = ResumableDataLoader(data, batch_size=2)
        >>> resumed.load_state_dict(state)
        >>> torch.cat(list(resumed)).tolist()  # the last three batches
        [4, 5, 6, 7, 8, 9]
    """

    def __init__(self, dataset: Dataset[T], *args: Any, seed: int = 0, **kwargs: Any) -> None:
        if isinstance(dataset, IterableDataset):
            raise TypeError("ResumableDataLoader needs a map-style dataset, got an iterable one")
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator()
        super().__init__(dataset, *args, **kwargs)
        self.seed = seed
        self._epoch = 0  # the epoch of the current (or last) iteration
        self._batches = 0  # batches handed out in it
        self._next_epoch = 0  # for samplers without an ``epoch``: iterations so far
        self._pending: tuple[int, int] | None = None  # (epoch, batches) of a loaded state
        self._skip = 0  # batches _SkippingIndexSampler drops

    @property
    def _index_sampler(self) -> Any:
        # DataLoader's own property (the batch sampler, or the sampler without batching),
        # wrapped so that a resumed epoch starts after the batches already handed out.
        return _SkippingIndexSampler(self, super()._index_sampler)

    def state_dict(self) -> dict[str, int]:
        """The epoch being iterated and the batches handed out in it (saved by Lightning)."""
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the next iteration of the saved epoch skips its first ``batches`` batches.

        A complete epoch resumes at the start of the next one. The state applies only to the
        iteration of its epoch (the sampler's ``epoch`` when it has one): another epoch starts
        from its beginning.

        Args:
            state_dict: what
                [`state_dict`][geossl.datamodules.resumable.ResumableDataLoader.state_dict]
                returned.
        """
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches"])
        self._epoch, self._batches = epoch, batches
        if batches >= len(self):
            self._pending, self._next_epoch = None, epoch + 1
        else:
            self._pending, self._next_epoch = (epoch, batches), epoch

    def _iteration_epoch(self) -> int:
        """The epoch of the iteration that starts now: the sampler's, else the loader's count."""
        epoch = getattr(self.sampler, "epoch", None)
        return epoch if isinstance(epoch, int) else self._next_epoch

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        """Batches of this epoch (after a reload: those not yet handed out)."""
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        # A generator: its body runs at the first next(), after Lightning's set_epoch.
        epoch = self._iteration_epoch()
        skip = self._pending[1] if self._pending and self._pending[0] == epoch else 0
        self._pending = None
        self._epoch, self._batches, self._next_epoch = epoch, skip, epoch + 1
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed, epoch))
        # Set while DataLoader builds its iterator (which may iterate the sampler twice).
        self._skip = skip
        batches = super().__iter__()
        self._skip = 0
        for batch in batches:
            self._batches += 1
            yield batch
