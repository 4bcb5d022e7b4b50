from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset
from torch.utils.data.distributed import DistributedSampler

from geossl.samplers.sharding import check_replicas, shard_indices, sharded_len


@pytest.mark.parametrize("total", [1, 5, 8, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_matches_torch_distributed_sampler(total: int, replicas: int, drop_last: bool) -> None:
    for rank in range(replicas):
        reference: DistributedSampler[Any] = DistributedSampler(
            TensorDataset(torch.arange(total)),
            num_replicas=replicas,
            rank=rank,
            shuffle=False,
            drop_last=drop_last,
        )
        got = shard_indices(total, replicas, rank, drop_last).tolist()
        assert got == list(reference)
        assert len(got) == sharded_len(total, replicas, drop_last) == len(reference)


def test_edges() -> None:
    assert shard_indices(0, 2, 1, False).tolist() == []
    assert shard_indices(3, 4, 3, True).tolist() == []
    assert shard_indices(3, 4, 3, False).tolist() == [0]  # wraps around
    with pytest.raises(ValueError, match="0 <= rank < num_replicas"):
        check_replicas(2, 2)
    with pytest.raises(ValueError, match="num_replicas >= 1"):
        check_replicas(0, 0)
