"""Batched, on-device view augmentation for contrastive pretraining."""

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast, overload

import torch
from torch import Tensor, nn

from geossl.utils.amp import autocast_disabled

from . import functional as VF

#: A colour adjustment: ``(images [B, 3, H, W], factors [B, 1, 1, 1]) -> images``.
ColorStep = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "GeoSSLAugmentation",
    "RandomBandJitter",
    "RandomColorJitter",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "ViewParams",
]

#: ImageNet statistics, the normalisation of torchvision / timm / torchgeo's FMOW_RGB_GASSL weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViewParams:
    """Where every view of a batch came from, in source-pixel coordinates.

    Coordinates are pixel centres ``(x, y)``: ``x`` the column in ``0..W-1``, ``y`` the row.

    Attributes:
        transform: ``[B, 3, 3]`` float32 matrix ``M`` mapping a source pixel ``(x, y, 1)`` to its
            place in the view, ``(u, v, w) = M (x, y, 1)``, ``(u / w, v / w)``
            (crop-and-resize, then flip ``u -> size - 1 - u``). ``w = 1`` (the map is affine).
        crop_boxes: ``[B, 4]`` the crop window ``(x0, y0, x1, y1)`` in the source, inclusive corner
            pixel centres, before the flip.
        flipped: ``[B]`` bool, whether the view was flipped horizontally.
        source_size: ``(H, W)`` of the source images.
        view_size: ``(h, w)`` of the views.
        axis_aligned: the views are axis-aligned by construction (crop, scale and flip only, as
            :class:`GeoSSLAugmentation` draws them), so consumers that need it (SCRL's boxes)
            need not read ``transform`` on the host to check it.
    """

    transform: Tensor
    crop_boxes: Tensor
    flipped: Tensor
    source_size: tuple[int, int]
    view_size: tuple[int, int]
    axis_aligned: bool = False

    def map_points(self, points: Tensor) -> Tensor:
        """Map source-pixel coordinates into the views.

        Args:
            points: ``[B, N, 2]`` source ``(x, y)`` per sample.

        Returns:
            ``[B, N, 2]`` view ``(u, v)``; may fall outside the view when the point was cropped out.
        """
        ones = torch.ones_like(points[..., :1])
        homogeneous = torch.cat([points, ones], dim=-1)  # [B, N, 3]
        mapped = homogeneous @ self.transform.to(points.dtype).transpose(1, 2)  # [B, N, 3]
        return mapped[..., :2] / mapped[..., 2:]


class RandomBandJitter(nn.Module):
    r"""Per-band brightness and contrast jitter for multispectral images.

    Colour jitter and grayscale assume RGB (saturation and hue are defined on the RGB cube), so for
    ``C != 3`` bands geossl jitters every band independently instead. With probability ``p`` per
    sample, for each band ``c`` with spatial mean :math:`\mu_c`:

    .. math::

        x_c \leftarrow \operatorname{clip}_{[0, 1]}\big(\beta_c x_c\big), \qquad
        x_c \leftarrow \operatorname{clip}_{[0, 1]}\big(\gamma_c (x_c - \mu_c) + \mu_c\big)

    with :math:`\beta_c \sim U[\max(0, 1 - b), 1 + b]`, :math:`\gamma_c \sim U[\max(0, 1 - s),
    1 + s]`: torchvision's multiplicative brightness and contrast (the mean is per band rather than
    the grayscale mean). Not from the GeoSSL paper (RGB only): a documented geossl choice.
    Draws from torch's global generator on the input's device (reproducible with
    ``torch.manual_seed``).

    Args:
        brightness: :math:`b` >= 0 (default 0.4, the RGB recipe's brightness).
        contrast: :math:`s` >= 0 (default 0.4, the RGB recipe's contrast).
        p: probability per sample (default 0.8, the RGB recipe's colour-jitter probability).

    Raises:
        ValueError: if a parameter is out of range.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, p: float = 0.8) -> None:
        super().__init__()
        if brightness < 0:
            raise ValueError(f"brightness must be >= 0, got {brightness}")
        if contrast < 0:
            raise ValueError(f"contrast must be >= 0, got {contrast}")
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
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


def _probability(name: str, p: float) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {p}")


def _check_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> None:
    """Refuse colour-jitter strengths torchvision's ``ColorJitter`` would refuse."""
    for name, strength in [
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ]:
        if strength < 0:
            raise ValueError(f"{name} must be >= 0, got {strength}")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")


#: The four colour-jitter adjustments, in torchvision's parameter order.
COLOR_STEPS: tuple[ColorStep, ...] = (
    VF.adjust_brightness,
    VF.adjust_contrast,
    VF.adjust_saturation,
    VF.adjust_hue,
)


@functools.cache
def compiled_color_steps() -> tuple[ColorStep, ...]:
    """:data:`COLOR_STEPS` through ``torch.compile``, created once per process.

    Each adjustment is a chain of per-pixel operations (about 30 for the hue) that inductor fuses
    into one or two kernels: eager, every operation is a pass over the whole batch of views.
    """
    return tuple(cast(ColorStep, torch.compile(step, dynamic=False)) for step in COLOR_STEPS)


class RandomColorJitter(nn.Module):
    r"""torchvision's ``ColorJitter`` with probability ``p``, batched (RGB in ``[0, 1]``).

    Per sample, factors :math:`\beta, \gamma, \sigma \sim U[\max(0, 1 - s), 1 + s]` for the
    brightness, contrast and saturation strengths and a hue shift :math:`\eta \sim U[-h, h]`
    turns; the four adjustments (:mod:`geossl.transforms.functional`, torchvision's definitions)
    run in a random order drawn once per batch (torchvision draws it per image, kornia per
    batch), and each sample keeps its input with probability ``1 - p``. The factors are drawn on
    the input's device; the order on the host (a permutation of four, read without a device sync).

    Args:
        brightness: strength ``s`` >= 0 (0.4).
        contrast: strength >= 0 (0.4).
        saturation: strength >= 0 (0.4).
        hue: strength ``h`` in ``[0, 0.5]`` (0.1).
        p: probability per sample (0.8).
        compile: run the adjustments through ``torch.compile`` (:func:`compiled_color_steps`).

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
        _check_jitter(brightness, contrast, saturation, hue)
        _probability("p", p)
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
        _probability("p", p)
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
        _probability("p", p)
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


class GeoSSLAugmentation(nn.Module):
    """The MoCo-v2 / Geography-aware SSL view augmentation, batched on the device.

    The recipe of MoCo-v2 (Chen et al., 2020, https://arxiv.org/abs/2003.04297) as used by
    Geography-aware SSL (Ayush et al., ICCV 2021, https://arxiv.org/abs/2011.09980), with
    torchvision's definitions:

    1. ``RandomResizedCrop(size, scale=(min_scale, 1))``, ratio (3/4, 4/3), bilinear;
    2. ``RandomHorizontalFlip(p=flip_p)``;
    3. ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` with ``p=0.8`` (:class:`RandomColorJitter`), then
       ``RandomGrayscale(p=0.2)`` (RGB only; for ``in_chans != 3`` both are replaced by
       :class:`RandomBandJitter`);
    4. Gaussian blur with ``p=0.5``, sigma in (0.1, 2.0), odd kernel of about 10 % of ``size``
       (23 for 224, SimCLR's choice; at least 3), reflect padding;
    5. ``Normalize(mean, std)``.

    The flip is applied with the crop (the papers flip last): it commutes with the per-pixel
    colour operations and with the isotropic Gaussian blur under reflect padding, so the output
    distribution is the same, and all geometry is one affine map per sample
    (:class:`ViewParams`), which SCRL needs to map boxes between views.

    Crops are resampled in one batched ``grid_sample`` per call, exactly the returned matrix
    (corner pixel centres of the crop go to the corner pixel centres of the view,
    ``align_corners=True``). No anti-aliasing: the data workers resize to about ``size`` first, so
    crops are mostly up-sampled.

    Every step is a fixed handful of batched tensor operations (:mod:`geossl.transforms.functional`,
    about 130 per view against kornia's 780) and nothing drawn is read back on the host, so on a
    GPU the CPU never waits for queued work. Draws use torch's global generator of the input's
    device (``torch.manual_seed`` makes a call reproducible).

    Args:
        size: output side in pixels (224 in the paper).
        min_scale: smallest crop area as a fraction of the image (0.2, MoCo-v2).
        mean: per-band mean of the ``[0, 1]`` input; ImageNet's for 3 bands when ``None``,
            required for other band counts.
        std: per-band standard deviation, same rules as ``mean``.
        in_chans: number of bands ``C`` the input has.
        jitter_p: probability of colour jitter (per-band jitter for ``C != 3``). Default 0.8.
        grayscale_p: probability of grayscale (RGB only). Default 0.2.
        blur_p: probability of Gaussian blur. Default 0.5.
        flip_p: probability of a horizontal flip. Default 0.5.
        brightness: colour-jitter brightness strength (0.4).
        contrast: colour-jitter contrast strength (0.4).
        saturation: colour-jitter saturation strength (0.4, RGB only).
        hue: colour-jitter hue strength (0.1, RGB only).
        compile: fuse the colour-jitter adjustments with ``torch.compile``
            (:class:`RandomColorJitter`); the geometry and blur are already a few kernels.

    Raises:
        ValueError: if a parameter is out of range or ``mean`` / ``std`` do not have ``C`` entries.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        size: int = 224,
        min_scale: float = 0.2,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        in_chans: int = 3,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.5,
        flip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        for name, prob in [
            ("jitter_p", jitter_p),
            ("grayscale_p", grayscale_p),
            ("blur_p", blur_p),
            ("flip_p", flip_p),
        ]:
            _probability(name, prob)
        _check_jitter(brightness, contrast, saturation, hue)
        mean_t, std_t = self._check_stats(mean, std, in_chans)

        self.size = size
        self.in_chans = in_chans
        self.blur_kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        self.min_scale = min_scale
        self.flip_p = flip_p
        colour: list[nn.Module]
        if in_chans == 3:
            colour = [
                RandomColorJitter(brightness, contrast, saturation, hue, jitter_p, compile),
                RandomGrayscale(p=grayscale_p),
            ]
        else:
            colour = [RandomBandJitter(brightness, contrast, p=jitter_p)]
        self.colour = nn.Sequential(*colour)
        self.blur = RandomGaussianBlur(self.blur_kernel, sigma=(0.1, 2.0), p=blur_p)
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    @staticmethod
    def _check_stats(
        mean: Sequence[float] | None, std: Sequence[float] | None, in_chans: int
    ) -> tuple[Tensor, Tensor]:
        """Resolve and check the normalisation statistics.

        Args:
            mean: per-band means or ``None``.
            std: per-band standard deviations or ``None``.
            in_chans: number of bands.

        Returns:
            ``(mean [C], std [C])`` float32 tensors.

        Raises:
            ValueError: if a statistic is missing for ``C != 3``, has the wrong length, or a
                std is <= 0.
        """
        if mean is None:
            if in_chans != 3:
                raise ValueError(f"mean is required for in_chans={in_chans} (ImageNet's has 3)")
            mean = IMAGENET_MEAN
        if std is None:
            if in_chans != 3:
                raise ValueError(f"std is required for in_chans={in_chans} (ImageNet's has 3)")
            std = IMAGENET_STD
        if len(mean) != in_chans:
            raise ValueError(f"mean has {len(mean)} values, expected in_chans={in_chans}")
        if len(std) != in_chans:
            raise ValueError(f"std has {len(std)} values, expected in_chans={in_chans}")
        if any(not (math.isfinite(s) and s > 0) for s in std):
            raise ValueError(f"std must be finite and > 0, got {list(std)}")
        return torch.tensor(list(mean), dtype=torch.float32), torch.tensor(
            list(std), dtype=torch.float32
        )

    @torch.no_grad()
    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Replace the normalisation statistics (e.g. once they are estimated from the data).

        The buffers keep their device and dtype.

        Args:
            mean: per-band mean of the ``[0, 1]`` input, ``C`` values.
            std: per-band standard deviation, ``C`` values, finite and > 0.

        Raises:
            ValueError: if a statistic has the wrong length or a std is <= 0.
        """
        mean_t, std_t = self._check_stats(mean, std, self.in_chans)
        self.mean.copy_(mean_t.view(1, -1, 1, 1))
        self.std.copy_(std_t.view(1, -1, 1, 1))

    @overload
    def forward(self, x: Tensor, return_params: Literal[False] = False) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, return_params: Literal[True]) -> tuple[Tensor, ViewParams]: ...

    def forward(self, x: Tensor, return_params: bool = False) -> Tensor | tuple[Tensor, ViewParams]:
        """Draw one random view of every image of a batch.

        Args:
            x: ``[B, C, H, W]`` images, uint8 (divided by 255) or floating point in ``[0, 1]``.
            return_params: also return where each view came from (:class:`ViewParams`).

        Returns:
            ``[B, C, size, size]`` normalised views (float32 for uint8 input, else the input's
            floating dtype), and the :class:`ViewParams` when ``return_params`` is true.

        Raises:
            ValueError: if ``x`` is not ``[B, in_chans, H, W]``.
            TypeError: if ``x`` is neither uint8 nor floating point.
        """
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected [B, {self.in_chans}, H, W] images, got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
        b, _, height, width = x.shape
        if height < 2 or width < 2:
            raise ValueError(f"images must be at least 2 x 2 pixels, got {height} x {width}")
        with autocast_disabled(x.device):
            crops = VF.sample_resized_crops(
                b, height, width, (self.min_scale, 1.0), device=x.device
            )  # [B, 4] (x0, y0, w, h)
            flipped = torch.rand(b, device=x.device) < self.flip_p  # [B]
            views: Tensor = VF.warp_views(x, crops, flipped, self.size)  # [B, C, size, size]
            views = self.blur(self.colour(views))  # [B, C, size, size]
            views = (views - self.mean.to(views.dtype)) / self.std.to(views.dtype)  # [B, C, S, S]
        if not return_params:
            return views
        x0, y0, w, h = crops.unbind(dim=1)
        return views, ViewParams(
            transform=VF.crop_flip_matrix(crops, flipped, self.size),
            crop_boxes=torch.stack([x0, y0, x0 + w - 1, y0 + h - 1], dim=1),
            flipped=flipped,
            source_size=(int(height), int(width)),
            view_size=(self.size, self.size),
            axis_aligned=True,
        )

    def apply_geometry(self, x: Tensor, params: ViewParams, mode: str = "bilinear") -> Tensor:
        """Crop, resize and flip other data of the same sources exactly like the views.

        For instance masks or label rasters (``mode="nearest"``) aligned with the images that
        :meth:`forward` augmented: no colour, blur or normalisation.

        Args:
            x: ``[B, K, H, W]`` floating-point data on the sources' grid (``params.source_size``).
            params: the views' geometry, from ``forward(..., return_params=True)``.
            mode: ``"bilinear"`` or ``"nearest"``.

        Returns:
            ``[B, K, size, size]``.

        Raises:
            ValueError: if ``x`` is not on the sources' grid.
        """
        if x.ndim != 4 or tuple(x.shape[-2:]) != params.source_size:
            raise ValueError(
                f"expected [B, K, {params.source_size[0]}, {params.source_size[1]}] data, "
                f"got {tuple(x.shape)}"
            )
        boxes = params.crop_boxes
        crops = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + 1], dim=1)
        return VF.warp_views(x, crops, params.flipped, self.size, mode=mode)
