"""Batched photometric augmentations: band jitter, colour jitter, grayscale and blur.

Each draws its parameters on the input's device for the whole batch and applies them with the
batched kernels of [`geossl.transforms.functional`][geossl.transforms.functional]: nothing is read
back on the host.
"""

import functools
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from geossl.utils.checks import check_at_least, check_fraction, check_range

from . import functional as VF

#: A colour adjustment: ``(images [B, 3, H, W], factors [B, 1, 1, 1]) -> images``.
ColorStep = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "COLOR_STEPS",
    "RandomBandJitter",
    "RandomColorJitter",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "check_color_jitter",
    "compiled_color_steps",
]


class RandomBandJitter(nn.Module):
    r"""Per-band brightness and contrast jitter for multispectral images.

    Colour jitter and grayscale assume RGB (saturation and hue are defined on the RGB cube), so for
    ``C != 3`` bands geossl jitters every band independently instead. With probability ``p`` per
    sample, for each band ``c`` with spatial mean $\mu_c$:

    $$
    x_c \leftarrow \operatorname{clip}_{[0, 1]}\big(\beta_c x_c\big), \qquad
    x_c \leftarrow \operatorname{clip}_{[0, 1]}\big(\gamma_c (x_c - \mu_c) + \mu_c\big)
    $$

    with $\beta_c \sim U[\max(0, 1 - b), 1 + b]$,
    $\gamma_c \sim U[\max(0, 1 - s), 1 + s]$: torchvision's multiplicative brightness and contrast
    (the mean is per band rather than the grayscale mean). Not from the GeoSSL paper (RGB only): a
    documented geossl choice. Draws from torch's global generator on the input's device
    (reproducible with ``torch.manual_seed``).

    Args:
        brightness: $b$ >= 0 (default 0.4, the RGB recipe's brightness).
        contrast: $s$ >= 0 (default 0.4, the RGB recipe's contrast).
        p: probability per sample (default 0.8, the RGB recipe's colour-jitter probability).

    Raises:
        ValueError: if a parameter is out of range.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, p: float = 0.8) -> None:
        super().__init__()
        check_range("brightness", brightness, low=0)
        check_range("contrast", contrast, low=0)
        check_fraction("p", p)
        self.brightness = brightness
        self.contrast = contrast
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Jitter a batch.

        Args:
            x: ``[B, C, H, W]`` float images in ``[0, 1]``.

        Returns:
            ``[B, C, H, W]`` jittered images in ``[0, 1]``.
        """
        b, c = x.shape[:2]
        shape = (b, c, 1, 1)
        lo_b, lo_c = max(0.0, 1 - self.brightness), max(0.0, 1 - self.contrast)
        beta = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(
            lo_b, 1 + self.brightness
        )
        gamma = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(lo_c, 1 + self.contrast)
        apply = torch.rand((b, 1, 1, 1), device=x.device) < self.p  # [B, 1, 1, 1]
        out = (x * beta).clamp(0, 1)
        mu = out.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        out = ((out - mu) * gamma + mu).clamp(0, 1)
        return torch.where(apply, out, x)


def check_color_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> None:
    """Refuse colour-jitter strengths torchvision's ``ColorJitter`` would refuse."""
    for name, strength in [
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ]:
        check_at_least(name, strength, 0)
    check_range("hue", hue, low=0, high=0.5)


#: The four colour-jitter adjustments, in torchvision's parameter order.
COLOR_STEPS: tuple[ColorStep, ...] = (
    VF.adjust_brightness,
    VF.adjust_contrast,
    VF.adjust_saturation,
    VF.adjust_hue,
)


@functools.cache
def compiled_color_steps() -> tuple[ColorStep, ...]:
    """`COLOR_STEPS` through ``torch.compile``, created once per process.

    Each adjustment is a chain of per-pixel operations (about 30 for the hue) that inductor fuses
    into one or two kernels: eager, every operation is a pass over the whole batch of views.
    """
    return tuple(cast(ColorStep, torch.compile(step, dynamic=False)) for step in COLOR_STEPS)


class RandomColorJitter(nn.Module):
    r"""torchvision's ``ColorJitter`` with probability ``p``, batched (RGB in ``[0, 1]``).

    Per sample, factors $\beta, \gamma, \sigma \sim U[\max(0, 1 - s), 1 + s]$ for the
    brightness, contrast and saturation strengths and a hue shift $\eta \sim U[-h, h]$
    turns; the four adjustments ([`geossl.transforms.functional`][geossl.transforms.functional],
    torchvision's definitions) run in a random order drawn once per batch (torchvision draws it per
    image, kornia per batch), and each sample keeps its input with probability ``1 - p``. The
    factors are drawn on the input's device; the order on the host (a permutation of four, read
    without a device sync).

    Args:
        brightness: strength ``s`` >= 0 (0.4).
        contrast: strength >= 0 (0.4).
        saturation: strength >= 0 (0.4).
        hue: strength ``h`` in ``[0, 0.5]`` (0.1).
        p: probability per sample (0.8).
        compile: run the adjustments through ``torch.compile``
            ([`compiled_color_steps`][geossl.transforms.photometric.compiled_color_steps]).

    Raises:
        ValueError: if a parameter is out of range.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_color_jitter(brightness, contrast, saturation, hue)
        check_fraction("p", p)
        self.strengths = (brightness, contrast, saturation)
        self.hue = hue
        self.p = p
        self.compiled = compile  # not ``compile``: nn.Module.compile is a method

    def forward(self, x: Tensor) -> Tensor:
        """Jitter a batch.

        Args:
            x: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.

        Returns:
            ``[B, 3, H, W]`` jittered images.
        """
        b = x.shape[0]
        u = torch.rand((4, b, 1, 1, 1), device=x.device, dtype=x.dtype)  # [4, B, 1, 1, 1]
        factors = [
            max(0.0, 1 - s) + (1 + s - max(0.0, 1 - s)) * u[k] for k, s in enumerate(self.strengths)
        ] + [self.hue * (2 * u[3] - 1)]
        steps = compiled_color_steps() if self.compiled else COLOR_STEPS
        out = x
        for k in torch.randperm(4).tolist():  # a CPU permutation: no device sync
            out = steps[k](out, factors[k])
        apply = torch.rand((b, 1, 1, 1), device=x.device) < self.p
        return torch.where(apply, out, x)


class RandomGrayscale(nn.Module):
    """torchvision's ``RandomGrayscale``, batched: luma in all three bands with probability ``p``.

    Args:
        p: probability per sample (0.2).

    Raises:
        ValueError: if ``p`` is out of range.
    """

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        check_fraction("p", p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Gray some samples of ``[B, 3, H, W]`` RGB in ``[0, 1]``."""
        apply = torch.rand((x.shape[0], 1, 1, 1), device=x.device) < self.p
        return torch.where(apply, VF.rgb_to_grayscale(x).expand_as(x), x)


class RandomGaussianBlur(nn.Module):
    """Gaussian blur with probability ``p`` and sigma ``U(sigma)`` per sample, batched.

    torchvision's ``GaussianBlur`` kernel (``kernel_size`` taps, reflect padding), one sigma per
    image for both axes (MoCo-v2 / SimCLR), drawn on the input's device.

    Args:
        kernel_size: odd kernel side >= 3.
        sigma: range of the standard deviation in pixels ((0.1, 2.0)).
        p: probability per sample (0.5).

    Raises:
        ValueError: if a parameter is out of range.
    """

    def __init__(
        self, kernel_size: int, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5
    ) -> None:
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError(f"sigma must be a range 0 < low <= high, got {sigma}")
        check_fraction("p", p)
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Blur some samples of ``[B, C, H, W]`` images."""
        b = x.shape[0]
        u = torch.rand((2, b), device=x.device)  # sigma, apply
        sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * u[0]  # [B]
        blurred = VF.gaussian_blur(x, self.kernel_size, sigma)
        return torch.where((u[1] < self.p).view(b, 1, 1, 1), blurred, x)
