"""Reading fMoW images: the standard context crop around the target and the fixed-size read.

[`fmow_context_box`][geossl.datasets.fmow.io.fmow_context_box] computes the crop around the target
box that the fMoW baseline uses; [`read_fmow_image`][geossl.datasets.fmow.io.read_fmow_image] reads
that crop (JPEG or GeoTIFF) resized to a fixed square size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from geossl.datasets.fmow.constants import MS_SCALE

__all__ = ["fmow_context_box", "read_fmow_image"]

#: The start-of-image marker every JPEG file begins with.
_JPEG_START = b"\xff\xd8"


def _context_multiplier(ratio: float) -> float:
    if ratio < 0.1:
        return 2.0
    if ratio < 0.2:
        return 1.0
    if ratio < 0.3:
        return 0.5
    if ratio < 0.4:
        return 0.3
    if ratio < 0.5:
        return 0.2
    return 0.15


def fmow_context_box(
    box: Sequence[int], img_width: int, img_height: int
) -> tuple[int, int, int, int] | None:
    """The fMoW baseline's crop: the target box plus context, clipped to the image.

    Each side is padded by ``int(side * mult / 2)`` pixels on both ends, where ``mult`` is 0.15 by
    default and grows for boxes that are small relative to the image: 0.2 / 0.3 / 0.5 / 1 / 2 when
    ``side / image side`` falls below 0.5 / 0.4 / 0.3 / 0.2 / 0.1. Width and height get their own
    multiplier.

    This follows ``fmow-baseline`` (``data_ml_functions/dataFunctions.py``) with one deliberate
    difference: the baseline divides the box *width* by ``img.shape[0]`` (the image *height*) and
    the box height by the width; here width is compared with width and height with height. The two
    agree on square images.

    Args:
        box: ``(x, y, w, h)`` in pixels.
        img_width: image width in pixels.
        img_height: image height in pixels.

    Returns:
        ``(x0, y0, x1, y1)`` with exclusive ends, inside ``[0, img_width] x [0, img_height]``, or
        ``None`` when a box side is 2 px or less (skipped by the baseline) or the clipped crop is
        empty.
    """
    x, y, w, h = (int(v) for v in box)
    if w <= 2 or h <= 2 or img_width <= 0 or img_height <= 0:
        return None
    width_buffer = int((w * _context_multiplier(w / img_width)) / 2.0)
    height_buffer = int((h * _context_multiplier(h / img_height)) / 2.0)
    x0 = max(x - width_buffer, 0)
    y0 = max(y - height_buffer, 0)
    x1 = min(x + w + width_buffer, img_width)
    y1 = min(y + h + height_buffer, img_height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _jpeg_draft_size(
    image_size: tuple[int, int], crop: tuple[int, int, int, int], size: int | tuple[int, int]
) -> tuple[int, int]:
    """The full-image size to request from ``Image.draft`` so the crop still covers ``size`` px.

    ``size`` is the output side, or the output ``(width, height)``.
    """
    out_w, out_h = (size, size) if isinstance(size, int) else size
    width, height = image_size
    crop_w = max(crop[2] - crop[0], 1)
    crop_h = max(crop[3] - crop[1], 1)
    return max(1, math.ceil(width * out_w / crop_w)), max(1, math.ceil(height * out_h / crop_h))


def _read_jpeg(
    path: str,
    crop: tuple[int, int, int, int] | None,
    size: tuple[int, int],
    bands: Sequence[int] | None,
) -> Tensor:
    with Image.open(path) as img:
        full_w, full_h = img.size
        box = crop if crop is not None else (0, 0, full_w, full_h)
        # Decode at 1/2, 1/4 or 1/8 scale in the DCT domain when the crop stays >= size pixels: a
        # large fMoW JPEG then decodes several times faster. draft() is a no-op for non-JPEG files.
        drafted = img.draft("RGB", _jpeg_draft_size((full_w, full_h), box, size))
        # draft() reports where the original image lies in the reduced one: (0, 0, W / s, H / s).
        scale = full_w / drafted[1][2] if drafted is not None and drafted[1][2] > 0 else 1.0
        rgb: Image.Image = img if img.mode == "RGB" else img.convert("RGB")
        region = (box[0] / scale, box[1] / scale, box[2] / scale, box[3] / scale)
        # PIL's resampling filters scale their support when downsampling, i.e. they antialias.
        resized = rgb.resize(size, Image.Resampling.BILINEAR, box=region)
    array = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)
    if bands is not None:
        array = array[[b - 1 for b in bands]]
    return array.contiguous()


def _read_tiff(
    path: str,
    crop: tuple[int, int, int, int] | None,
    size: tuple[int, int],
    bands: Sequence[int] | None,
    scale: float | None,
) -> Tensor:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        indexes = list(bands) if bands is not None else list(src.indexes)
        if crop is None:
            crop = (0, 0, src.width, src.height)
        window = Window(crop[0], crop[1], crop[2] - crop[0], crop[3] - crop[1])
        data = src.read(
            indexes,
            window=window,
            out_shape=(len(indexes), size[1], size[0]),
            resampling=Resampling.bilinear,
            boundless=False,
        )
        dtype = np.dtype(src.dtypes[indexes[0] - 1])
    factor = scale if scale is not None else (1.0 / 255.0 if dtype == np.uint8 else MS_SCALE)
    out = data.astype(np.float32) * np.float32(factor)
    np.clip(out, 0.0, 1.0, out=out)
    return torch.from_numpy(out)


def read_fmow_image(
    path: str | os.PathLike[str],
    crop: tuple[int, int, int, int] | None,
    size: int,
    bands: Sequence[int] | None = None,
    *,
    scale: float | None = None,
    boundless: bool = False,
) -> Tensor:
    """Read a crop of an fMoW image resized to ``size x size``.

    * JPEG (fMoW-rgb ``_rgb.jpg`` / ``_msrgb.jpg``): decoded with PIL, using
      `draft` so that a crop much larger than ``size`` is decoded at 1/2, 1/4
      or 1/8 scale, then cropped and resized with antialiasing (bilinear).
      Returns ``uint8 [C, size, size]``.
    * GeoTIFF (fMoW-full ``_rgb.tif`` / ``_ms.tif``): a windowed rasterio read of the crop with
      ``out_shape`` (bilinear) resampling. Returns ``float32 [C, size, size]`` in ``[0, 1]``: values
      times ``scale``, clipped.

    Args:
        path: the image file (``.jpg``/``.jpeg`` through PIL, anything else through rasterio).
        crop: ``(x0, y0, x1, y1)`` pixel window with exclusive ends, ``None`` for the whole image.
        size: output side in pixels.
        bands: 1-based band indexes as in rasterio (``[5, 3, 2]`` is red/green/blue of an 8-band
            WorldView ``_ms.tif``); ``None`` keeps all bands.
        scale: TIFF only: factor applied to the raw values; ``None`` means 1/255 for 8-bit rasters
            and 1/2047 (`MS_SCALE`, the 11-bit range of WorldView) otherwise.
        boundless: ``crop`` may extend past the image (negative or too large coordinates); the
            outside is zero and window coordinates still map linearly onto the output (the
            shared canvas of `FMoWTemporalPairs`).

    Returns:
        The image tensor, channels first.

    Raises:
        ValueError: if ``size`` or ``bands`` are invalid.
        OSError: (or a rasterio error) if the file cannot be read or decoded.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if bands is not None and (len(bands) == 0 or min(bands) < 1):
        raise ValueError(f"bands must be 1-based band indexes, got {list(bands)}")
    name = os.fspath(path)
    if crop is not None and (crop[2] <= crop[0] or crop[3] <= crop[1]):
        raise ValueError(f"{name}: empty crop {tuple(crop)}")
    is_jpeg = name.lower().endswith((".jpg", ".jpeg"))
    if is_jpeg and bands is not None and max(bands) > 3:
        raise ValueError(f"{name}: a JPEG has 3 bands, got band indexes {list(bands)}")
    if crop is not None and boundless:
        return _read_padded(name, crop, size, bands, scale)
    if is_jpeg:
        return _read_jpeg(name, crop, (size, size), bands)
    return _read_tiff(name, crop, (size, size), bands, scale)


def _image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` of a JPEG (PIL, header only) or a raster (rasterio)."""
    if path.lower().endswith((".jpg", ".jpeg")):
        with Image.open(path) as img:
            return img.size
    import rasterio

    with rasterio.open(path) as src:
        return src.width, src.height


def _read_padded(
    path: str,
    crop: tuple[int, int, int, int],
    size: int,
    bands: Sequence[int] | None,
    scale: float | None,
) -> Tensor:
    """Read a window that may extend past the image: the outside is zero (a shared canvas).

    The part of ``crop`` inside the image is read at its share of ``size`` and pasted where it
    lies in the window, so window coordinates map linearly onto the output as for an inside crop.
    """
    is_jpeg = path.lower().endswith((".jpg", ".jpeg"))
    width, height = _image_size(path)
    x0, y0, x1, y1 = crop
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        if is_jpeg:
            return _read_jpeg(path, crop, (size, size), bands)
        return _read_tiff(path, crop, (size, size), bands, scale)
    inside = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    # Output pixels covered by the inside part (rounded outwards would stretch it: round).
    ox0, oy0 = round((inside[0] - x0) * sx), round((inside[1] - y0) * sy)
    ox1, oy1 = round((inside[2] - x0) * sx), round((inside[3] - y0) * sy)
    if inside[0] >= inside[2] or inside[1] >= inside[3] or ox0 >= ox1 or oy0 >= oy1:
        raise ValueError(
            f"{path}: window {tuple(crop)} does not overlap the {width}x{height} image"
        )
    part_size = (ox1 - ox0, oy1 - oy0)
    if is_jpeg:
        part = _read_jpeg(path, inside, part_size, bands)
    else:
        part = _read_tiff(path, inside, part_size, bands, scale)
    out = part.new_zeros((part.shape[0], size, size))
    out[:, oy0:oy1, ox0:ox1] = part
    return out


def _read_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ]
    try:
        from rasterio.errors import RasterioError

        errors.append(RasterioError)
    except ImportError:  # pragma: no cover - rasterio is a dependency
        pass
    return tuple(errors)
