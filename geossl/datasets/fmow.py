"""Functional Map of the World (fMoW): metadata, context crop, image reading, datasets.

fMoW (Christie et al., "Functional Map of the World", CVPR 2018) has 1,047,691 satellite images of
62 functional categories, several acquisitions per location. Each image
``{stem}_{product}.{jpg|tif}`` has a JSON file ``{stem}_{product}.json`` beside it with the
acquisition time, the footprint, the ground sample distance and the target bounding box. This module
turns one JSON into an :class:`FMoWImageMeta` (:func:`parse_fmow_json`), computes the standard crop
around the target (:func:`fmow_context_box`), reads that crop at a fixed size
(:func:`read_fmow_image`) and provides the datasets that the training pipeline uses:

* :class:`FMoW`: one image per index row (``dataset[i]``);
* :class:`FMoWTemporalPairs`: two acquisitions of one location (``dataset[(i, j)]``, pairs come from
  :class:`geossl.samplers.TemporalPairSampler`).

Both read rows of the index built by :func:`geossl.datasets.fmow_index.build_fmow_index` (see
docs/design.md for its columns and for the sample dicts).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from geossl.datasets.encoded import EncodedImages
from geossl.datasets.errors import BadDatasetError, InvalidSampleError
from geossl.datasets.fmow_constants import FMOW_CATEGORIES

__all__ = [
    "FMOW_CATEGORIES",
    "MS_SCALE",
    "FMoW",
    "FMoWImageMeta",
    "FMoWLocations",
    "FMoWTemporalPairs",
    "InvalidSampleError",
    "fmow_context_box",
    "fmow_meta_from_dict",
    "parse_fmow_json",
    "read_fmow_image",
]

Sample = dict[str, Tensor]
#: What a reader returns for one image: the decoded crop, or the file's bytes (``encoded``).
_ImageT = TypeVar("_ImageT", Tensor, bytes)
#: The start-of-image marker every JPEG file begins with.
_JPEG_START = b"\xff\xd8"
Transform = Callable[[Sample], Sample]

#: MGRS latitude band letters, 8 degrees each from 80 S (``X`` spans 72-84 N).
_UTM_BANDS = "CDEFGHJKLMNPQRSTUVWX"

#: Default scale of fMoW-full GeoTIFFs that are not 8-bit (WorldView stores 11-bit values).
MS_SCALE = 1.0 / 2047.0

#: Columns of the index that the datasets read.
#: The target box of each row (pixels): what :class:`FMoWTemporalPairs` aligns on a shared canvas.
_BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")

_DATASET_COLUMNS = (
    "path",
    "label",
    "geo_label",
    "lat",
    "lon",
    "timestamp",
    "location_id",
    "crop_x0",
    "crop_y0",
    "crop_x1",
    "crop_y1",
)


# --------------------------------------------------------------------------------------------------
# per-image JSON
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FMoWImageMeta:
    """The fields of one fMoW image JSON that geossl uses.

    Attributes:
        timestamp: acquisition time, seconds since 1970-01-01 UTC (fractions of a second are
            dropped).
        lat: latitude in degrees of the footprint's centroid (or of the UTM zone's centre, see
            ``approx_location``).
        lon: longitude in degrees, in ``[-180, 180)``.
        approx_location: ``True`` when ``raw_location`` was missing and (lat, lon) is the centre of
            the UTM zone and latitude band (6 x 8 degrees: only good for coarse geo clusters).
        gsd: ground sample distance in metres, NaN when missing.
        cloud_cover: cloud cover in percent (0-100), NaN when missing.
        img_width: image width in pixels.
        img_height: image height in pixels.
        box: the target's bounding box ``(x, y, w, h)`` in pixels (the first entry of
            ``bounding_boxes``).
        category: the box's category, ``""`` when absent (test/seq JSONs have none).
        country_code: ISO 3166 alpha-3 code, ``""`` when missing.
    """

    timestamp: int
    lat: float
    lon: float
    approx_location: bool
    gsd: float
    cloud_cover: float
    img_width: int
    img_height: int
    box: tuple[int, int, int, int]
    category: str
    country_code: str


def _as_float(value: Any) -> float:
    """A finite float, or NaN for anything else (missing, string, bool, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    result = float(value)
    return result if math.isfinite(result) else math.nan


def _as_int(value: Any) -> int | None:
    """An integer, or ``None``; floats are accepted when finite (truncated towards zero)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _parse_timestamp(value: Any) -> int | None:
    """ISO 8601 (``2015-03-14T15:52:02Z``, fractions, offsets) to unix seconds; naive is UTC."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _wrap_lon(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


def _ring_centroid(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Area centroid (shoelace) of a closed or open ring; the vertex mean when its area vanishes.

    Coordinates are taken relative to the first vertex (better precision for small footprints), and
    longitudes are unwrapped around it so that a footprint across the antimeridian stays compact.
    """
    n = len(xs)
    if n == 0 or n != len(ys):
        return None
    if n > 1 and xs[0] == xs[-1] and ys[0] == ys[-1]:
        n -= 1  # drop the closing vertex
    x0, y0 = xs[0], ys[0]
    ux = [(x - x0 + 180.0) % 360.0 - 180.0 for x in xs[:n]]
    uy = [y - y0 for y in ys[:n]]
    area2 = cx = cy = 0.0
    for xa, ya, xb, yb in zip(ux, uy, [*ux[1:], ux[0]], [*uy[1:], uy[0]], strict=True):
        cross = xa * yb - xb * ya
        area2 += cross
        cx += (xa + xb) * cross
        cy += (ya + yb) * cross
    if abs(area2) > 1e-18:
        return x0 + cx / (3.0 * area2), y0 + cy / (3.0 * area2)
    return x0 + sum(ux) / n, y0 + sum(uy) / n


def _wkt_centroid(text: Any) -> tuple[float, float] | None:
    """``(lon, lat)`` centroid of a WKT polygon (fast string path; other geometries: shapely)."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    opening = text.find("((")
    if text[:7].upper() == "POLYGON" and text[7:opening].strip() == "":
        end = text.find(")", opening + 2)
        if end < 0:
            return None
        ring = text[opening + 2 : end]
        parts = ring.replace(",", " ").split()
        if len(parts) != 2 * (ring.count(",") + 1):
            return None
        try:
            values = [float(v) for v in parts]
        except ValueError:
            return None
        centroid = _ring_centroid(values[0::2], values[1::2])
    else:
        try:
            import shapely.wkt

            geometry = shapely.wkt.loads(text)
            if geometry.is_empty:
                return None
            point = geometry.centroid
            centroid = (float(point.x), float(point.y))
        except Exception:  # shapely raises its own error types for bad WKT
            return None
    if centroid is None:
        return None
    lon, lat = centroid
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 90.0 or abs(lon) > 540.0:
        return None
    return _wrap_lon(lon), lat


def _utm_centre(value: Any) -> tuple[float, float] | None:
    """``(lon, lat)`` centre of a UTM zone + MGRS latitude band such as ``"18S"`` (approximate)."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0 or len(text) != digits + 1:
        return None
    zone = int(text[:digits])
    band = _UTM_BANDS.find(text[digits])
    if not 1 <= zone <= 60 or band < 0:
        return None
    lat = 78.0 if text[digits] == "X" else -80.0 + 8.0 * band + 4.0
    return 6.0 * zone - 183.0, lat


def fmow_meta_from_dict(data: Any, path: str | os.PathLike[str] = "<json>") -> FMoWImageMeta:
    """Validate a decoded fMoW JSON object and extract :class:`FMoWImageMeta`.

    Only what the index cannot do without is required: the timestamp, a location (``raw_location``,
    else ``utm``), the image size and the first bounding box. ``gsd``, ``cloud_cover``,
    ``country_code`` and the box category become NaN / ``""`` when missing or malformed.

    Args:
        data: the decoded JSON value.
        path: the file it came from (for the error).

    Returns:
        The parsed metadata.

    Raises:
        InvalidSampleError: with reason ``"malformed json"`` (not an object),
            ``"invalid timestamp"``, ``"invalid location"``, ``"invalid image size"`` or
            ``"invalid box"``.
    """
    if not isinstance(data, dict):
        raise InvalidSampleError(
            path, "malformed json", f"top level is {type(data).__name__}, not an object"
        )
    timestamp = _parse_timestamp(data.get("timestamp"))
    if timestamp is None:
        raise InvalidSampleError(path, "invalid timestamp", repr(data.get("timestamp"))[:60])
    approx = False
    location = _wkt_centroid(data.get("raw_location"))
    if location is None:
        location = _utm_centre(data.get("utm"))
        approx = True
        if location is None:
            raise InvalidSampleError(path, "invalid location", "no usable raw_location or utm")
    width = _as_int(data.get("img_width"))
    height = _as_int(data.get("img_height"))
    if width is None or height is None or width <= 0 or height <= 0:
        raise InvalidSampleError(
            path,
            "invalid image size",
            f"{data.get('img_width')!r} x {data.get('img_height')!r}"[:60],
        )
    boxes = data.get("bounding_boxes")
    first = boxes[0] if isinstance(boxes, list) and boxes else None
    raw_box = first.get("box") if isinstance(first, dict) else None
    if not isinstance(raw_box, list) or len(raw_box) != 4:
        raise InvalidSampleError(path, "invalid box", "no bounding_boxes[0].box of 4 numbers")
    box_values = [_as_int(v) for v in raw_box]
    if any(v is None for v in box_values):
        raise InvalidSampleError(path, "invalid box", repr(raw_box)[:60])
    x, y, w, h = (int(v) for v in box_values if v is not None)
    category = first.get("category") if isinstance(first, dict) else None
    country = data.get("country_code")
    return FMoWImageMeta(
        timestamp=timestamp,
        lat=location[1],
        lon=location[0],
        approx_location=approx,
        gsd=_as_float(data.get("gsd")),
        cloud_cover=_as_float(data.get("cloud_cover")),
        img_width=width,
        img_height=height,
        box=(x, y, w, h),
        category=category if isinstance(category, str) else "",
        country_code=country if isinstance(country, str) else "",
    )


def parse_fmow_json(path: str | os.PathLike[str]) -> FMoWImageMeta:
    """Read and parse one fMoW image JSON (stdlib :mod:`json`).

    The location is the area centroid of the ``raw_location`` WKT polygon (lon/lat; a footprint
    across the antimeridian is unwrapped first). When ``raw_location`` is missing or malformed, the
    centre of the UTM zone and MGRS latitude band in ``utm`` (e.g. ``"18S"``: lon -75, lat 36) is
    used instead; that is accurate to a few degrees only and flagged by ``approx_location``.

    Args:
        path: the ``.json`` file.

    Returns:
        The parsed metadata.

    Raises:
        InvalidSampleError: ``"missing json"``, ``"unreadable json"``, ``"malformed json"`` or a
            reason of :func:`fmow_meta_from_dict`.
    """
    try:
        with open(path, "rb", buffering=0) as fh:  # unbuffered: one read of the whole file
            raw = fh.readall()
    except FileNotFoundError:
        raise InvalidSampleError(path, "missing json") from None
    except OSError as err:
        raise InvalidSampleError(path, "unreadable json", err.strerror or str(err)) from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidSampleError(path, "malformed json", str(err)[:80]) from None
    return fmow_meta_from_dict(data, path)


# --------------------------------------------------------------------------------------------------
# the context crop
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# image reading
# --------------------------------------------------------------------------------------------------


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
      :meth:`~PIL.Image.Image.draft` so that a crop much larger than ``size`` is decoded at 1/2, 1/4
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
            and 1/2047 (:data:`MS_SCALE`, the 11-bit range of WorldView) otherwise.
        boundless: ``crop`` may extend past the image (negative or too large coordinates); the
            outside is zero and window coordinates still map linearly onto the output (the
            shared canvas of :class:`FMoWTemporalPairs`).

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


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------


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


class _FMoWBase(Dataset[Sample]):
    """Row storage, image loading and failure handling shared by the fMoW datasets.

    Rows are kept as numpy arrays (paths as one UTF-8 byte buffer plus offsets), not as Python
    objects, so that forked DataLoader workers do not copy them page by page through reference
    counting.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_rows: pd.DataFrame,
        image_size: int = 224,
        bands: Sequence[int] | None = None,
        transforms: Transform | None = None,
        *,
        scale: float | None = None,
        max_load_failures: int = 100,
    ) -> None:
        missing = [c for c in _DATASET_COLUMNS if c not in split_rows.columns]
        if missing:
            raise ValueError(f"split_rows lacks the index columns {missing} (see docs/design.md)")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if max_load_failures < 0:
            raise ValueError(f"max_load_failures must be non-negative, got {max_load_failures}")
        if bands is not None and (len(bands) == 0 or min(bands) < 1):
            raise ValueError(f"bands must be 1-based band indexes, got {list(bands)}")
        self.root = os.fspath(root)
        self.image_size = image_size
        self.bands = list(bands) if bands is not None else None
        self.transforms = transforms
        self.scale = scale
        self.max_load_failures = max_load_failures
        #: Images that could not be read in this process (each DataLoader worker has its own).
        self.num_load_failures = 0
        self._bad_rows: set[int] = set()

        encoded = [str(p).encode("utf-8") for p in split_rows["path"].tolist()]
        lengths = np.fromiter((len(p) for p in encoded), dtype=np.int64, count=len(encoded))
        self._path_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._path_offsets[1:])
        self._path_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)

        def column(name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
            return np.ascontiguousarray(split_rows[name].to_numpy(dtype=dtype))

        self._label = column("label", np.int64)
        self._geo_label = column("geo_label", np.int64)
        self._lat = column("lat", np.float32)
        self._lon = column("lon", np.float32)
        self._time = column("timestamp", np.int64)
        self._location = column("location_id", np.int64)
        self._crop = np.stack(
            [column(c, np.int64) for c in ("crop_x0", "crop_y0", "crop_x1", "crop_y1")], axis=1
        )
        # First row of every run of equal location ids: the replacement for an unreadable image is
        # the first image of the next location (deterministic, and never the same place).
        if len(self._location):
            change = np.flatnonzero(np.diff(self._location) != 0) + 1
            self._run_starts = np.concatenate([[0], change]).astype(np.int64)
        else:
            self._run_starts = np.zeros(0, dtype=np.int64)
        self._errors = _read_errors()

    def __len__(self) -> int:
        return len(self._label)

    def path(self, row: int) -> str:
        """Absolute path of the image of ``row``."""
        start, end = self._path_offsets[row], self._path_offsets[row + 1]
        return os.path.join(self.root, self._path_bytes[start:end].tobytes().decode("utf-8"))

    def _check_row(self, row: int) -> int:
        if not -len(self) <= row < len(self):
            raise IndexError(f"index {row} is out of range for {len(self)} rows")
        return row % len(self)

    def _next_location_row(self, row: int) -> int:
        run = int(np.searchsorted(self._run_starts, row, side="right")) - 1
        return int(self._run_starts[(run + 1) % len(self._run_starts)])

    def _try_read(self, row: int, window: tuple[int, int, int, int] | None = None) -> Tensor | None:
        """The image of ``row``, or ``None`` after counting (and warning about) a failure.

        Args:
            row: the index row.
            window: a pixel window to read instead of the row's context crop; it may extend past
                the image (zero outside).
        """
        if row in self._bad_rows:
            return None
        path = self.path(row)
        crop = window if window is not None else tuple(int(v) for v in self._crop[row])
        try:
            return read_fmow_image(
                path,
                (crop[0], crop[1], crop[2], crop[3]),
                self.image_size,
                self.bands,
                scale=self.scale,
                boundless=window is not None,
            )
        except self._errors as err:
            self._record_failure(row, path, err)
            return None

    def _try_read_bytes(self, row: int) -> bytes | None:
        """The file of ``row`` undecoded, or ``None`` after counting a failure (as ``_try_read``).

        Only what the worker can see without decoding is checked: the file reads and starts with
        the JPEG start-of-image marker. A file that fails to decode on the device is counted there.
        """
        if row in self._bad_rows:
            return None
        path = self.path(row)
        try:
            with open(path, "rb") as file:
                data = file.read()
            if not data.startswith(_JPEG_START):
                raise ValueError("not a JPEG file (no start-of-image marker)")
            return data
        except self._errors as err:
            self._record_failure(row, path, err)
            return None

    def _record_failure(self, row: int, path: str, err: BaseException) -> None:
        """Count an unreadable image, warn, and give up past ``max_load_failures``."""
        self._bad_rows.add(row)
        self.num_load_failures += 1
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        warnings.warn(
            f"{path}: cannot read image ({message}); a replacement image is used",
            RuntimeWarning,
            stacklevel=4,
        )
        if self.num_load_failures > self.max_load_failures:
            raise BadDatasetError(
                self.root,
                f"{self.num_load_failures} images failed to load in one worker "
                f"(more than max_load_failures={self.max_load_failures}), "
                f"last {path}: {message}",
            ) from err

    def _read_with_replacement(
        self, row: int, read: Callable[[int], _ImageT | None]
    ) -> tuple[int, _ImageT]:
        """Read ``row`` with ``read``, else the first image of the next locations that loads."""
        current = row
        for _ in range(len(self._run_starts) + 1):
            image = read(current)
            if image is not None:
                return current, image
            current = self._next_location_row(current)
        raise BadDatasetError(self.root, "no image of this dataset could be read")

    def _meta(self, row: int) -> Sample:
        return {
            "label": torch.tensor(self._label[row], dtype=torch.int64),
            "geo_label": torch.tensor(self._geo_label[row], dtype=torch.int64),
            "lat": torch.tensor(self._lat[row], dtype=torch.float32),
            "lon": torch.tensor(self._lon[row], dtype=torch.float32),
            "location": torch.tensor(self._location[row], dtype=torch.int64),
        }


class FMoW(_FMoWBase):
    """fMoW, one image per index row: the context crop of the target, resized to ``image_size``.

    ``dataset[i]`` (``i`` is a position in ``split_rows``) returns

    * ``image``: ``uint8 [C, image_size, image_size]`` for JPEG products; ``float32`` in ``[0, 1]``
      for the GeoTIFF products of fMoW-full (see :func:`read_fmow_image`);
    * ``label``, ``geo_label``, ``location`` (the row's ``location_id``), ``time`` (unix seconds),
      ``index``: ``int64`` scalars; ``lat``, ``lon``: ``float32`` scalars.

    An image that cannot be read is replaced by the first image of the next location
    (deterministic), with a warning naming the file; more than ``max_load_failures`` failures in one
    process raise :class:`~geossl.datasets.errors.BadDatasetError`. The returned metadata is the
    replacement's.

    Args:
        root: the fMoW root folder (``path`` in the index is relative to it).
        split_rows: rows of the index (:attr:`FMoWIndex.table`, filtered), sorted by location.
        image_size: output side in pixels.
        bands: 1-based band indexes (rasterio convention), ``None`` for all bands.
        transforms: optional callable applied to the sample dict.
        scale: GeoTIFF value scale (see :func:`read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.
    """

    def __getitem__(self, index: int) -> Sample:
        """Return the sample of row ``index``."""
        if not isinstance(index, int | np.integer):
            raise TypeError(f"FMoW takes an integer row index, got {type(index).__name__}")
        row, image = self._read_with_replacement(self._check_row(int(index)), self._try_read)
        sample = {
            "image": image,
            **self._meta(row),
            "time": torch.tensor(self._time[row], dtype=torch.int64),
            "index": torch.tensor(row, dtype=torch.int64),
        }
        return self.transforms(sample) if self.transforms is not None else sample


class FMoWTemporalPairs(_FMoWBase):
    """fMoW temporal positives: two acquisitions of one location (Ayush et al., ICCV 2021).

    ``dataset[(i, j)]`` (pairs from :class:`geossl.samplers.TemporalPairSampler`) returns the keys
    of :class:`FMoW`
    with ``image``: ``[2, C, H, W]`` (view 0 = row ``i``, the anchor; view 1 = row ``j``), ``time``
    and ``index``: ``int64 [2]``; ``label``, ``geo_label``, ``lat``, ``lon`` and ``location`` are
    the anchor's.

    Each view is, by default, its own image's context crop (the GeoSSL pipeline). With
    ``shared_canvas=True`` both views are drawn on one canvas: view 0 is the anchor's context crop
    and view 1 is the window of image ``j`` that puts ``j``'s target box exactly where the
    anchor's box lies on the canvas (the anchor's margins, relative to the box, applied to ``j``'s
    box; outside ``j``'s image is zero). Canvas coordinates then line up between the two views, as
    the temporal SCRL loss needs. For fMoW this is approximate: the two target boxes are drawn by
    hand on images with their own grid, off-nadir angle and registration error, so only the box
    corners agree; the canvas is a neighbourhood of the target, not a ground grid.

    Unreadable images: if ``j`` fails, view 1 repeats the anchor; if ``i`` fails, ``j`` becomes the
    anchor; if both fail, the first image of the next location is used for both views. Each failure
    warns and counts towards ``max_load_failures`` as in :class:`FMoW`.

    Args:
        root: the fMoW root folder.
        split_rows: rows of the index, sorted by ``(location_id, timestamp, t)``; with
            ``shared_canvas`` also the target box columns ``box_x``, ``box_y``, ``box_w``,
            ``box_h``.
        image_size: output side in pixels.
        bands: 1-based band indexes, ``None`` for all bands.
        transforms: optional callable applied to the sample dict.
        scale: GeoTIFF value scale (see :func:`read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.
        shared_canvas: draw view 1 on the anchor's canvas (see above).
        encoded: JPEG products only: return the two files undecoded, ``encoded``
            (:class:`~geossl.datasets.encoded.EncodedImages` with each row's context crop) in place
            of ``image``, for :func:`~geossl.datasets.encoded.decode_encoded` on the device; batch
            them with :func:`~geossl.datasets.encoded.collate_encoded`. A file that cannot be read
            or is not a JPEG is replaced as above; one that fails to decode is the decoder's to
            handle.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_rows: pd.DataFrame,
        image_size: int = 224,
        bands: Sequence[int] | None = None,
        transforms: Transform | None = None,
        *,
        scale: float | None = None,
        max_load_failures: int = 100,
        shared_canvas: bool = False,
        encoded: bool = False,
    ) -> None:
        if encoded and shared_canvas:
            raise ValueError("FMoWTemporalPairs: encoded images cannot be drawn on a shared canvas")
        if encoded and len(split_rows):
            jpeg = split_rows["path"].astype(str).str.lower().str.endswith((".jpg", ".jpeg"))
            if not jpeg.all():
                first = split_rows["path"][~jpeg].iloc[0]
                raise ValueError(f"{first}: encoded=True reads JPEG images only")
        super().__init__(
            root,
            split_rows,
            image_size,
            bands,
            transforms,
            scale=scale,
            max_load_failures=max_load_failures,
        )
        self.shared_canvas = shared_canvas
        self.encoded = encoded
        self._box: npt.NDArray[np.float64] | None = None
        if shared_canvas:
            missing = [c for c in _BOX_COLUMNS if c not in split_rows.columns]
            if missing:
                raise ValueError(
                    f"split_rows lacks the box columns {missing} that shared_canvas needs"
                )
            self._box = np.stack(
                [split_rows[c].to_numpy(dtype=np.float64) for c in _BOX_COLUMNS], axis=1
            )

    def canvas_window(self, anchor: int, other: int) -> tuple[int, int, int, int]:
        """The window of row ``other`` that maps its target box onto the anchor's canvas.

        With the anchor's context crop ``(cx0, cy0, cx1, cy1)`` around its box ``(x, y, w, h)``,
        the margins in box units are ``l = (x - cx0) / w``, ``r = (cx1 - x - w) / w`` (and ``t``,
        ``b`` likewise with ``h``); the window of ``other``'s box ``(x', y', w', h')`` is
        ``(x' - l w', y' - t h', x' + w' + r w', y' + h' + b h')``, rounded outwards.

        Args:
            anchor: the anchor's row.
            other: the other acquisition's row.

        Returns:
            ``(x0, y0, x1, y1)`` in ``other``'s pixels, exclusive ends; may lie partly outside.

        Raises:
            RuntimeError: if the dataset was built without ``shared_canvas``.
        """
        if self._box is None:
            raise RuntimeError("canvas_window needs FMoWTemporalPairs(shared_canvas=True)")
        cx0, cy0, cx1, cy1 = (float(v) for v in self._crop[anchor])
        x, y, w, h = self._box[anchor]
        left, right = (x - cx0) / w, (cx1 - x - w) / w
        top, bottom = (y - cy0) / h, (cy1 - y - h) / h
        xo, yo, wo, ho = self._box[other]
        return (
            math.floor(xo - left * wo),
            math.floor(yo - top * ho),
            math.ceil(xo + wo + right * wo),
            math.ceil(yo + ho + bottom * ho),
        )

    def __getitem__(self, index: tuple[int, int]) -> dict[str, Any]:
        """Return the pair sample of rows ``index = (i, j)`` (``encoded`` is not a tensor)."""
        if not isinstance(index, tuple | list) or len(index) != 2:
            raise TypeError(
                "FMoWTemporalPairs takes an (i, j) pair of row indexes (use TemporalPairSampler), "
                f"got {index!r}"
            )
        i, j = self._check_row(int(index[0])), self._check_row(int(index[1]))
        sample: dict[str, Any]
        if self.encoded:
            i, j, first_bytes, second_bytes = self._read_pair(
                i, j, self._try_read_bytes, lambda anchor, other: self._try_read_bytes(other)
            )
            sample = {
                "encoded": EncodedImages(
                    [first_bytes, second_bytes],
                    [self._crop_of(i), self._crop_of(j)],
                    [self.path(i), self.path(j)],
                )
            }
        else:
            i, j, first, second = self._read_pair(i, j, self._try_read, self._read_second)
            sample = {"image": torch.stack([first, second])}
        sample.update(
            self._meta(i),
            time=torch.tensor([self._time[i], self._time[j]], dtype=torch.int64),
            index=torch.tensor([i, j], dtype=torch.int64),
        )
        return self.transforms(sample) if self.transforms is not None else sample

    def _read_pair(
        self,
        i: int,
        j: int,
        read: Callable[[int], _ImageT | None],
        read_second: Callable[[int, int], _ImageT | None],
    ) -> tuple[int, int, _ImageT, _ImageT]:
        """Both views of ``(i, j)``, replaced as the class doc says.

        Returns:
            ``(i, j, first, second)``, where ``i`` and ``j`` are the rows actually read.
        """
        anchor = read(i)
        if anchor is None:  # the anchor failed: j alone (else the next location) for both views
            replacement = read(j) if j != i else None
            if replacement is not None:
                return j, j, replacement, replacement
            i, first = self._read_with_replacement(self._next_location_row(i), read)
            return i, i, first, first
        other = read_second(i, j) if j != i else anchor
        if other is None:
            return i, i, anchor, anchor
        return i, j, anchor, other

    def _crop_of(self, row: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (int(v) for v in self._crop[row])
        return x0, y0, x1, y1

    def _read_second(self, anchor: int, other: int) -> Tensor | None:
        """View 1: row ``other`` on its own context crop, or on the anchor's canvas."""
        if not self.shared_canvas:
            return self._try_read(other)
        return self._try_read(other, self.canvas_window(anchor, other))


class FMoWLocations(_FMoWBase):
    """fMoW, one sample per location: up to ``max_views`` acquisitions stacked in time order.

    For temporal classification (the acquisitions' features are averaged before the classifier).
    ``dataset[k]`` (``k`` is the ``k``-th location of ``split_rows``) returns

    * ``image``: ``[max_views, C, image_size, image_size]`` (dtype as in :class:`FMoW`); slots past
      the location's image count are zero;
    * ``views``: ``bool [max_views]``, which slots hold an image;
    * ``label``, ``geo_label``, ``location``: ``int64`` scalars; ``lat``, ``lon``: ``float32``;
    * ``time``, ``index``: ``int64 [max_views]`` (0 / -1 in empty slots).

    A location with more than ``max_views`` images shows its first ``max_views`` by acquisition
    time, or, with ``random_views=True`` (training), a random subset of that size drawn from
    ``torch``'s generator (seeded per DataLoader worker by torch). An unreadable image leaves its
    slot empty (warned and counted as in :class:`FMoW`); a location whose images all fail is
    replaced by the next location.

    Args:
        root: the fMoW root folder.
        split_rows: rows of the index, sorted by ``(location_id, timestamp, t)``.
        image_size: output side in pixels.
        bands: 1-based band indexes, ``None`` for all bands.
        max_views: acquisitions per sample (at least 1).
        random_views: draw a random subset of a location's images instead of the first ones.
        scale: GeoTIFF value scale (see :func:`read_fmow_image`).
        max_load_failures: unreadable images tolerated per process before giving up.

    Raises:
        ValueError: if ``max_views`` < 1.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_rows: pd.DataFrame,
        image_size: int = 224,
        bands: Sequence[int] | None = None,
        max_views: int = 4,
        *,
        random_views: bool = False,
        scale: float | None = None,
        max_load_failures: int = 100,
    ) -> None:
        if max_views < 1:
            raise ValueError(f"max_views must be at least 1, got {max_views}")
        super().__init__(
            root,
            split_rows,
            image_size,
            bands,
            scale=scale,
            max_load_failures=max_load_failures,
        )
        self.max_views = max_views
        self.random_views = random_views
        self._run_ends = np.append(self._run_starts[1:], len(self._label)).astype(np.int64)

    def __len__(self) -> int:
        return len(self._run_starts)

    def _rows(self, location: int) -> npt.NDArray[np.int64]:
        """Index rows shown for the ``location``-th location (time order)."""
        start, end = int(self._run_starts[location]), int(self._run_ends[location])
        rows = np.arange(start, end, dtype=np.int64)
        if len(rows) > self.max_views:
            if self.random_views:
                pick = torch.randperm(len(rows))[: self.max_views].sort().values.numpy()
                rows = rows[pick]
            else:
                rows = rows[: self.max_views]
        return rows

    def __getitem__(self, index: int) -> Sample:
        """Return the stacked acquisitions of location ``index``."""
        if not isinstance(index, int | np.integer):
            raise TypeError(f"FMoWLocations takes an integer index, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} locations")
        location = int(index) % len(self)
        for _ in range(len(self)):
            rows = self._rows(location)
            images = [(row, self._try_read(int(row))) for row in rows]
            loaded = [(row, image) for row, image in images if image is not None]
            if loaded:
                break
            location = (location + 1) % len(self)
        else:
            raise BadDatasetError(self.root, "no image of this dataset could be read")
        first = loaded[0][1]
        stack = first.new_zeros((self.max_views, *first.shape))
        views = torch.zeros(self.max_views, dtype=torch.bool)
        time = torch.zeros(self.max_views, dtype=torch.int64)
        rows_out = torch.full((self.max_views,), -1, dtype=torch.int64)
        for slot, (row, image) in enumerate(loaded):
            stack[slot] = image
            views[slot] = True
            time[slot] = int(self._time[row])
            rows_out[slot] = int(row)
        return {
            "image": stack,
            "views": views,
            **self._meta(int(loaded[0][0])),
            "time": time,
            "index": rows_out,
        }
