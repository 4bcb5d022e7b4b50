import math

import pytest
import torch
import torch.nn.functional as F

from geossl.losses import CO2Loss


def naive_co2(q, p, n, temperature):
    """Per-sample Python loop with explicit softmax and KL sums, straight from the formula."""
    q = F.normalize(q, dim=1)
    p = F.normalize(p, dim=1)
    n = F.normalize(n, dim=1)
    total = 0.0
    for b in range(q.shape[0]):
        eq = [math.exp(float(q[b] @ n[i]) / temperature) for i in range(n.shape[0])]
        ep = [math.exp(float(p[b] @ n[i]) / temperature) for i in range(n.shape[0])]
        qs = [e / sum(eq) for e in eq]
        ps = [e / sum(ep) for e in ep]
        kl_pq = sum(pi * math.log(pi / qi) for pi, qi in zip(ps, qs, strict=True))
        kl_qp = sum(qi * math.log(qi / pi) for pi, qi in zip(ps, qs, strict=True))
        total += 0.5 * kl_pq + 0.5 * kl_qp
    return total / q.shape[0]


@pytest.mark.parametrize("temperature", [0.04, 0.2, 1.0])
def test_matches_naive_reference(temperature):
    g = torch.Generator().manual_seed(0)
    q, p, n = (torch.randn(s, 8, generator=g, dtype=torch.float64) for s in (5, 5, 11))
    loss = CO2Loss(temperature)(q, p, n)
    assert loss.ndim == 0
    assert loss.dtype == torch.float32
    assert loss.item() > 0
    assert loss.item() == pytest.approx(naive_co2(q, p, n, temperature), rel=1e-4)


def test_identical_query_and_key_give_exactly_zero():
    g = torch.Generator().manual_seed(1)
    q, n = torch.randn(4, 8, generator=g), torch.randn(16, 8, generator=g)
    assert CO2Loss()(q, q.clone(), n).item() == 0.0


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_hand_computed_two_negatives(temperature):
    # q.n = [1, 0] and p.n = [0, 1]: Q = [s, 1 - s], P = [1 - s, s] with s = sigmoid(a), a = 1/tau;
    # KL(P||Q) = KL(Q||P) = (2s - 1) * logit(s) = a * tanh(a / 2).
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.0, 1.0]])
    n = torch.eye(2)
    a = 1.0 / temperature
    expected = a * math.tanh(a / 2)
    assert CO2Loss(temperature)(q, p, n).item() == pytest.approx(expected, rel=1e-6)


def test_symmetric_in_query_and_key():
    g = torch.Generator().manual_seed(2)
    q, p, n = (torch.randn(s, 8, generator=g) for s in (6, 6, 20))
    loss = CO2Loss(0.1)
    torch.testing.assert_close(loss(q, p, n), loss(p, q, n))


def test_inputs_are_normalised_inside():
    g = torch.Generator().manual_seed(3)
    q, p, n = (torch.randn(s, 4, generator=g) for s in (3, 3, 6))
    loss = CO2Loss(0.1)
    torch.testing.assert_close(loss(q, p, n), loss(3 * q, 0.5 * p, 7 * n))


def test_gradient_reaches_query_only():
    """Guards against the torch.tensor(...) bug that detaches the loss and trains nothing."""
    g = torch.Generator().manual_seed(4)
    q, p, n = (torch.randn(s, 8, generator=g).requires_grad_() for s in (4, 4, 12))
    loss = CO2Loss()(q, p, n)
    assert loss.requires_grad
    loss.backward()
    assert q.grad is not None
    assert torch.isfinite(q.grad).all()
    assert q.grad.abs().sum() > 0
    assert p.grad is None
    assert n.grad is None


def test_gradient_matches_autograd_of_reference_formula():
    g = torch.Generator().manual_seed(5)
    q, p, n = (torch.randn(s, 8, generator=g, dtype=torch.float64) for s in (3, 3, 7))
    q32 = q.float().requires_grad_()
    CO2Loss(0.2)(q32, p, n).backward()
    q64 = q.clone().requires_grad_()
    qn, pn, nn_ = F.normalize(q64, dim=1), F.normalize(p, dim=1), F.normalize(n, dim=1)
    big_q = torch.softmax(qn @ nn_.T / 0.2, dim=1)
    big_p = torch.softmax(pn @ nn_.T / 0.2, dim=1)
    kl_pq = (big_p * (big_p / big_q).log()).sum(dim=1)
    kl_qp = (big_q * (big_q / big_p).log()).sum(dim=1)
    (0.5 * kl_pq + 0.5 * kl_qp).mean().backward()
    assert q32.grad is not None
    assert q64.grad is not None
    torch.testing.assert_close(q32.grad.double(), q64.grad, rtol=1e-4, atol=1e-6)


def test_stable_at_small_temperature():
    g = torch.Generator().manual_seed(6)
    q, p, n = (torch.randn(s, 8, generator=g) for s in (4, 4, 64))
    loss = CO2Loss(1e-3)(q.requires_grad_(), p, n)
    assert torch.isfinite(loss)
    loss.backward()
    assert q.grad is not None
    assert torch.isfinite(q.grad).all()


def test_bf16_autocast_float32_loss():
    g = torch.Generator().manual_seed(7)
    q, p, n = (torch.randn(s, 16, generator=g) for s in (4, 4, 32))
    expected = CO2Loss()(q, p, n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = CO2Loss()(q.bfloat16(), p.bfloat16(), n.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("temperature", [0.0, -0.1, float("nan"), float("inf")])
def test_invalid_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        CO2Loss(temperature)


def test_shape_errors():
    loss = CO2Loss()
    with pytest.raises(ValueError, match="query and key"):
        loss(torch.randn(2, 4), torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="negatives"):
        loss(torch.randn(2, 4), torch.randn(2, 4), torch.randn(5, 3))
