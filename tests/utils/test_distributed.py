import os

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import spawn

from geossl.utils import batch_shuffle, batch_unshuffle, concat_all_gather, rank, world_size


def test_single_process_defaults():
    assert world_size() == 1
    assert rank() == 0
    t = torch.randn(3, 2)
    assert concat_all_gather(t) is t


def test_shuffle_unshuffle_round_trip_single_process():
    torch.manual_seed(0)
    x = torch.arange(10.0)[:, None].expand(10, 3)
    shuffled, index = batch_shuffle(x)
    assert sorted(shuffled[:, 0].tolist()) == list(range(10))
    torch.testing.assert_close(batch_unshuffle(shuffled * 2, index), x * 2)


def _worker(rank_: int, world: int, tmpdir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmpdir}/rendezvous", rank=rank_, world_size=world
    )
    try:
        torch.manual_seed(rank_)  # different permutations: lightly broadcasts rank 0's
        local = 10.0 * rank_ + torch.arange(4.0)[:, None]  # [4, 1], rank-specific
        gathered = concat_all_gather(local)
        shuffled, index = batch_shuffle(local)
        # a per-sample function of the shuffled batch, unshuffled, is that function of `local`
        restored = batch_unshuffle(shuffled * 3 + 1, index)
        torch.save(
            {
                "world": world_size(),
                "rank": rank(),
                "gathered": gathered,
                "shuffled": shuffled,
                "restored": restored,
                "local": local,
            },
            os.path.join(tmpdir, f"rank{rank_}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_gather_and_shuffle_bn_across_ranks(tmp_path):
    spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    out = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    expected = torch.cat([torch.arange(4.0), 10 + torch.arange(4.0)])[:, None]
    for r, res in enumerate(out):
        assert res["world"] == 2
        assert res["rank"] == r
        torch.testing.assert_close(res["gathered"], expected)  # rank order
        torch.testing.assert_close(res["restored"], res["local"] * 3 + 1)
    # the shuffled slices of both ranks partition the global batch
    shuffled = torch.cat([res["shuffled"] for res in out]).flatten().sort().values
    torch.testing.assert_close(shuffled, expected.flatten())
