import math

import pytest
import torch
import torch.nn.functional as F

from geossl.losses import SCRLLoss


def naive_scrl(p1, p2, z1, z2):
    """Per-box Python loop, straight from the formula."""
    total = 0.0
    n = p1.shape[0]
    for i in range(n):
        for p, z in ((p1[i], z2[i]), (p2[i], z1[i])):
            cos = float(p @ z) / (float(p.norm()) * float(z.norm()))
            total += 2 - 2 * cos
    return total / n


def random_inputs(n: int = 7, d: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=dtype) for _ in range(4)]


def test_matches_naive_reference():
    p1, p2, z1, z2 = random_inputs()
    loss = SCRLLoss()(p1, p2, z1, z2)
    assert loss.ndim == 0
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(naive_scrl(p1, p2, z1, z2), rel=1e-5)


def test_pairs_cross_the_views():
    # p1 must meet z2 (not z1): swapping the targets changes the loss
    p1, p2, z1, z2 = random_inputs(seed=1)
    assert SCRLLoss()(p1, p2, z1, z2).item() != pytest.approx(SCRLLoss()(p1, p2, z2, z1).item())
    assert SCRLLoss()(p1, p2, z2, z1).item() == pytest.approx(naive_scrl(p1, p2, z2, z1), rel=1e-5)


def test_analytic_cases():
    v = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    loss = SCRLLoss()
    assert loss(v, v, v, v).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(v, v, -v, -v).item() == pytest.approx(8.0, rel=1e-6)
    # orthogonal predictions and targets: cos = 0, each side 2
    e = torch.eye(2)
    assert loss(e[:1], e[:1], e[1:], e[1:]).item() == pytest.approx(4.0)
    # the loss ignores the vectors' norms
    torch.testing.assert_close(loss(v, 2 * v, -v, 3 * v), loss(5 * v, v, -0.5 * v, v))


def test_hand_computed_angle():
    p = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)]])  # 60 degrees: cos 1/2
    assert SCRLLoss()(p, p, z, z).item() == pytest.approx(2 * (2 - 2 * 0.5), rel=1e-6)


def test_gradient_only_to_online_side():
    p1, p2, z1, z2 = (t.float().requires_grad_() for t in random_inputs(seed=3))
    SCRLLoss()(p1, p2, z1, z2).backward()
    for p in (p1, p2):
        assert p.grad is not None
        assert p.grad.abs().sum() > 0
    assert z1.grad is None
    assert z2.grad is None


def test_gradient_matches_autograd_of_formula():
    p1, p2, z1, z2 = (t.requires_grad_() for t in random_inputs(seed=4))
    SCRLLoss()(p1, p2, z1, z2).backward()
    q1, q2 = (t.detach().clone().requires_grad_() for t in (p1, p2))
    c1 = F.cosine_similarity(q1, z2.detach(), dim=1)
    c2 = F.cosine_similarity(q2, z1.detach(), dim=1)
    ((2 - 2 * c1) + (2 - 2 * c2)).mean().backward()
    torch.testing.assert_close(p1.grad, q1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(p2.grad, q2.grad, rtol=1e-4, atol=1e-6)


def test_no_boxes_is_an_attached_zero():
    head = torch.nn.Linear(3, 4)
    empty = head(torch.zeros(0, 3))  # [0, 4] with a graph
    loss = SCRLLoss()(empty, empty, torch.zeros(0, 4), torch.zeros(0, 4))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert head.weight.grad is not None
    assert torch.equal(head.weight.grad, torch.zeros_like(head.weight))


def test_bf16_inputs_float32_loss():
    p1, p2, z1, z2 = random_inputs(seed=5, dtype=torch.float32)
    expected = SCRLLoss()(p1, p2, z1, z2)
    loss = SCRLLoss()(p1.bfloat16(), p2.bfloat16(), z1.bfloat16(), z2.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0.02, atol=0.02)


def test_shape_mismatch():
    p1, p2, z1, z2 = random_inputs()
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        SCRLLoss()(p1, p2[:3], z1, z2)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        SCRLLoss()(p1[0], p2[0], z1[0], z2[0])
