"""The per-image JSON of fMoW: `FMoWImageMeta` and `parse_fmow_json`.

Each fMoW image ``{stem}_{product}.{jpg|tif}`` has a JSON file ``{stem}_{product}.json`` beside it
with the acquisition time, the footprint (WKT), the ground sample distance and the target bounding
box. [`parse_fmow_json`][geossl.datasets.fmow.metadata.parse_fmow_json] turns one into an
[`FMoWImageMeta`][geossl.datasets.fmow.metadata.FMoWImageMeta].
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geossl.datasets.errors import InvalidSampleError

__all__ = ["FMoWImageMeta", "fmow_meta_from_dict", "parse_fmow_json"]

#: MGRS latitude band letters, 8 degrees each from 80 S (``X`` spans 72-84 N).
_UTM_BANDS = "CDEFGHJKLMNPQRSTUVWX"


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
    """Validate a decoded fMoW JSON object and extract `FMoWImageMeta`.

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
    """Read and parse one fMoW image JSON (stdlib `json`).

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
            reason of [`fmow_meta_from_dict`][geossl.datasets.fmow.metadata.fmow_meta_from_dict].
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
