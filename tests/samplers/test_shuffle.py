"""EpochShuffleSampler: a permutation per epoch, drawn again from (seed, epoch)."""

import pytest
import torch

from geossl.samplers import EpochShuffleSampler


def test_each_epoch_is_a_permutation_of_its_own() -> None:
    sampler = EpochShuffleSampler(20, seed=1)
    epochs = [list(sampler) for _ in range(3)]
    assert all(sorted(order) == list(range(20)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3
    assert sampler.epoch == 3
    assert len(sampler) == 20


def test_an_epoch_is_drawn_again_after_a_restart() -> None:
    first = EpochShuffleSampler(20, seed=1)
    orders = [list(first) for _ in range(3)]
    restarted = EpochShuffleSampler(20, seed=1)
    restarted.set_epoch(2)
    assert list(restarted) == orders[2]
    assert list(EpochShuffleSampler(20, seed=2)) != orders[0]


def test_it_never_draws_from_the_global_generator() -> None:
    before = torch.get_rng_state()
    list(EpochShuffleSampler(20))
    assert torch.equal(torch.get_rng_state(), before)


def test_negative_length_is_refused() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        EpochShuffleSampler(-1)
