r"""Batched view-augmentation kernels: a few tensor operations per step, nothing read on the host.

The building blocks of [`GeoSSLAugmentation`][geossl.transforms.GeoSSLAugmentation]. Each works on a
whole batch with per-sample parameters given as tensors, so a view of ``B`` images costs a fixed
number of kernel launches whatever ``B`` is, and no value is read back on the host (a read would
make the CPU wait for all queued GPU work). They follow torchvision's definitions (the MoCo-v2
recipe is written with torchvision's transforms), which the tests check them against sample by
sample.

Why not kornia's augmentation classes: one kornia view (crop, flip, colour jitter, grayscale,
blur) dispatches about 780 tensor operations whatever the batch size (its containers, parameter
validation and per-step bookkeeping), as many as a ResNet-50 forward pass; these kernels need
about a sixth of that (``benchmarks/step_throughput.py --profile`` counts both).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "crop_flip_matrix",
    "gaussian_blur",
    "rgb_to_grayscale",
    "sample_resized_crops",
    "warp_views",
]

#: ITU-R 601-2 luma weights, torchvision's ``rgb_to_grayscale``.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def sample_resized_crops(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    device: torch.device | None = None,
    tries: int = 10,
) -> Tensor:
    """Draw torchvision's ``RandomResizedCrop`` windows for a batch, all at once.

    Per image, up to ``tries`` candidates: area fraction ``U(scale)``, log aspect ratio
    ``U(log ratio)``, sides rounded to whole pixels; the first that fits is placed uniformly at
    whole-pixel offsets. When none fits, the central crop of the clamped aspect ratio
    (torchvision's fallback). Sides are at least 2 pixels so that the crop-to-view map is defined.

    Args:
        batch: number of windows ``B``.
        height: source height ``H`` (>= 2).
        width: source width ``W`` (>= 2).
        scale: range of the crop area as a fraction of ``H * W``.
        ratio: range of the aspect ratio ``w / h``.
        device: where to draw (torch's generator of that device).
        tries: candidates per image (torchvision: 10).

    Returns:
        ``[B, 4]`` float32 ``(x0, y0, w, h)``: top-left pixel and sides, whole numbers.
    """
    area = float(height * width)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    u = torch.rand((2, batch, tries), device=device)  # area, aspect ratio
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])  # [B, T]
    aspect = torch.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])  # [B, T]
    w = torch.round(torch.sqrt(target_area * aspect))  # [B, T]
    h = torch.round(torch.sqrt(target_area / aspect))  # [B, T]
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # [B, T]
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # [B, 1] first fitting try
    found = fits.any(dim=1)  # [B]

    # torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w.gather(1, first)[:, 0], float(fallback_w))  # [B]
    h = torch.where(found, h.gather(1, first)[:, 0], float(fallback_h))  # [B]
    w, h = w.clamp(2, width), h.clamp(2, height)
    offsets = torch.rand((2, batch), device=device)  # [2, B]
    x0 = torch.where(found, torch.floor(offsets[0] * (width - w + 1)), (width - w) // 2)
    y0 = torch.where(found, torch.floor(offsets[1] * (height - h + 1)), (height - h) // 2)
    return torch.stack([x0, y0, w, h], dim=1)  # [B, 4]


def crop_flip_matrix(crops: Tensor, flipped: Tensor, size: int) -> Tensor:
    """Source-to-view matrices of crop-resize-flip views (pixel centres, corners to corners).

    The crop's corner pixel centres ``(x0, y0)`` and ``(x0 + w - 1, y0 + h - 1)`` go to the view's
    ``(0, 0)`` and ``(size - 1, size - 1)`` (``align_corners=True``), then ``u -> size - 1 - u``
    where flipped.

    Args:
        crops: ``[B, 4]`` ``(x0, y0, w, h)`` from
            [`sample_resized_crops`][geossl.transforms.functional.sample_resized_crops].
        flipped: ``[B]`` bool.
        size: side of the square views.

    Returns:
        ``[B, 3, 3]`` float32 ``M`` with ``(u, v, 1) = M (x, y, 1)``.
    """
    x0, y0, w, h = crops.float().unbind(dim=1)  # [B] each
    sx, sy = (size - 1) / (w - 1), (size - 1) / (h - 1)  # [B]
    sign = 1.0 - 2.0 * flipped.float()  # [B] +1 or -1
    zero, one = torch.zeros_like(sx), torch.ones_like(sx)
    rows = [
        torch.stack([sign * sx, zero, torch.where(flipped, size - 1 + sx * x0, -sx * x0)], dim=1),
        torch.stack([zero, sy, -sy * y0], dim=1),
        torch.stack([zero, zero, one], dim=1),
    ]
    return torch.stack(rows, dim=1)  # [B, 3, 3]


def warp_views(
    x: Tensor,
    crops: Tensor,
    flipped: Tensor,
    size: int | tuple[int, int],
    mode: str = "bilinear",
    vflipped: Tensor | None = None,
) -> Tensor:
    """Resample the crop-resize-flip views of `crop_flip_matrix` in one ``grid_sample``.

    Args:
        x: ``[B, C, H, W]`` floating-point sources.
        crops: ``[B, 4]`` ``(x0, y0, w, h)``.
        flipped: ``[B]`` bool, horizontal flips.
        size: side of square views, or ``(height, width)``.
        mode: ``"bilinear"`` (images) or ``"nearest"`` (labels, masks).
        vflipped: ``[B]`` bool, vertical flips (none when ``None``;
            [`crop_flip_matrix`][geossl.transforms.functional.crop_flip_matrix] describes views
            without them).

    Returns:
        ``[B, C, height, width]`` views.
    """
    b, _, height, width = x.shape
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x0, y0, w, h = crops.to(x.dtype).unbind(dim=1)  # [B] each
    # Normalised output coordinate a in [-1, 1] -> normalised source coordinate (align_corners).
    sign_x = 1.0 - 2.0 * flipped.to(x.dtype)
    sign_y = 1.0 if vflipped is None else 1.0 - 2.0 * vflipped.to(x.dtype)
    zero = torch.zeros_like(x0)
    row_x = [sign_x * (w - 1) / (width - 1), zero, (2 * x0 + w - 1) / (width - 1) - 1]
    row_y = [zero, sign_y * (h - 1) / (height - 1), (2 * y0 + h - 1) / (height - 1) - 1]
    theta = torch.stack([torch.stack(row_x, 1), torch.stack(row_y, 1)], dim=1)  # [B, 2, 3]
    grid = F.affine_grid(theta, [b, 1, out_h, out_w], align_corners=True)  # [B, h, w, 2]
    # "border": a coordinate that rounds just past the last pixel centre reads that pixel.
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * x + (1 - factor) * other, 0, 1)``, torchvision's ``_blend``."""
    return (factor * x + (1 - factor) * other).clamp(0, 1)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """``[B, 3, H, W]`` RGB in ``[0, 1]`` to ``[B, 1, H, W]`` luma (torchvision's weights)."""
    r, g, b = x.unbind(dim=1)
    gray = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
    return gray.unsqueeze(1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Multiply by ``factor`` (``[B, 1, 1, 1]``) and clamp to ``[0, 1]`` (torchvision)."""
    return (x * factor).clamp(0, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with each image's mean luma by ``factor`` (``[B, 1, 1, 1]``, torchvision)."""
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the pixel's luma by ``factor`` (``[B, 1, 1, 1]``, torchvision)."""
    return _blend(x, rgb_to_grayscale(x), factor)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    r"""Rotate the HSV hue by ``factor`` turns (``[B, 1, 1, 1]`` in ``[-0.5, 0.5]``, torchvision).

    torchvision's ``_rgb2hsv`` for the hue and saturation; back to RGB with the closed form of
    the HSV cone, $c_n = v - v s \,\mathrm{clamp}(\min(k_n, 4 - k_n), 0, 1)$ with
    $k_n = (n + 6h) \bmod 6$ for $n = 5, 3, 1$ (R, G, B): the values of
    torchvision's six-sector table in a few whole-batch operations instead of a table of 18.
    """
    r, g, b = x.unbind(dim=1)  # [B, H, W] each
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    h = torch.remainder(h + factor[:, 0], 1.0)  # [B, H, W] turns
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)  # [B, 3, H, W]
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    v = maxc.unsqueeze(1)
    return v - v * s.unsqueeze(1) * ramp


def gaussian_blur(x: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per image, reflect padding (torchvision's kernel).

    Args:
        x: ``[B, C, H, W]`` images (``H, W > kernel_size // 2``).
        kernel_size: odd kernel side.
        sigma: ``[B]`` standard deviations in pixels (> 0).

    Returns:
        ``[B, C, H, W]`` blurred images.
    """
    b, c, height, width = x.shape
    half = (kernel_size - 1) * 0.5
    t = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)  # [K]
    kernel = torch.exp(-0.5 * (t / sigma.to(x.dtype)[:, None]) ** 2)  # [B, K]
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0)  # [B*C, K], one per (image, band)
    pad = kernel_size // 2
    out = F.pad(x.reshape(1, b * c, height, width), (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel[:, None, None, :], groups=b * c)  # along x
    out = F.conv2d(out, kernel[:, None, :, None], groups=b * c)  # along y
    return out.reshape(b, c, height, width)
