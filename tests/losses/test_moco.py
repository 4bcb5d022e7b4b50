import math

import pytest
import torch
import torch.nn.functional as F

from geossl.losses import MoCoLoss


def naive_infonce(q, k, n, temperature):
    """Per-sample Python loop, straight from the formula."""
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    n = F.normalize(n, dim=1)
    total = 0.0
    for b in range(q.shape[0]):
        pos = math.exp(float(q[b] @ k[b]) / temperature)
        neg = sum(math.exp(float(q[b] @ n[j]) / temperature) for j in range(n.shape[0]))
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_matches_naive_reference(temperature):
    g = torch.Generator().manual_seed(0)
    q, k, n = (torch.randn(s, 8, generator=g, dtype=torch.float64) for s in (5, 5, 11))
    loss = MoCoLoss(temperature)(q, k, n)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(naive_infonce(q, k, n, temperature), rel=1e-5)


def test_hand_computed_2x2():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # sample 0: q.k = 1, q.n = [0, -1]; sample 1: q.k = 1, q.n = [1, 0]  (temperature 1)
    e = math.e
    expected = 0.5 * (-math.log(e / (e + 1 + 1 / e)) - math.log(e / (e + e + 1)))
    assert MoCoLoss(temperature=1.0)(q, k, n).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_only_to_query():
    g = torch.Generator().manual_seed(1)
    q, k, n = (torch.randn(s, 4, generator=g).requires_grad_() for s in (3, 3, 6))
    MoCoLoss()(q, k, n).backward()
    assert q.grad is not None
    assert q.grad.abs().sum() > 0
    assert k.grad is None
    assert n.grad is None


def test_inputs_are_normalised_inside():
    g = torch.Generator().manual_seed(2)
    q, k, n = (torch.randn(s, 4, generator=g) for s in (3, 3, 6))
    loss = MoCoLoss(0.1)
    torch.testing.assert_close(loss(q, k, n), loss(3 * q, 0.5 * k, 7 * n))


def test_perfect_positive_low_loss():
    q = torch.eye(4)
    n = -torch.eye(4)
    assert MoCoLoss(0.02)(q, q, n).item() < 1e-6


def test_bf16_autocast_float32_loss():
    g = torch.Generator().manual_seed(3)
    q, k, n = (torch.randn(s, 16, generator=g) for s in (4, 4, 32))
    expected = MoCoLoss()(q, k, n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = MoCoLoss()(q.bfloat16(), k.bfloat16(), n.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("temperature", [0.0, -0.1, float("nan"), float("inf")])
def test_invalid_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        MoCoLoss(temperature)


def test_shape_errors():
    loss = MoCoLoss()
    with pytest.raises(ValueError, match="query and key"):
        loss(torch.randn(2, 4), torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="negatives"):
        loss(torch.randn(2, 4), torch.randn(2, 4), torch.randn(5, 3))
