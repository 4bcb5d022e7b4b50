"""The batched augmentation kernels against torchvision / kornia, sample by sample."""

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from kornia.geometry.transform import warp_affine
from torchvision.transforms import RandomResizedCrop

from geossl.transforms import functional as VF
from geossl.transforms.photometric import (
    RandomColorJitter,
    RandomGaussianBlur,
    RandomGrayscale,
)


def _factors(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1)


@pytest.fixture
def rgb() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 9, 11, generator=g)
    x[0] = 0.5  # gray: hue and saturation are undefined, nothing may change
    x[1, :, :2] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # saturated red: hue wraps
    return x


def test_colour_adjustments_match_torchvision_per_sample(rgb):
    cases = [
        (VF.adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.4, 0.0, 1.2]),
        (VF.adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.0, 1.2]),
        (VF.adjust_saturation, TF.adjust_saturation, [0.6, 1.0, 1.4, 0.0, 1.2]),
        (VF.adjust_hue, TF.adjust_hue, [0.1, -0.1, 0.5, -0.5, 0.03]),
    ]
    for ours, theirs, values in cases:
        out = ours(rgb, _factors(values))
        expected = torch.stack([theirs(rgb[i], v) for i, v in enumerate(values)])
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0, msg=ours.__name__)
    torch.testing.assert_close(VF.rgb_to_grayscale(rgb), TF.rgb_to_grayscale(rgb))


def test_gaussian_blur_matches_torchvision_per_sample(rgb):
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 1.3])
    out = VF.gaussian_blur(rgb, 5, sigma)
    expected = torch.stack(
        [TF.gaussian_blur(rgb[i], [5, 5], [float(s), float(s)]) for i, s in enumerate(sigma)]
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_warp_matches_kornia_warp_affine_with_the_matrix():
    # The resampling is exactly the returned matrix, as kornia's warp_affine reads it.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 2, 30, 40, generator=g)
    torch.manual_seed(2)
    crops = VF.sample_resized_crops(6, 30, 40, (0.2, 1.0))
    flipped = torch.tensor([True, False, True, False, True, False])
    views = VF.warp_views(x, crops, flipped, 16)
    matrix = VF.crop_flip_matrix(crops, flipped, 16)
    expected = warp_affine(x, matrix[:, :2], (16, 16), align_corners=True)
    torch.testing.assert_close(views, expected, atol=1e-5, rtol=0)


def test_crops_follow_torchvision_random_resized_crop():
    # Same rule as torchvision (tries, rounding, uniform whole-pixel offsets, fallback): the
    # distributions of area, aspect ratio and position agree over many draws.
    n, height, width, scale = 4000, 30, 50, (0.2, 1.0)
    torch.manual_seed(0)
    ours = VF.sample_resized_crops(n, height, width, scale)  # [N, 4] x0, y0, w, h
    torch.manual_seed(1)
    image = torch.empty(1, height, width)
    theirs = torch.tensor(
        [
            [j, i, w, h]
            for i, j, h, w in (
                RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]) for _ in range(n)
            )
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(ours, ours.round())
    assert (ours[:, 0] >= 0).all()
    assert (ours[:, 0] + ours[:, 2] <= width).all()
    assert (ours[:, 1] >= 0).all()
    assert (ours[:, 1] + ours[:, 3] <= height).all()
    for stat in (
        lambda c: c[:, 2] * c[:, 3] / (height * width),  # area fraction
        lambda c: torch.log(c[:, 2] / c[:, 3]),  # log aspect ratio
        lambda c: (c[:, 0] + c[:, 2] / 2) / width,  # centre x
        lambda c: (c[:, 1] + c[:, 3] / 2) / height,  # centre y
    ):
        a, b = stat(ours), stat(theirs)
        assert abs(float(a.mean() - b.mean())) < 4 * float(b.std()) / math.sqrt(n)
        assert abs(float(a.std() - b.std())) < 0.1 * float(b.std())


@pytest.mark.parametrize(("height", "width"), [(30, 50), (50, 30), (10, 100), (100, 10)])
def test_crop_fallback_is_torchvision_central_crop(height, width):
    # A scale that never fits forces the fallback, which is deterministic.
    crops = VF.sample_resized_crops(3, height, width, (2.0, 3.0))
    i, j, h, w = RandomResizedCrop.get_params(
        torch.empty(1, height, width), [2.0, 3.0], [3 / 4, 4 / 3]
    )
    assert crops.tolist() == [[float(j), float(i), float(w), float(h)]] * 3


def test_random_colour_modules_probabilities(rgb):
    torch.manual_seed(0)
    torch.testing.assert_close(RandomColorJitter(p=0.0)(rgb), rgb)
    torch.testing.assert_close(RandomColorJitter(0, 0, 0, 0, p=1.0)(rgb), rgb)
    torch.testing.assert_close(RandomGrayscale(p=0.0)(rgb), rgb)
    gray = RandomGrayscale(p=1.0)(rgb)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(rgb, num_output_channels=3))
    torch.testing.assert_close(RandomGaussianBlur(3, p=0.0)(rgb), rgb)
    many = torch.rand(2000, 3, 4, 4)
    changed = (RandomColorJitter(p=0.8)(many) != many).flatten(1).any(dim=1).float().mean()
    assert abs(float(changed) - 0.8) < 0.05
    blurred = (RandomGaussianBlur(3, p=0.5)(many) != many).flatten(1).any(dim=1).float().mean()
    assert abs(float(blurred) - 0.5) < 0.05


def test_random_colour_jitter_is_a_composition_of_the_four_steps(rgb):
    # With p=1 the output is one of the 24 orders of the four adjustments with the drawn factors.
    torch.manual_seed(3)
    jitter = RandomColorJitter(p=1.0)
    out = jitter(rgb)
    torch.manual_seed(3)
    u = torch.rand((4, rgb.shape[0], 1, 1, 1))
    factors = [0.6 + 0.8 * u[k] for k in range(3)] + [0.1 * (2 * u[3] - 1)]
    order = torch.randperm(4).tolist()
    steps = [VF.adjust_brightness, VF.adjust_contrast, VF.adjust_saturation, VF.adjust_hue]
    expected = rgb
    for k in order:
        expected = steps[k](expected, factors[k])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("module", "kwargs", "match"),
    [
        (RandomColorJitter, {"hue": 0.6}, "hue"),
        (RandomColorJitter, {"brightness": -1.0}, "brightness"),
        (RandomColorJitter, {"p": 1.5}, "p must be"),
        (RandomGrayscale, {"p": -0.1}, "p must be"),
        (RandomGaussianBlur, {"kernel_size": 4}, "odd"),
        (RandomGaussianBlur, {"kernel_size": 3, "sigma": (0.0, 1.0)}, "sigma"),
    ],
)
def test_bad_parameters_are_refused(module, kwargs, match):
    with pytest.raises(ValueError, match=match):
        module(**kwargs)


def test_whole_image_crops_with_flips_are_flips():
    x = torch.rand(4, 2, 6, 9)
    whole = torch.tensor([[0.0, 0.0, 9.0, 6.0]]).expand(4, 4)
    h_flip = torch.tensor([False, True, False, True])
    v_flip = torch.tensor([False, False, True, True])
    out = VF.warp_views(x, whole, h_flip, (6, 9), vflipped=v_flip)
    expected = torch.stack([x[0], x[1].flip(-1), x[2].flip(-2), x[3].flip(-1, -2)])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
