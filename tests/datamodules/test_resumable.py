"""ResumableDataLoader: a reloaded state yields exactly the batches not yet handed out."""

from collections.abc import Iterator
from itertools import islice

import pytest
import torch
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import DataLoader, Dataset

from geossl.datamodules.resumable import ResumableDataLoader, epoch_seed
from geossl.samplers import EpochShuffleSampler


class Recording(Dataset[torch.Tensor]):
    """Indexes 0..n-1, remembering which ones were read (in this process)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        self.read.append(index)
        # The worker's seed: torch.initial_seed() is base_seed + worker_id.
        return torch.tensor([index, torch.initial_seed() % 2**31])


def _loader(dataset: Recording, num_workers: int = 0) -> ResumableDataLoader[torch.Tensor]:
    sampler = EpochShuffleSampler(len(dataset), seed=3)
    return ResumableDataLoader(
        dataset, sampler=sampler, batch_size=2, seed=5, num_workers=num_workers
    )


def _indexes(batches: list[torch.Tensor]) -> list[list[int]]:
    return [batch[:, 0].tolist() for batch in batches]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_reload_yields_the_remaining_batches(num_workers: int) -> None:
    epoch = list(_loader(Recording(10), num_workers=num_workers))
    assert len(epoch) == 5

    first = _loader(Recording(10), num_workers=num_workers)
    seen = list(islice(iter(first), 2))
    state = first.state_dict()
    assert state == {"epoch": 0, "batches": 2}

    dataset = Recording(10)
    resumed = _loader(dataset, num_workers=num_workers)
    resumed.load_state_dict(state)
    rest = list(resumed)
    # The same samples, and the workers' seeds too (the generator is seeded per epoch).
    assert [b.tolist() for b in seen + rest] == [b.tolist() for b in epoch]
    if num_workers == 0:  # the skipped batches were never read
        assert sorted(dataset.read) == sorted(i for batch in _indexes(rest) for i in batch)


def test_the_next_epoch_follows_a_resumed_one() -> None:
    reference = _loader(Recording(10))
    epochs = [_indexes(list(reference)) for _ in range(2)]
    assert epochs[0] != epochs[1]

    resumed = _loader(Recording(10))
    resumed.load_state_dict({"epoch": 0, "batches": 4})
    assert _indexes(list(resumed)) == epochs[0][4:]
    assert _indexes(list(resumed)) == epochs[1]
    assert resumed.state_dict() == {"epoch": 1, "batches": 5}


def test_a_complete_epoch_resumes_at_the_next_one() -> None:
    reference = _loader(Recording(10))
    list(reference)
    second = _indexes(list(reference))
    resumed = _loader(Recording(10))
    resumed.load_state_dict({"epoch": 0, "batches": 5})
    resumed.sampler.set_epoch(1)  # type: ignore[attr-defined]  # what Lightning does
    assert _indexes(list(resumed)) == second


def test_a_state_of_another_epoch_is_ignored() -> None:
    loader = _loader(Recording(10))
    whole = _indexes(list(_loader(Recording(10))))
    loader.load_state_dict({"epoch": 3, "batches": 2})
    loader.sampler.set_epoch(0)  # type: ignore[attr-defined]
    assert _indexes(list(loader)) == whole


def test_iterating_leaves_the_global_generator_alone() -> None:
    # A plain DataLoader draws its workers' base seed from torch's global generator, which the
    # training step's augmentation draws from too.
    before = torch.get_rng_state()
    list(_loader(Recording(6)))
    assert torch.equal(torch.get_rng_state(), before)
    list(DataLoader(Recording(6), batch_size=2))
    assert not torch.equal(torch.get_rng_state(), before)


def test_epoch_seed_depends_on_seed_and_epoch() -> None:
    seeds = {epoch_seed(seed, epoch) for seed in range(3) for epoch in range(3)}
    assert len(seeds) == 9
    assert all(0 <= s < 2**63 for s in seeds)


def test_iterable_datasets_are_refused() -> None:
    class Stream(torch.utils.data.IterableDataset[int]):
        def __iter__(self) -> Iterator[int]:
            return iter(range(3))

    data = Stream()
    with pytest.raises(TypeError, match="map-style"):
        ResumableDataLoader(data)


def test_lightning_rebuilds_it_for_ddp_with_its_seed_and_position() -> None:
    # Under DDP Lightning re-creates the loader with a DistributedSamplerWrapper.
    with _replace_dunder_methods(DataLoader, "dataset"):
        loader = _loader(Recording(12))
    rank1 = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=1, shuffle=False)
    rebuilt = _update_dataloader(loader, rank1)
    assert isinstance(rebuilt, ResumableDataLoader)
    assert rebuilt.seed == 5
    whole = _indexes(list(rebuilt))
    assert len(whole) == 3
    rebuilt.load_state_dict({"epoch": 1, "batches": 1})
    rank1.set_epoch(0)
    assert _indexes(list(rebuilt)) == whole  # another epoch: from its start
    rebuilt.load_state_dict({"epoch": 0, "batches": 1})
    rank1.set_epoch(0)
    assert _indexes(list(rebuilt)) == whole[1:]
