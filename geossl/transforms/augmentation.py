"""Batched, on-device view augmentation for contrastive pretraining (kornia)."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Self, cast, overload

import kornia.augmentation as K
import torch
from kornia.augmentation.container.params import ParamItem
from torch import Tensor, nn

from geossl.utils.amp import autocast_disabled

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "GeoSSLAugmentation", "RandomBandJitter", "ViewParams"]

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
        kornia_params: kornia's parameters of the geometric step, to replay it with
            ``augmentation.geometric(other, params=kornia_params)`` (e.g. on masks).
        axis_aligned: the views are axis-aligned by construction (crop, scale and flip only, as
            :class:`GeoSSLAugmentation` draws them), so consumers that need it (SCRL's boxes)
            need not read ``transform`` on the host to check it.
    """

    transform: Tensor
    crop_boxes: Tensor
    flipped: Tensor
    source_size: tuple[int, int]
    view_size: tuple[int, int]
    kornia_params: list[ParamItem]
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


class GeoSSLAugmentation(nn.Module):
    """The MoCo-v2 / Geography-aware SSL view augmentation, batched on the device.

    The recipe of MoCo-v2 (Chen et al., 2020, https://arxiv.org/abs/2003.04297) as used by
    Geography-aware SSL (Ayush et al., ICCV 2021, https://arxiv.org/abs/2011.09980):

    1. ``RandomResizedCrop(size, scale=(min_scale, 1))``, ratio (3/4, 4/3), bilinear;
    2. ``RandomHorizontalFlip(p=flip_p)``;
    3. ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` with ``p=0.8``, then ``RandomGrayscale(p=0.2)``
       (RGB only; for ``in_chans != 3`` both are replaced by :class:`RandomBandJitter`);
    4. ``RandomGaussianBlur`` with ``p=0.5``, sigma in (0.1, 2.0), odd kernel of about 10 % of
       ``size`` (23 for 224, SimCLR's choice; at least 3), reflect padding;
    5. ``Normalize(mean, std)``.

    The flip is applied right after the crop (the papers flip last): it commutes with the per-pixel
    colour operations and with the isotropic Gaussian blur under reflect padding, so the output
    distribution is the same, and all geometry is one affine map per sample
    (:class:`ViewParams`), which SCRL needs to map boxes between views.

    Crops use kornia's ``cropping_mode="resample"``: one batched ``warp_affine`` per call, exactly
    the returned matrix (corner pixel centres of the crop go to the corner pixel centres of the
    view, ``align_corners=True``). No anti-aliasing: the data workers resize to about ``size``
    first, so crops are mostly up-sampled.

    The crop, flip, colour and blur parameters are drawn on the host (torch's global CPU
    generator) and sent to the device with non-blocking copies, however the module is moved:
    kornia 0.9 otherwise moves its random generators with the module, draws on the GPU and then
    reads about nine of the drawn values back on the host per view (``batch_prob.item()``, the
    colour-jitter order and guards, the blur's sigma check), and every such read makes the CPU
    wait for all queued GPU work. :class:`RandomBandJitter` draws on the device (it reads
    nothing back). ``torch.manual_seed`` seeds both, so a call is reproducible.

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
            if not 0 <= prob <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {prob}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        for name, strength in [
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ]:
            if strength < 0:
                raise ValueError(f"{name} must be >= 0, got {strength}")
        mean_t, std_t = self._check_stats(mean, std, in_chans)

        self.size = size
        self.in_chans = in_chans
        self.blur_kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        self.geometric = K.AugmentationSequential(
            K.RandomResizedCrop(
                (size, size),
                scale=(min_scale, 1.0),
                cropping_mode="resample",
                align_corners=True,
            ),
            K.RandomHorizontalFlip(p=flip_p),
        )
        colour: list[nn.Module]
        if in_chans == 3:
            colour = [
                K.ColorJitter(brightness, contrast, saturation, hue, p=jitter_p),
                K.RandomGrayscale(p=grayscale_p),
            ]
        else:
            colour = [RandomBandJitter(brightness, contrast, p=jitter_p)]
        self.colour = nn.Sequential(*colour)
        self.blur = K.RandomGaussianBlur(
            (self.blur_kernel, self.blur_kernel), sigma=(0.1, 2.0), p=blur_p
        )
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Self:
        """Move / cast the normalisation buffers only, never kornia's random generators.

        The children hold no parameters or buffers; what ``Module.to`` would change in them is
        the device kornia draws on (see the class docstring for why it stays the host).
        """
        del recurse  # the children have no tensors to move
        moved: Self = super()._apply(fn, recurse=False)  # type: ignore[no-untyped-call]
        return moved

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
        source_size = (int(x.shape[-2]), int(x.shape[-1]))
        with autocast_disabled(x.device):
            params = self.geometric.forward_parameters(x.shape)
            views = cast(Tensor, self.geometric(x, params=params))  # [B, C, size, size]
            matrix = self.geometric.transform_matrix
            views = cast(Tensor, self.blur(self.colour(views)))
            views = (views - self.mean.to(views.dtype)) / self.std.to(views.dtype)  # [B, C, S, S]
        if not return_params:
            return views
        if matrix is None:  # pragma: no cover - the crop always records a matrix
            raise RuntimeError("kornia did not record the crop/flip transform matrix")
        return views, self._view_params(matrix, params, source_size)

    def _view_params(
        self, matrix: Tensor, params: list[ParamItem], source_size: tuple[int, int]
    ) -> ViewParams:
        """Describe the geometry of a call from its transform matrix.

        Args:
            matrix: ``[B, 3, 3]`` source-to-view matrix recorded by kornia.
            params: kornia's parameters of the geometric step.
            source_size: ``(H, W)`` of the source.

        Returns:
            The :class:`ViewParams` of the call.
        """
        matrix = matrix.float()
        flipped = matrix[:, 0, 0] < 0  # the flip negates the x scale
        corners = torch.tensor(
            [[0.0, 0.0, 1.0], [self.size - 1.0, self.size - 1.0, 1.0]], device=matrix.device
        )  # view corners, [2, 3]
        src = corners @ torch.linalg.inv(matrix).transpose(1, 2)  # [B, 2, 3]
        src = src[..., :2] / src[..., 2:]
        lo, hi = src.min(dim=1).values, src.max(dim=1).values  # [B, 2] each
        boxes = torch.cat([lo, hi], dim=1)  # [B, 4] (x0, y0, x1, y1)
        return ViewParams(
            transform=matrix,
            crop_boxes=boxes,
            flipped=flipped,
            source_size=source_size,
            view_size=(self.size, self.size),
            kornia_params=params,
            axis_aligned=True,
        )
