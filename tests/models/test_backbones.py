import pytest
import torch

from geossl.models import (
    check_backbone_name,
    create_backbone,
    forward_feature_map,
    get_num_features,
    pool_feature_map,
)


def test_resnet18_pooled_features():
    model = create_backbone("resnet18")
    assert get_num_features(model) == 512
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 512)


def test_multispectral_in_chans():
    model = create_backbone("resnet18", in_chans=5)
    assert model(torch.randn(2, 5, 32, 32)).shape == (2, 512)


def test_feature_map_then_pool_equals_forward():
    model = create_backbone("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    fmap = forward_feature_map(model, x)
    assert fmap.shape == (2, 512, 2, 2)  # C5, stride 32
    torch.testing.assert_close(pool_feature_map(model, fmap), model(x))


def test_pretrained_tag_is_a_known_name():
    check_backbone_name("resnet50.a1_in1k")


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet5O'.*resnet50"):
        create_backbone("resnet5O")


def test_unknown_name_without_matches():
    with pytest.raises(ValueError, match=r"timm\.list_models"):
        check_backbone_name("zzzzzzzzzzzz")


def test_in_chans_must_be_positive():
    with pytest.raises(ValueError, match="in_chans"):
        create_backbone("resnet18", in_chans=0)


def test_get_num_features_requires_attribute():
    with pytest.raises(TypeError, match="num_features"):
        get_num_features(torch.nn.Linear(2, 2))
