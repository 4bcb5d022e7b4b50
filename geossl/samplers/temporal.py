"""Temporal positive pairs: two acquisitions of one location.

Ayush et al. (ICCV 2021) use two images of the same place taken at different times as query and
key. [`TemporalPairSampler`][geossl.samplers.temporal.TemporalPairSampler] draws those pairs as
``(i, j)`` row indexes of the fMoW index (rows sorted by location, then timestamp), for
[`geossl.datasets.fmow.FMoWTemporalPairs`][geossl.datasets.fmow.FMoWTemporalPairs].
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.utils.data import Sampler

from geossl.samplers.sharding import check_replicas, shard_indices, sharded_len

__all__ = ["TemporalPairSampler"]

PairMode = Literal["location", "image"]


def _as_int64(values: Tensor | npt.ArrayLike, name: str) -> Tensor:
    if isinstance(values, Tensor):
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise ValueError(f"{name} must hold integers, got {values.dtype}")
        tensor = values.to(device="cpu", dtype=torch.int64)
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integers, got {array.dtype}")
        tensor = torch.from_numpy(array.astype(np.int64, copy=True))  # (read-only inputs welcome)
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {list(tensor.shape)}")
    return tensor.contiguous()


def _run_starts(values: Tensor) -> Tensor:
    """Indexes where a new run of equal consecutive values starts."""
    change = torch.ones(len(values), dtype=torch.bool)
    change[1:] = values[1:] != values[:-1]
    return torch.nonzero(change).flatten()


class TemporalPairSampler(Sampler[tuple[int, int]]):
    """Yield ``(i, j)`` row pairs of one location with different timestamps.

    ``i`` is the anchor; ``j`` is drawn uniformly among the rows of the same location whose
    timestamp differs from the anchor's. When there is none (a single image, or all images of the
    location share one timestamp), ``j = i`` and the two views come from one image, as in the
    paper.

    Modes:

    * ``"location"``: one pair per location per epoch, the anchor uniform among its images
      (``len = number of locations``);
    * ``"image"``: every row once as the anchor (``len = number of rows``).

    Each epoch is drawn at once with vectorised torch operations (run starts and lengths are
    precomputed here). Randomness: with ``generator=None`` epoch ``e`` uses
    ``torch.Generator().manual_seed(seed + e)``, so re-creating the sampler reproduces the sequence.
    The epoch advances by one after each ``__iter__`` and
    [`set_epoch`][geossl.samplers.temporal.TemporalPairSampler.set_epoch] sets it (Lightning calls
    it before each epoch, which keeps resumed runs reproducible; under Lightning's
    ``DistributedSamplerWrapper``, which never calls it, the automatic advance makes epochs differ).
    With an explicit ``generator``, every random call draws from it and ``seed``/``set_epoch`` do
    not influence the draws.

    Args:
        location_ids: integer location id of every row ``[N]``; rows of a location contiguous.
        timestamps: acquisition time of every row ``[N]``, non-decreasing within a location.
        mode: ``"location"`` or ``"image"``.
        shuffle: shuffle the anchors (else locations / rows in order; ``j`` is random either way).
        seed: base seed (``seed + epoch``).
        generator: optional generator to draw from instead.
        drop_last: with ``num_replicas > 1``: drop the tail that does not divide evenly among the
            replicas (else pad by repeating the first pairs), as
            `torch.utils.data.DistributedSampler` does. No effect with one replica.
        num_replicas: shard the pairs over this many processes (default 1: no sharding; leave it at
            1 under Lightning, whose ``DistributedSamplerWrapper`` shards for you).
        rank: this process's shard in ``0..num_replicas-1``.

    Raises:
        ValueError: for mismatched or unsorted inputs and invalid arguments.

    Example:
        >>> # two locations: rows 0-2 at three dates, rows 3-4 at two
        >>> sampler = TemporalPairSampler([0, 0, 0, 1, 1], [1, 2, 3, 1, 5], shuffle=False)
        >>> len(sampler), list(sampler)
        (2, [(2, 0), (4, 3)])
        >>> len(TemporalPairSampler([0, 0, 0, 1, 1], [1, 2, 3, 1, 5], mode="image"))
        5
    """

    def __init__(
        self,
        location_ids: Tensor | npt.ArrayLike,
        timestamps: Tensor | npt.ArrayLike,
        mode: PairMode = "location",
        shuffle: bool = True,
        seed: int = 0,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        locations = _as_int64(location_ids, "location_ids")
        times = _as_int64(timestamps, "timestamps")
        if len(locations) != len(times):
            raise ValueError(
                f"location_ids and timestamps differ in length: {len(locations)} != {len(times)}"
            )
        if mode not in ("location", "image"):
            raise ValueError(f"mode must be 'location' or 'image', got {mode!r}")
        check_replicas(num_replicas, rank)
        n = len(locations)
        loc_starts = _run_starts(locations)
        if len(torch.unique(locations)) != len(loc_starts):
            raise ValueError(
                "location_ids must be sorted so that each location's rows are contiguous"
            )
        loc_lengths = torch.diff(loc_starts, append=torch.tensor([n]))
        run_of_row = torch.repeat_interleave(torch.arange(len(loc_starts)), loc_lengths)
        same_location = locations[1:] == locations[:-1]
        if bool((same_location & (times[1:] < times[:-1])).any()):
            raise ValueError("timestamps must be non-decreasing within each location")
        # Groups of equal timestamps inside a location (contiguous because times are sorted).
        group_key_change = torch.ones(n, dtype=torch.bool)
        group_key_change[1:] = ~same_location | (times[1:] != times[:-1])
        group_starts = torch.nonzero(group_key_change).flatten()
        group_lengths = torch.diff(group_starts, append=torch.tensor([n]))
        group_of_row = torch.repeat_interleave(torch.arange(len(group_starts)), group_lengths)

        self.mode: PairMode = mode
        self.shuffle = shuffle
        self.seed = seed
        self.generator = generator
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.num_rows = n
        self.num_locations = len(loc_starts)
        self._loc_start = loc_starts
        self._loc_length = loc_lengths
        self._row_loc_start = loc_starts[run_of_row]
        self._row_loc_length = loc_lengths[run_of_row]
        self._row_group_start = group_starts[group_of_row]
        self._row_group_length = group_lengths[group_of_row]

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used by the next ``__iter__`` (seed + epoch)."""
        self.epoch = epoch

    def _total(self) -> int:
        return self.num_locations if self.mode == "location" else self.num_rows

    def __len__(self) -> int:
        """Number of pairs one iteration yields (on this replica)."""
        return sharded_len(self._total(), self.num_replicas, self.drop_last)

    def _uniform(self, count: int, generator: torch.Generator) -> Tensor:
        return torch.rand(count, generator=generator, dtype=torch.float64)

    def pairs(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw one epoch of anchors ``i`` and partners ``j`` (int64 ``[len]`` each, unsharded)."""
        if self.mode == "location":
            order = (
                torch.randperm(self.num_locations, generator=generator)
                if self.shuffle
                else torch.arange(self.num_locations)
            )
            starts = self._loc_start[order]
            lengths = self._loc_length[order]
            offset = (self._uniform(len(order), generator) * lengths).long()
            anchors = starts + torch.minimum(offset, lengths - 1)
        else:
            anchors = (
                torch.randperm(self.num_rows, generator=generator)
                if self.shuffle
                else torch.arange(self.num_rows)
            )
        loc_start = self._row_loc_start[anchors]
        group_start = self._row_group_start[anchors]
        group_length = self._row_group_length[anchors]
        candidates = self._row_loc_length[anchors] - group_length
        pick = (self._uniform(len(anchors), generator) * candidates).long()
        pick = torch.minimum(pick, (candidates - 1).clamp(min=0))
        # Skip the anchor's timestamp group: rows before it keep their offset, rows after it shift.
        partner = loc_start + pick
        partner = torch.where(partner >= group_start, partner + group_length, partner)
        partner = torch.where(candidates > 0, partner, anchors)
        return anchors, partner

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Yield this epoch's ``(i, j)`` pairs and advance the epoch."""
        if self.generator is not None:
            generator = self.generator
        else:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        anchors, partners = self.pairs(generator)
        if self.num_replicas > 1:
            index = shard_indices(len(anchors), self.num_replicas, self.rank, self.drop_last)
            anchors, partners = anchors[index], partners[index]
        return zip(anchors.tolist(), partners.tolist(), strict=True)
