from typing import Any

import pytest
import torch

from geossl.transforms import IMAGENET_MEAN, IMAGENET_STD, GeoSSLAugmentation, RandomBandJitter

GEOMETRY_ONLY: dict[str, Any] = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}


def ramp_images(batch: int, height: int, width: int) -> torch.Tensor:
    """Band 0 holds x / (W - 1), band 1 y / (H - 1): a view pixel's value tells its source."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    img = torch.stack([xs / (width - 1), ys / (height - 1), torch.zeros_like(xs)])
    return img.expand(batch, 3, height, width).clone()


def test_uint8_shapes_and_dtype():
    aug = GeoSSLAugmentation(size=32)
    out = aug(torch.randint(0, 256, (4, 3, 48, 40), dtype=torch.uint8))
    assert out.shape == (4, 3, 32, 32)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_float_input_keeps_dtype():
    out = GeoSSLAugmentation(size=16)(torch.rand(2, 3, 20, 20, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_normalisation_stats():
    aug = GeoSSLAugmentation(size=16, **GEOMETRY_ONLY)
    x = torch.full((2, 3, 20, 20), 128, dtype=torch.uint8)
    out = aug(x)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), expected)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_custom_stats_are_applied():
    aug = GeoSSLAugmentation(size=8, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0], **GEOMETRY_ONLY)
    out = aug(torch.ones(1, 3, 10, 10))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


def test_set_normalization_replaces_the_stats_in_place():
    aug = GeoSSLAugmentation(size=8, mean=[0.0] * 4, std=[1.0] * 4, in_chans=4, **GEOMETRY_ONLY)
    aug = aug.double()  # the buffers keep their dtype (and device)
    aug.set_normalization([0.5, 0.5, 0.5, 0.0], [0.25, 0.5, 1.0, 2.0])
    assert aug.mean.dtype == torch.float64
    out = aug(torch.ones(1, 4, 10, 10, dtype=torch.float64))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5, 0.5]).double())
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        aug.set_normalization([0.5] * 4, [0.2, 0.2, 0.2, 0.0])
    with pytest.raises(ValueError, match="mean has 3 values"):
        aug.set_normalization([0.5] * 3, [0.2] * 3)


def test_deterministic_with_manual_seed():
    aug = GeoSSLAugmentation(size=16)
    x = torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8)
    torch.manual_seed(123)
    a = aug(x)
    torch.manual_seed(123)
    b = aug(x)
    torch.manual_seed(124)
    c = aug(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_views_differ_within_batch():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 24, 24), dtype=torch.uint8).expand(6, 3, 24, 24)
    out = GeoSSLAugmentation(size=16)(x)
    assert not torch.allclose(out[0], out[1])


def test_multispectral_path():
    aug = GeoSSLAugmentation(size=16, in_chans=5, mean=[0.3] * 5, std=[0.2] * 5)
    assert isinstance(aug.colour[0], RandomBandJitter)
    out = aug(torch.randint(0, 256, (3, 5, 20, 20), dtype=torch.uint8))
    assert out.shape == (3, 5, 16, 16)
    assert torch.isfinite(out).all()


def test_band_jitter_is_per_band_and_in_range():
    torch.manual_seed(0)
    x = torch.full((2, 4, 8, 8), 0.5)
    x[..., :4] = 0.25
    out = RandomBandJitter(brightness=0.4, contrast=0.4, p=1.0)(x)
    assert out.min() >= 0
    assert out.max() <= 1
    band_means = out.mean(dim=(2, 3))
    assert band_means.unique().numel() > 2  # bands jittered independently
    unchanged = RandomBandJitter(p=0.0)(x)
    torch.testing.assert_close(unchanged, x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_chans": 4}, "mean is required"),
        ({"in_chans": 4, "mean": [0.5] * 4}, "std is required"),
        ({"mean": [0.5, 0.5]}, "mean has 2 values"),
        ({"std": [0.5] * 4}, "std has 4 values"),
        ({"std": [0.5, 0.0, 0.5]}, "std must be"),
        ({"min_scale": 0.0}, "min_scale"),
        ({"size": 1}, "size"),
        ({"blur_p": 1.5}, "blur_p"),
        ({"hue": 0.7}, "hue"),
        ({"brightness": -1.0}, "brightness"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeoSSLAugmentation(**kwargs)


def test_input_errors():
    aug = GeoSSLAugmentation(size=8)
    with pytest.raises(ValueError, match="expected"):
        aug(torch.rand(2, 4, 10, 10))
    with pytest.raises(TypeError, match="uint8 or float"):
        aug(torch.zeros(2, 3, 10, 10, dtype=torch.int32))


@pytest.mark.parametrize("flip_p", [0.0, 0.5, 1.0])
def test_transform_matrix_maps_source_pixels(flip_p):
    torch.manual_seed(0)
    height, width, size = 20, 30, 12
    aug = GeoSSLAugmentation(
        size=size, mean=[0.0] * 3, std=[1.0] * 3, flip_p=flip_p, **GEOMETRY_ONLY
    ).double()
    views, params = aug(ramp_images(8, height, width), return_params=True)
    assert params.transform.shape == (8, 3, 3)
    assert params.source_size == (height, width)
    assert params.view_size == (size, size)
    if flip_p == 0.0:
        assert not params.flipped.any()
    if flip_p == 1.0:
        assert params.flipped.all()
    # every view pixel holds the source coordinate that the inverse matrix assigns to it
    u, v = torch.meshgrid(
        torch.arange(size, dtype=torch.float64),
        torch.arange(size, dtype=torch.float64),
        indexing="xy",
    )
    grid = torch.stack([u.flatten(), v.flatten(), torch.ones(size * size, dtype=torch.float64)], 1)
    src = grid @ torch.linalg.inv(params.transform.double()).transpose(1, 2)  # [B, S*S, 3]
    torch.testing.assert_close(views[:, 0].flatten(1), src[..., 0] / (width - 1), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        views[:, 1].flatten(1), src[..., 1] / (height - 1), atol=1e-4, rtol=0
    )


def test_map_points_and_crop_boxes_with_flip():
    torch.manual_seed(1)
    height, width, size = 24, 32, 16
    aug = GeoSSLAugmentation(size=size, mean=[0.0] * 3, std=[1.0] * 3, flip_p=1.0, **GEOMETRY_ONLY)
    x = torch.zeros(4, 3, height, width)
    _, params = aug(x, return_params=True)
    boxes = params.crop_boxes  # [B, 4] x0, y0, x1, y1
    assert (boxes[:, 0] >= -1e-3).all()
    assert (boxes[:, 2] <= width - 1 + 1e-3).all()
    # whole-pixel windows of at least 2 x 2 pixels, inside the source
    torch.testing.assert_close(boxes, boxes.round())
    assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()
    assert (boxes[:, 3] <= height - 1).all()
    assert (boxes[:, 1] >= 0).all()
    # with a flip, the crop's top-left corner lands at the view's top-right, and vice versa
    corners = torch.stack([boxes[:, :2], boxes[:, 2:]], dim=1)  # [B, 2, 2]
    mapped = params.map_points(corners)
    expected = torch.tensor([[size - 1.0, 0.0], [0.0, size - 1.0]]).expand(4, 2, 2)
    torch.testing.assert_close(mapped, expected, atol=1e-3, rtol=0)
    # a bright source pixel inside each crop lands where the matrix says (apply_geometry replays
    # the views' crop and flip on other data)
    x = torch.zeros(4, 1, height, width)
    points = (boxes[:, :2] + 1).round()  # [B, 2] (x, y) inside every crop
    for b in range(4):
        x[b, 0, int(points[b, 1]), int(points[b, 0])] = 1.0
    views = aug.apply_geometry(x, params)  # [B, 1, S, S]
    targets = params.map_points(points[:, None, :])[:, 0]  # [B, 2]
    for b in range(4):
        peak = torch.nonzero(views[b, 0] == views[b, 0].max())[0]  # (row, col)
        assert abs(peak[1].item() - targets[b, 0].item()) <= 1.0
        assert abs(peak[0].item() - targets[b, 1].item()) <= 1.0
    nearest = aug.apply_geometry(x, params, mode="nearest")
    assert set(nearest.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"\[B, K, 24, 32\]"):
        aug.apply_geometry(torch.zeros(4, 1, 20, 20), params)


def test_a_view_reads_nothing_on_the_host():
    # On a GPU, reading a drawn value on the host would make the CPU wait for all queued work.
    # The meta device stands in for the GPU: reading a meta value on the host raises, so a whole
    # call here proves that none is read.
    aug = GeoSSLAugmentation(size=16).to("meta")
    assert aug.mean.device.type == "meta"
    x = torch.empty(3, 3, 24, 24, dtype=torch.uint8, device="meta")
    views, params = aug(x, return_params=True)
    assert views.shape == (3, 3, 16, 16)
    assert views.device.type == params.transform.device.type == "meta"
    assert params.axis_aligned


def test_band_jitter_reads_nothing_on_the_host():
    aug = GeoSSLAugmentation(size=16, in_chans=4, mean=[0.5] * 4, std=[0.2] * 4).to("meta")
    views = aug(torch.empty(2, 4, 20, 20, device="meta"))
    assert views.shape == (2, 4, 16, 16)


def test_a_seed_reproduces_the_views():
    x = torch.rand(4, 3, 24, 24)
    torch.manual_seed(5)
    first, params = GeoSSLAugmentation(size=16)(x, return_params=True)
    torch.manual_seed(5)
    second, again = GeoSSLAugmentation(size=16)(x, return_params=True)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(params.transform, again.transform, rtol=0, atol=0)


def test_tiny_sources_are_refused():
    with pytest.raises(ValueError, match="at least 2 x 2"):
        GeoSSLAugmentation(size=8)(torch.rand(2, 3, 1, 8))
