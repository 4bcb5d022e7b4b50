import pytest
import torch
import torch.nn.functional as F

from geossl.losses import GeoLocationLoss


def test_matches_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g)
    target = torch.tensor([0, 4, 2, 2, 1, 3])
    torch.testing.assert_close(GeoLocationLoss()(logits, target), F.cross_entropy(logits, target))


def test_ignores_unknown_cluster():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g)
    target = torch.tensor([1, -1, 3, -1, 0])
    keep = target != -1
    expected = F.cross_entropy(logits[keep], target[keep])
    torch.testing.assert_close(GeoLocationLoss()(logits, target), expected)


def test_all_unknown_is_zero_with_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = GeoLocationLoss()(logits, torch.full((3,), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad == 0)


def test_custom_ignore_index_and_bf16():
    logits = torch.randn(4, 3)
    target = torch.tensor([0, 99, 2, 1])
    loss = GeoLocationLoss(ignore_index=99)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(logits.bfloat16(), target)
    assert out.dtype == torch.float32
    expected = F.cross_entropy(logits[[0, 2, 3]], target[[0, 2, 3]])
    torch.testing.assert_close(out, expected, rtol=0.05, atol=0.05)


def test_shape_error():
    with pytest.raises(ValueError, match="logits"):
        GeoLocationLoss()(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
