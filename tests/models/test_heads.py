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


def test_normalized_input_makes_logits_independent_of_the_projection_norm():
    # The contrastive terms leave the raw projection's norm free (it grew from 1 to ~80 in six
    # steps); the default head must give the same logits whatever that norm is.
    head = GeoLocationHead(8, 3)
    x = torch.randn(4, 8)
    torch.testing.assert_close(head(x), head(250.0 * x))
    # The paper's head on the raw projection scales its logits with the norm.
    raw = GeoLocationHead(8, 3, normalize_input=False)
    raw.load_state_dict(head.state_dict())
    assert not torch.allclose(raw(x), raw(250.0 * x))


def test_normalized_input_is_rescaled_to_norm_sqrt_d():
    head = GeoLocationHead(4, 2)
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(2, 4))
        head.linear.bias.zero_()
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0]])  # norm 5 -> sqrt(4) * x / 5 = [1.2, 1.6, 0, 0]
    torch.testing.assert_close(head(x), torch.tensor([[1.2, 1.6]]))
