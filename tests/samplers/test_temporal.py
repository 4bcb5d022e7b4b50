import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from geossl.samplers import TemporalPairSampler

# Locations: 0 has 3 rows (two share t=2), 1 has one row, 2 has two rows with one timestamp,
# 3 has four rows.
LOCATIONS = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]
TIMES = [1, 2, 2, 5, 7, 7, 1, 2, 3, 3]


def _check_pairs(pairs: list[tuple[int, int]]) -> None:
    for i, j in pairs:
        assert LOCATIONS[i] == LOCATIONS[j]
        others = [
            k
            for k in range(len(LOCATIONS))
            if LOCATIONS[k] == LOCATIONS[i] and TIMES[k] != TIMES[i]
        ]
        if others:
            assert j in others
        else:
            assert j == i


@pytest.mark.parametrize("mode", ["location", "image"])
def test_pairs_are_valid(mode: str) -> None:
    sampler = TemporalPairSampler(LOCATIONS, TIMES, mode=mode, seed=0)  # type: ignore[arg-type]
    for _ in range(20):
        _check_pairs(list(sampler))


def test_location_mode_visits_every_location_once() -> None:
    sampler = TemporalPairSampler(torch.tensor(LOCATIONS), torch.tensor(TIMES), seed=0)
    assert len(sampler) == 4
    anchors: set[int] = set()
    for _ in range(200):
        pairs = list(sampler)
        assert sorted(LOCATIONS[i] for i, _ in pairs) == [0, 1, 2, 3]
        anchors |= {i for i, _ in pairs}
    assert anchors == set(range(10))  # the anchor is uniform over each location's rows


def test_image_mode_visits_every_row_once() -> None:
    sampler = TemporalPairSampler(np.array(LOCATIONS), np.array(TIMES), mode="image", seed=0)
    assert len(sampler) == 10
    assert sorted(i for i, _ in sampler) == list(range(10))


def test_partner_is_uniform_over_other_timestamps() -> None:
    sampler = TemporalPairSampler(LOCATIONS, TIMES, mode="image", shuffle=False, seed=0)
    partners = [dict(sampler)[6] for _ in range(300)]
    counts = np.bincount(partners, minlength=10)[7:10]
    assert counts.min() > 60  # rows 7, 8, 9 each about a third


def test_single_image_fallback() -> None:
    sampler = TemporalPairSampler([5], [100], seed=0)
    assert list(sampler) == [(0, 0)]
    sampler = TemporalPairSampler([0, 0], [3, 3], mode="image", shuffle=False)
    assert list(sampler) == [(0, 0), (1, 1)]


def test_deterministic_and_epochs_differ() -> None:
    first = TemporalPairSampler(LOCATIONS, TIMES, mode="image", seed=3)
    second = TemporalPairSampler(LOCATIONS, TIMES, mode="image", seed=3)
    epochs = [list(first) for _ in range(3)]
    assert epochs == [list(second) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    other_seed = TemporalPairSampler(LOCATIONS, TIMES, mode="image", seed=4)
    assert list(other_seed) != epochs[0]


def test_set_epoch() -> None:
    sampler = TemporalPairSampler(LOCATIONS, TIMES, mode="image", seed=3)
    reference = [list(sampler) for _ in range(3)]
    sampler.set_epoch(1)
    assert list(sampler) == reference[1]
    sampler.set_epoch(1)
    assert list(sampler) == reference[1]
    assert list(sampler) == reference[2]  # advances after each iteration


def test_generator() -> None:
    a = TemporalPairSampler(LOCATIONS, TIMES, generator=torch.Generator().manual_seed(9))
    b = TemporalPairSampler(LOCATIONS, TIMES, generator=torch.Generator().manual_seed(9))
    assert [list(a) for _ in range(2)] == [list(b) for _ in range(2)]


def test_not_shuffled_keeps_order() -> None:
    sampler = TemporalPairSampler(LOCATIONS, TIMES, shuffle=False)
    assert [LOCATIONS[i] for i, _ in sampler] == [0, 1, 2, 3]


def test_replicas() -> None:
    kwargs = {"mode": "image", "seed": 1}
    shards = [
        list(TemporalPairSampler(LOCATIONS, TIMES, num_replicas=3, rank=r, **kwargs))  # type: ignore[arg-type]
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [4, 4, 4]
    full = list(TemporalPairSampler(LOCATIONS, TIMES, **kwargs))  # type: ignore[arg-type]
    assert {p for s in shards for p in s} == set(full)
    dropped = TemporalPairSampler(LOCATIONS, TIMES, num_replicas=3, drop_last=True, **kwargs)  # type: ignore[arg-type]
    assert len(dropped) == len(list(dropped)) == 3


def test_lightning_distributed_wrapper() -> None:
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    sampler = TemporalPairSampler(LOCATIONS, TIMES, mode="image", seed=0)
    wrapped = DistributedSamplerWrapper(sampler, num_replicas=2, rank=0, shuffle=False)
    pairs = list(wrapped)
    assert len(pairs) == len(wrapped) == 5
    _check_pairs(pairs)


def test_with_dataloader() -> None:
    class Echo(torch.utils.data.Dataset[tuple[int, int]]):
        def __len__(self) -> int:
            return len(LOCATIONS)

        def __getitem__(self, index: tuple[int, int]) -> tuple[int, int]:
            return index

    sampler = TemporalPairSampler(LOCATIONS, TIMES, mode="image")
    batches = list(DataLoader(Echo(), batch_size=4, sampler=sampler))
    assert sum(len(b[0]) for b in batches) == 10


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        TemporalPairSampler([0, 1, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="non-decreasing"):
        TemporalPairSampler([0, 0], [2, 1])
    with pytest.raises(ValueError, match="differ in length"):
        TemporalPairSampler([0, 0], [1])
    with pytest.raises(ValueError, match="integers"):
        TemporalPairSampler([0.5], [1])
    with pytest.raises(ValueError, match="mode"):
        TemporalPairSampler([0], [1], mode="pair")  # type: ignore[arg-type]


def test_large_is_fast() -> None:
    rng = np.random.default_rng(0)
    locations = np.sort(rng.integers(0, 20_000, 100_000))
    times = rng.integers(0, 10, 100_000)
    order = np.lexsort((times, locations))
    sampler = TemporalPairSampler(locations[order], times[order], mode="image")
    pairs = np.array(list(sampler))
    assert (locations[order][pairs[:, 0]] == locations[order][pairs[:, 1]]).all()
