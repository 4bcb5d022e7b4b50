"""Batched, on-device view augmentation for contrastive pretraining."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor, nn

from geossl.utils.amp import autocast_disabled
from geossl.utils.checks import check_at_least, check_fraction, check_range
from geossl.utils.normalization import Normalization

from . import functional as VF
from .photometric import (
    RandomBandJitter,
    RandomColorJitter,
    RandomGaussianBlur,
    RandomGrayscale,
    check_color_jitter,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "GeoSSLAugmentation",
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
            [`GeoSSLAugmentation`][geossl.transforms.augmentation.GeoSSLAugmentation] draws them),
            so consumers that need it (SCRL's boxes) need not read ``transform`` on the host to
            check it.
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


class GeoSSLAugmentation(nn.Module):
    """The MoCo-v2 / Geography-aware SSL view augmentation, batched on the device.

    The recipe of MoCo-v2 (Chen et al., 2020, https://arxiv.org/abs/2003.04297) as used by
    Geography-aware SSL (Ayush et al., ICCV 2021, https://arxiv.org/abs/2011.09980), with
    torchvision's definitions:

    1. ``RandomResizedCrop(size, scale=(min_scale, 1))``, ratio (3/4, 4/3), bilinear;
    2. ``RandomHorizontalFlip(p=flip_p)``;
    3. ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` with ``p=0.8``
       ([`RandomColorJitter`][geossl.transforms.photometric.RandomColorJitter]), then
       ``RandomGrayscale(p=0.2)`` (RGB only; for ``in_chans != 3`` both are replaced by
       [`RandomBandJitter`][geossl.transforms.photometric.RandomBandJitter]);
    4. Gaussian blur with ``p=0.5``, sigma in (0.1, 2.0), odd kernel of about 10 % of ``size``
       (23 for 224, SimCLR's choice; at least 3), reflect padding;
    5. ``Normalize(mean, std)``.

    The flip is applied with the crop (the papers flip last): it commutes with the per-pixel
    colour operations and with the isotropic Gaussian blur under reflect padding, so the output
    distribution is the same, and all geometry is one affine map per sample
    ([`ViewParams`][geossl.transforms.augmentation.ViewParams]), which SCRL needs to map boxes
    between views.

    Crops are resampled in one batched ``grid_sample`` per call, exactly the returned matrix
    (corner pixel centres of the crop go to the corner pixel centres of the view,
    ``align_corners=True``). No anti-aliasing: the data workers resize to about ``size`` first, so
    crops are mostly up-sampled.

    Every step is a fixed handful of batched tensor operations
    ([`geossl.transforms.functional`][geossl.transforms.functional], about 250 per view against
    kornia's 781, docs/benchmarks.md) and nothing drawn is read back on the host, so on a GPU the
    CPU never waits for queued work. Draws use torch's global generator of the input's device
    (``torch.manual_seed`` makes a call reproducible).

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
            ([`RandomColorJitter`][geossl.transforms.photometric.RandomColorJitter]); the geometry
            and blur are already a few kernels.

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
        check_at_least("size", size, 2)
        check_range("min_scale", min_scale, low=0, high=1, low_open=True)
        check_at_least("in_chans", in_chans, 1)
        for name, prob in [
            ("jitter_p", jitter_p),
            ("grayscale_p", grayscale_p),
            ("blur_p", blur_p),
            ("flip_p", flip_p),
        ]:
            check_fraction(name, prob)
        check_color_jitter(brightness, contrast, saturation, hue)
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
            ``(mean [C, 1, 1], std [C, 1, 1])`` float32 tensors.

        Raises:
            ValueError: if a statistic is missing for ``C != 3``, has the wrong length, or is
                not valid for [`of`][geossl.utils.normalization.Normalization.of].
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
        return Normalization.of(mean, std, where="GeoSSLAugmentation").tensors()

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
            return_params: also return where each view came from
                ([`ViewParams`][geossl.transforms.augmentation.ViewParams]).

        Returns:
            ``[B, C, size, size]`` normalised views (float32 for uint8 input, else the input's
            floating dtype), and the [`ViewParams`][geossl.transforms.augmentation.ViewParams] when
            ``return_params`` is true.

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
        [`forward`][geossl.transforms.augmentation.GeoSSLAugmentation.forward] augmented: no colour,
        blur or normalisation.

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
