import pytest
import torch

from geossl.models import GeoLocationHead


def test_paper_defaults():
    head = GeoLocationHead()
    assert head.linear.in_features == 128
    assert head.linear.out_features == 100
    assert head(torch.randn(4, 128)).shape == (4, 100)


def test_relu_before_linear():
    head = GeoLocationHead(input_dim=3, num_clusters=2)
    x = -torch.rand(5, 3)  # all negative: ReLU zeroes them, output is the bias
    torch.testing.assert_close(head(x), head.linear.bias.expand(5, 2))


def test_does_not_modify_input():
    x = torch.randn(4, 8)
    before = x.clone()
    GeoLocationHead(8, 3)(x)
    torch.testing.assert_close(x, before)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"input_dim": 0}, "input_dim"), ({"num_clusters": 0}, "num_clusters")]
)
def test_invalid_sizes(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GeoLocationHead(**kwargs)
