import os

import pytest
import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import spawn

from geossl.models import KeyQueue


def test_init_normalised_and_persistent():
    queue = KeyQueue(dim=4, size=10)
    assert queue.queue.shape == (10, 4)
    torch.testing.assert_close(queue.queue.norm(dim=1), torch.ones(10))
    assert queue.ptr.dtype == torch.long
    assert queue.ptr.item() == 0
    state = queue.state_dict()
    assert set(state) == {"queue", "ptr"}


def test_enqueue_wraps_around():
    queue = KeyQueue(dim=2, size=5)
    a = torch.arange(6.0).view(3, 2)
    queue.enqueue(a)
    torch.testing.assert_close(queue.queue[:3], a)
    assert queue.ptr.item() == 3
    b = 100 + torch.arange(8.0).view(4, 2)
    queue.enqueue(b)
    # rows 3, 4 get b0, b1; the rest continues at row 0: b2, b3; row 2 keeps a2
    expected = torch.stack([b[2], b[3], a[2], b[0], b[1]])
    torch.testing.assert_close(queue.queue, expected)
    assert queue.ptr.item() == 2


def test_enqueue_exact_fit_resets_pointer():
    queue = KeyQueue(dim=2, size=4)
    keys = torch.randn(4, 2)
    queue.enqueue(keys)
    torch.testing.assert_close(queue.queue, keys)
    assert queue.ptr.item() == 0


def test_oversize_batch_keeps_last_keys():
    queue = KeyQueue(dim=1, size=4)
    queue.enqueue(torch.tensor([[-1.0]]))  # ptr = 1
    c = torch.arange(6.0).view(6, 1)  # c0..c5 written from row 1: the last 4 survive
    queue.enqueue(c)
    # c0->1, c1->2, c2->3, c3->0, c4->1, c5->2
    torch.testing.assert_close(queue.queue.flatten(), torch.tensor([3.0, 4.0, 5.0, 2.0]))
    assert queue.ptr.item() == (1 + 6) % 4


def test_enqueue_casts_and_detaches():
    queue = KeyQueue(dim=2, size=3)
    keys = torch.randn(2, 2, requires_grad=True)
    queue.enqueue(keys.double())
    assert queue.queue.dtype == torch.float32
    assert not queue.queue.requires_grad
    torch.testing.assert_close(queue.queue[:2], keys.detach())


def test_negatives_is_a_snapshot():
    queue = KeyQueue(dim=2, size=3)
    negatives = queue.negatives()
    before = negatives.clone()
    queue.enqueue(torch.ones(3, 2))
    torch.testing.assert_close(negatives, before)
    assert not negatives.requires_grad


def test_state_dict_round_trip():
    queue = KeyQueue(dim=3, size=6)
    queue.enqueue(torch.randn(4, 3))
    fresh = KeyQueue(dim=3, size=6)
    assert not torch.equal(fresh.queue, queue.queue)
    fresh.load_state_dict(queue.state_dict())
    torch.testing.assert_close(fresh.queue, queue.queue)
    assert fresh.ptr.item() == 4


def test_wrong_key_dim():
    with pytest.raises(ValueError, match=r"keys must be \[B, 3\]"):
        KeyQueue(dim=3, size=4).enqueue(torch.randn(2, 4))


@pytest.mark.parametrize(("kwargs", "name"), [({"dim": 0}, "dim"), ({"dim": 2, "size": 0}, "size")])
def test_invalid_sizes(kwargs, name):
    with pytest.raises(ValueError, match=name):
        KeyQueue(**kwargs)


def _enqueue_worker(rank: int, world: int, tmpdir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmpdir}/rendezvous", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)  # same random init on every rank, as in a DDP job
        queue = KeyQueue(dim=2, size=5)
        keys = torch.full((2, 2), float(rank + 1))  # rank-specific keys
        queue.enqueue(keys)  # 4 keys: rows 0..3
        queue.enqueue(keys * 10)  # 4 more: rows 4, 0, 1, 2
        torch.save(queue.state_dict(), os.path.join(tmpdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_enqueue_all_gathers_across_ranks(tmp_path):
    spawn(_enqueue_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.testing.assert_close(states[0]["queue"], states[1]["queue"])
    assert states[0]["ptr"].item() == states[1]["ptr"].item() == (4 + 4) % 5
    # second enqueue, in rank order: [10, 10, 20, 20] at rows 4, 0, 1, 2; row 3 keeps rank 1's 2
    expected = torch.tensor([10.0, 20.0, 20.0, 2.0, 10.0])[:, None].expand(5, 2)
    torch.testing.assert_close(states[0]["queue"], expected)
