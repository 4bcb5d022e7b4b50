import pytest
import torch
from torch import nn
from torchvision.ops import roi_align

from geossl.models import SCRLPredictionHead, SCRLProjectionHead, roi_features


def layer_types(head: nn.Module) -> list[type[nn.Module]]:
    return [type(m) for m in head.modules() if not list(m.children())]


def test_projection_head_is_scrl_sized():
    head = SCRLProjectionHead()
    assert layer_types(head) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert (linears[0].in_features, linears[0].out_features) == (2048, 4096)
    assert (linears[1].in_features, linears[1].out_features) == (4096, 256)
    assert linears[0].bias is None  # the BatchNorm after it makes a bias redundant
    out = head(torch.randn(3, 2048))
    assert out.shape == (3, 256)


def test_prediction_head_is_scrl_sized():
    head = SCRLPredictionHead()
    assert layer_types(head) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert (linears[0].in_features, linears[0].out_features) == (256, 4096)
    assert (linears[1].in_features, linears[1].out_features) == (4096, 256)
    assert head(torch.randn(2, 256)).shape == (2, 256)


@pytest.mark.parametrize("cls", [SCRLProjectionHead, SCRLPredictionHead])
@pytest.mark.parametrize("name", ["input_dim", "hidden_dim", "output_dim"])
def test_head_sizes_are_checked(cls, name):
    with pytest.raises(ValueError, match=name):
        cls(**{name: 0})


def test_roi_features_reads_the_box_centre_at_stride_32():
    # a linear map f[y, x] = 10 y + x: a 1x1 RoIAlign returns f at the box centre / 32
    ys, xs = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    fmap = torch.stack([10 * ys + xs, -xs])[None].repeat(2, 1, 1, 1)  # [2, 2, 7, 7]
    fmap[1] += 100
    boxes = torch.tensor([[0, 32.0, 64.0, 96.0, 160.0], [1, 0.0, 0.0, 64.0, 64.0]])
    out = roi_features(fmap, boxes, view_size=224)
    assert out.shape == (2, 2)
    # box 0: centre (64, 112) -> map (2, 3.5); box 1 (image 1): centre (32, 32) -> map (1, 1)
    torch.testing.assert_close(out, torch.tensor([[37.0, -2.0], [111.0, 99.0]]))
    expected = roi_align(fmap, boxes, 1, 1 / 32, -1, False).flatten(1)
    torch.testing.assert_close(out, expected)


def test_roi_features_grad_and_dtype():
    fmap = torch.randn(2, 4, 2, 2, dtype=torch.bfloat16, requires_grad=True)
    boxes = torch.tensor([[0, 0.0, 0.0, 40.0, 40.0], [1, 10.0, 20.0, 63.0, 63.0]])
    out = roi_features(fmap, boxes, view_size=64)
    assert out.dtype == torch.float32
    assert out.shape == (2, 4)
    out.sum().backward()
    assert fmap.grad is not None
    assert fmap.grad.abs().sum() > 0
    assert roi_features(fmap, boxes[:0], view_size=64).shape == (0, 4)


def test_roi_features_checks_shapes():
    fmap = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="feature_map"):
        roi_features(fmap[0], torch.zeros(1, 5), 64)
    with pytest.raises(ValueError, match="boxes"):
        roi_features(fmap, torch.zeros(1, 4), 64)
    with pytest.raises(ValueError, match="view_size"):
        roi_features(fmap, torch.zeros(1, 5), 0)
