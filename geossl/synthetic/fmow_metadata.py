"""The per-image metadata of an fMoW sample: the fields of the real JSONs and the GeoTIFF grid.

`_product_meta` writes the JSON of one image product (GSD, sun angles from
`_solar_angles`, UTM zone, footprint WKT, calibration factors, boxes);
`_geotiff_transform` gives the north-up UTM grid of an fMoW-full GeoTIFF. Used by
[`geossl.synthetic.fmow`][geossl.synthetic.fmow] and (footprints, timestamps)
[`geossl.synthetic.fmow_sentinel`][geossl.synthetic.fmow_sentinel].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from geossl.datasets.fmow.constants import FMOW_APPROXIMATE_WAVELENGTHS, FMOW_MS_BANDS
from geossl.synthetic.fmow_layout import _Location

_MS_FACTOR = 4  # multispectral GSD / pan-sharpened GSD (WorldView-2/3)
_METRES_PER_DEG_LAT = 111_320.0
_UTM_BANDS = "CDEFGHJKLMNPQRSTUVWXX"


def _utm_zone(lat: float, lon: float) -> tuple[int, str]:
    """UTM zone number and latitude band letter (standard zones, no Norway/Svalbard exceptions)."""
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    band = _UTM_BANDS[min(max(math.floor((lat + 80.0) / 8.0), 0), len(_UTM_BANDS) - 1)]
    return zone, band


def _utm_epsg(lat: float, lon: float) -> int:
    zone, _ = _utm_zone(lat, lon)
    return (32600 if lat >= 0 else 32700) + zone


def _solar_angles(lat: float, lon: float, ts: int) -> tuple[float, float]:
    """Approximate sun elevation and azimuth (degrees) at a place and a unix time."""
    dt = datetime.fromtimestamp(ts, UTC)
    doy = dt.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2.0 * math.pi * (doy - 81) / 365.0)
    solar_hour = (dt.hour + dt.minute / 60.0 + lon / 15.0) % 24.0
    h = math.radians(15.0 * (solar_hour - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    cos_az = (math.sin(decl) - math.sin(el) * math.sin(phi)) / max(
        math.cos(el) * math.cos(phi), 1e-9
    )
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    if h > 0:
        az = 360.0 - az
    return math.degrees(el), az


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _r(x: float, nd: int = 6) -> float:
    return round(float(x), nd)


def _variants(name: str, value: float, spread: float, rng: np.random.Generator) -> dict[str, float]:
    """``{name}_dbl`` and its ``_start/_end/_min/_max`` variants, as in the real per-image JSON."""
    start = value + spread * float(rng.uniform(-1.0, 1.0))
    end = 2.0 * value - start
    return {
        f"{name}_dbl": _r(value, 10),
        f"{name}_start_dbl": _r(start, 10),
        f"{name}_end_dbl": _r(end, 10),
        f"{name}_min_dbl": _r(min(start, end, value), 10),
        f"{name}_max_dbl": _r(max(start, end, value), 10),
    }


def _footprint_wkt(lat: float, lon: float, w_m: float, h_m: float) -> str:
    """WKT polygon (lon lat) of a north-up footprint centred on (lat, lon), clockwise."""
    dlat = h_m / 2.0 / _METRES_PER_DEG_LAT
    dlon = w_m / 2.0 / (_METRES_PER_DEG_LAT * max(math.cos(math.radians(lat)), 1e-6))
    pts = [
        (lon - dlon, lat + dlat),
        (lon + dlon, lat + dlat),
        (lon + dlon, lat - dlat),
        (lon - dlon, lat - dlat),
        (lon - dlon, lat + dlat),
    ]
    return "POLYGON ((" + ", ".join(f"{x:.10f} {y:.10f}" for x, y in pts) + "))"


def _abs_cal_factors(rng: np.random.Generator) -> list[dict[str, Any]]:
    base = (0.0093, 0.0073, 0.0056, 0.0052, 0.0046, 0.0046, 0.0034, 0.0073)
    return [
        {"band": band, "value": _r(b * (1.0 + 0.05 * float(rng.uniform(-1.0, 1.0))), 10)}
        for band, b in zip(FMOW_MS_BANDS, base, strict=True)
    ]


@dataclass(frozen=True)
class _Image:
    """One acquisition: its pixels, geometry and the draws its JSONs share."""

    ts: int
    w: int
    h: int
    gsd: float
    off_nadir: float
    target: tuple[int, int, int, int]  # x, y, w, h of the target box
    sun: tuple[float, float]  # elevation, azimuth (degrees)
    cloud_cover: int
    pixels: npt.NDArray[np.uint8]  # (h, w, 3)
    ms_rgb: npt.NDArray[np.uint8]  # (ms_h, ms_w, 3)
    centre: tuple[float, float]  # lat, lon of the footprint centre


def _product_meta(
    location: _Location,
    image: _Image,
    boxes: Sequence[tuple[int, int, int, int, int]],
    product: tuple[int, int, int, str],
    shared: Mapping[str, Any],
    lrng: np.random.Generator,
) -> dict[str, Any]:
    """The JSON of one image product (``product``: width, height, GSD factor, file name)."""
    pw, ph, scale, fname = product
    w, h, gsd, off_nadir = image.w, image.h, image.gsd, image.off_nadir
    p_gsd = gsd * (w / pw if scale > 1 else 1.0)
    pan_res, target_az = shared["pan_res"], shared["target_az"]
    p_boxes = [
        {
            "box": [
                x * pw // w,
                y * ph // h,
                max(1, round(bw * pw / w)),
                max(1, round(bh * ph / h)),
            ],
            "category": location.category,
            "ID": id_,
        }
        for x, y, bw, bh, id_ in boxes
    ]
    return {
        "gsd": _r(p_gsd, 10),
        "img_width": pw,
        "img_height": ph,
        "country_code": location.region.country_code,
        "cloud_cover": image.cloud_cover,
        "timestamp": _iso(image.ts),
        "scan_direction": shared["scan"],
        "approximate_wavelengths": list(FMOW_APPROXIMATE_WAVELENGTHS),
        **_variants("pan_resolution", pan_res, 0.01, lrng),
        **_variants("multi_resolution", pan_res * _MS_FACTOR, 0.04, lrng),
        **_variants("target_azimuth", target_az, 1.5, lrng),
        **_variants("off_nadir_angle", off_nadir, 0.5, lrng),
        "sun_azimuth_dbl": _r(image.sun[1], 10),
        "sun_elevation_dbl": _r(image.sun[0], 10),
        "utm": "{}{}".format(*_utm_zone(location.lat, location.lon)),
        "spatial_reference": "WGS84",
        "abs_cal_factors": shared["cal"],
        "mean_pixel_height": _r(p_gsd * (1.0 + 0.02 * off_nadir / 30.0), 10),
        "mean_pixel_width": _r(p_gsd * (1.0 + 0.01 * off_nadir / 30.0), 10),
        "img_filename": fname,
        "raw_location": _footprint_wkt(*image.centre, w * gsd, h * gsd),
        "bounding_boxes": p_boxes,
    }


@functools.cache
def _utm_transformer(epsg: int) -> Any:
    """The pyproj transformer from WGS84 lon/lat to the UTM zone ``epsg``."""
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


def _geotiff_transform(location: _Location, image: _Image, pw: int, ph: int) -> Any:
    """The UTM transform of a ``pw x ph`` product of ``image`` (north-up, centred)."""
    from affine import Affine

    c_lat, c_lon = image.centre
    east, north = _utm_transformer(_utm_epsg(location.lat, location.lon)).transform(c_lon, c_lat)
    w, h, gsd = image.w, image.h, image.gsd
    return Affine(
        gsd * w / pw, 0.0, east - w * gsd / 2.0, 0.0, -gsd * h / ph, north + h * gsd / 2.0
    )
