"""Seeded generator of a small fMoW sample in the real on-disk layout.

The sample mirrors the public fMoW buckets (``fmow-rgb`` and ``fmow-full``) file name by file name,
so that the index, datasets and downloader can be tested without the 200 GB (rgb) / 3.5 TB (full)
real data:

* ``train``/``val``: ``{split}/{category}/{category}_{loc}/{category}_{loc}_{t}_{product}.{ext}``;
* ``test``/``seq``: ``{split}/{id:07d}/{id:07d}_{t}_{product}.{ext}`` (box JSONs without category),
  the ground truth JSONs in
  ``{split}_gt/{category}/{category}_{loc}/{category}_{loc}_{t}_{product}.json`` and
  ``{split}_gt_mapping.json`` (a list of ``{"input": "{split}_gt/{category}/{category}_{loc}",
  "output": "{split}/{id:07d}"}``);
* ``manifest.json.bz2``: a bz2-compressed JSON list of every file's path relative to the root.

Products: fMoW-rgb (``full=False``) has ``_rgb.jpg`` (pan-sharpened RGB) and ``_msrgb.jpg``
(RGB of the multispectral image, 4x coarser); fMoW-full (``full=True``) has ``_rgb.tif`` (3 bands,
uint8) and ``_ms.tif`` (8 bands, uint16 with 11-bit values), north-up GeoTIFFs in the location's UTM
zone. Every image has a ``.json`` beside it with all the fields of the real files.

The pixels are procedural scenes, not noise: a land-cover background texture plus a
category-specific structure (building grids, tank circles, field stripes, water bodies, runways,
ovals, ...) with a per-category palette, drawn inside the target bounding box. Acquisitions of one
location share the scene and differ by season and sun illumination, sensor gain, a few pixels of
misregistration, clouds matching ``cloud_cover`` and, at some locations, construction (the structure
appears after a change date). The file index ``t`` is not in time order.

Same seed, same arguments => byte-identical JSON files and identical pixels.
"""

from __future__ import annotations

import bz2
import colorsys
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from geossl.datasets.fmow.constants import (
    FMOW_ANONYMOUS_SPLITS,
    FMOW_APPROXIMATE_WAVELENGTHS,
    FMOW_CATEGORIES,
    FMOW_MS_BANDS,
    FMOW_SPLITS,
)
from geossl.utils.io import atomic_output, atomic_write_bytes, prepare_sample_folder

__all__ = ["DEFAULT_SPLIT_FRACTIONS", "FMoWSampleSummary", "generate_fmow_sample"]

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

#: Default share of locations per split (normalised; every split with a positive share gets >= 1
#: location when there are enough locations).
DEFAULT_SPLIT_FRACTIONS: Mapping[str, float] = {
    "train": 0.7,
    "val": 0.15,
    "test": 0.075,
    "seq": 0.075,
}

_JPEG_QUALITY = 90
_MS_FACTOR = 4  # multispectral GSD / pan-sharpened GSD (WorldView-2/3)
_METRES_PER_DEG_LAT = 111_320.0
_UTM_BANDS = "CDEFGHJKLMNPQRSTUVWXX"
_EPOCH_2002 = int(datetime(2002, 1, 1, tzinfo=UTC).timestamp())
_DAYS_2002_2017 = (datetime(2018, 1, 1, tzinfo=UTC) - datetime(2002, 1, 1, tzinfo=UTC)).days


@dataclass(frozen=True)
class _Region:
    name: str
    lat: float
    lon: float
    lat_spread: float
    lon_spread: float
    country_code: str
    # land-cover palette (RGB 0-255): vegetation and bare / built-up ground
    vegetation: tuple[int, int, int]
    ground: tuple[int, int, int]


# Regions spread over the globe: both hemispheres, every inhabited continent, and Fiji across the
# antimeridian.
_REGIONS: tuple[_Region, ...] = (
    _Region("us_east", 39.0, -77.0, 2.5, 3.5, "USA", (78, 108, 60), (150, 140, 125)),
    _Region("us_west", 35.5, -118.5, 2.0, 3.0, "USA", (120, 125, 80), (190, 170, 140)),
    _Region("brazil", -15.5, -48.0, 5.0, 5.0, "BRA", (60, 110, 50), (170, 120, 90)),
    _Region("western_europe", 48.5, 4.0, 3.0, 6.0, "FRA", (85, 115, 65), (155, 150, 140)),
    _Region("west_africa", 8.0, 4.5, 3.0, 3.5, "NGA", (95, 115, 55), (185, 145, 105)),
    _Region("southern_africa", -27.0, 27.5, 2.5, 3.0, "ZAF", (130, 130, 80), (195, 170, 130)),
    _Region("south_asia", 22.0, 78.0, 5.0, 5.0, "IND", (100, 120, 60), (180, 160, 125)),
    _Region("east_asia", 32.0, 115.0, 4.0, 5.0, "CHN", (80, 110, 70), (160, 155, 145)),
    _Region("australia", -33.5, 149.0, 2.0, 3.0, "AUS", (125, 125, 75), (200, 165, 120)),
    _Region("fiji", -17.6, 179.4, 0.8, 1.4, "FJI", (55, 105, 50), (165, 150, 120)),
    _Region("new_zealand", -40.5, 174.8, 2.5, 2.0, "NZL", (70, 115, 60), (150, 145, 130)),
)

# Families of procedural structures; each category maps to one, with its own palette and parameters.
_FAMILY_OF: dict[str, str] = {
    "airport": "strip",
    "airport_hangar": "single",
    "airport_terminal": "single",
    "amusement_park": "park",
    "aquaculture": "ponds",
    "archaeological_site": "scatter",
    "barn": "single",
    "border_checkpoint": "strip",
    "burial_site": "scatter",
    "car_dealership": "grid",
    "construction_site": "scatter",
    "crop_field": "stripes",
    "dam": "water",
    "debris_or_rubble": "scatter",
    "educational_institution": "grid",
    "electric_substation": "grid",
    "factory_or_powerplant": "single",
    "fire_station": "single",
    "flooded_road": "water",
    "fountain": "circles",
    "gas_station": "single",
    "golf_course": "park",
    "ground_transportation_station": "strip",
    "helipad": "circles",
    "hospital": "single",
    "impoverished_settlement": "scatter",
    "interchange": "strip",
    "lake_or_pond": "water",
    "lighthouse": "circles",
    "military_facility": "grid",
    "multi-unit_residential": "grid",
    "nuclear_powerplant": "circles",
    "office_building": "single",
    "oil_or_gas_facility": "circles",
    "park": "park",
    "parking_lot_or_garage": "stripes",
    "place_of_worship": "single",
    "police_station": "single",
    "port": "water",
    "prison": "grid",
    "race_track": "oval",
    "railway_bridge": "strip",
    "recreational_facility": "oval",
    "road_bridge": "strip",
    "runway": "strip",
    "shipyard": "water",
    "shopping_mall": "single",
    "single-unit_residential": "grid",
    "smokestack": "circles",
    "solar_farm": "stripes",
    "space_facility": "single",
    "stadium": "oval",
    "storage_tank": "circles",
    "surface_mine": "scatter",
    "swimming_pool": "ponds",
    "toll_booth": "strip",
    "tower": "circles",
    "tunnel_opening": "strip",
    "waste_disposal": "scatter",
    "water_treatment_facility": "circles",
    "wind_farm": "stripes",
    "zoo": "park",
}

_WATER = np.array([38.0, 62.0, 88.0], dtype=np.float32)
_SOIL = np.array([150.0, 122.0, 92.0], dtype=np.float32)
_CLOUD = np.array([238.0, 238.0, 242.0], dtype=np.float32)


@dataclass(frozen=True)
class FMoWSampleSummary:
    """What :func:`generate_fmow_sample` wrote.

    Attributes:
        root: the sample's root folder.
        num_locations: number of locations (folders of one place) over all splits.
        num_images: number of acquisitions (one per file index ``t``; each has 2 image files and 2
            JSONs).
        images_per_split: acquisitions per split (every split of :data:`FMOW_SPLITS`, 0 when
            unused).
        locations_per_split: locations per split.
        categories: the categories that have at least one location, in :data:`FMOW_CATEGORIES`
            order.
        full: ``True`` for the fMoW-full layout (GeoTIFF), ``False`` for fMoW-rgb (JPEG).
        num_files: number of files written (the entries of ``manifest.json.bz2``).
    """

    root: Path
    num_locations: int
    num_images: int
    images_per_split: Mapping[str, int] = field(default_factory=dict)
    locations_per_split: Mapping[str, int] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    full: bool = False
    num_files: int = 0


@dataclass(frozen=True)
class _CategoryStyle:
    family: str
    primary: FloatArray
    secondary: FloatArray
    count: int  # cells / stripes / blobs across the box
    duty: float  # filled fraction of a cell or stripe


@dataclass
class _Location:
    index: int
    split: str
    category: str
    loc: int  # per category per split number (the ``{loc}`` of ``{category}_{loc}``)
    anon_id: int  # 7-digit id for test/seq, -1 otherwise
    region: _Region
    lat: float
    lon: float
    seed: int


def _category_style(category: str) -> _CategoryStyle:
    """Palette and parameters of a category; independent of the sample seed."""
    idx = FMOW_CATEGORIES.index(category)
    rng = np.random.default_rng(1_000_003 + idx)
    hue = (idx * 0.618_033_988_75) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.45 + 0.35 * rng.random(), 0.55 + 0.4 * rng.random())
    primary = np.array([r, g, b], dtype=np.float32) * 255.0
    r2, g2, b2 = colorsys.hsv_to_rgb((hue + 0.08) % 1.0, 0.3, 0.35 + 0.3 * rng.random())
    secondary = np.array([r2, g2, b2], dtype=np.float32) * 255.0
    return _CategoryStyle(
        family=_FAMILY_OF[category],
        primary=primary,
        secondary=secondary,
        count=int(rng.integers(2, 7)),
        duty=float(0.45 + 0.35 * rng.random()),
    )


# -------------------------------------------------------------------------------------------------
# structure generators: (u, v) are box-normalised object coordinates (|u|, |v| <= 1 inside the
# target box), they return (mask in [0, 1], which colour: True = primary, False = secondary)
# -------------------------------------------------------------------------------------------------


def _cells(u: FloatArray, v: FloatArray, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    fu = (u + 1.0) * (n / 2.0)
    fv = (v + 1.0) * (n / 2.0)
    parity = (np.floor(fu) + np.floor(fv)) % 2.0
    return fu - np.floor(fu), fv - np.floor(fv), parity.astype(np.float32)


def _inside(u: FloatArray, v: FloatArray, extent: float = 1.0) -> BoolArray:
    return (np.abs(u) < extent) & (np.abs(v) < extent)


def _gen_grid(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    fu, fv, parity = _cells(u, v, s.count + 1)
    lo, hi = (1.0 - s.duty) / 2.0, (1.0 + s.duty) / 2.0
    m = _inside(u, v) & (fu > lo) & (fu < hi) & (fv > lo) & (fv < hi)
    return m.astype(np.float32), parity < 0.5


def _gen_circles(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    fu, fv, _ = _cells(u, v, s.count)
    d2 = (fu - 0.5) ** 2 + (fv - 0.5) ** 2
    r = 0.25 + 0.2 * s.duty
    m = _inside(u, v) & (d2 < r * r)
    rim = d2 > (0.7 * r) ** 2
    return m.astype(np.float32), ~rim


def _gen_stripes(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    k = 3.0 * s.count
    fu = (u + 1.0) * k
    frac = fu - np.floor(fu)
    m = _inside(u, v) & (frac < s.duty)
    return m.astype(np.float32), (np.floor(fu) % 2.0) < 1.0


def _gen_water(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    phi = np.arctan2(v, u)
    r = 0.8 + 0.15 * np.sin(s.count * phi + 1.3)
    body = (u * u + v * v) < r * r
    shore = (u * u + v * v) < (r + 0.12) ** 2
    m = shore.astype(np.float32)
    return m, ~body  # primary = shore / structure ring, secondary slot replaced by water below


def _gen_ponds(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    fu, fv, _ = _cells(u, v, s.count)
    lo, hi = 0.12, 0.88
    pond = (fu > lo) & (fu < hi) & (fv > lo) & (fv < hi)
    return _inside(u, v).astype(np.float32), ~pond


def _gen_strip(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    half = 0.08 + 0.12 * s.duty
    strip = (np.abs(v) < half) & (np.abs(u) < 1.0)
    cross = (np.abs(u) < half) & (np.abs(v) < 1.0) if s.count % 2 == 0 else np.zeros_like(strip)
    fu = (u + 1.0) * 6.0
    marks = (np.abs(v) < half * 0.15) & ((fu - np.floor(fu)) < 0.5)
    m = strip | cross
    return m.astype(np.float32), ~marks


def _gen_oval(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    d2 = (u / 0.95) ** 2 + (v / 0.7) ** 2
    ring = (d2 < 1.0) & (d2 > 0.55 + 0.1 * s.duty)
    inner = d2 <= 0.55 + 0.1 * s.duty
    return (ring | inner).astype(np.float32), ring


def _gen_single(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    w = 0.5 + 0.4 * s.duty
    body = (np.abs(u) < w) & (np.abs(v) < 0.75)
    court = (np.abs(u) < w * 0.35) & (np.abs(v) < 0.25) if s.count > 3 else np.zeros_like(body)
    return body.astype(np.float32), ~court


def _hash01(a: FloatArray, b: FloatArray) -> FloatArray:
    x = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return (x - np.floor(x)).astype(np.float32)


def _gen_scatter(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    n = 3 * s.count
    fu = (u + 1.0) * (n / 2.0)
    fv = (v + 1.0) * (n / 2.0)
    cu, cv = np.floor(fu), np.floor(fv)
    h = _hash01(cu, cv)
    du = fu - cu - 0.5
    dv = fv - cv - 0.5
    blob = (du * du + dv * dv) < (0.18 + 0.2 * h) ** 2
    m = _inside(u, v) & blob & (h > 1.0 - s.duty)
    return m.astype(np.float32), h > 0.8


def _gen_park(u: FloatArray, v: FloatArray, s: _CategoryStyle) -> tuple[FloatArray, BoolArray]:
    phi = np.arctan2(v, u)
    r = 0.85 + 0.1 * np.sin(3.0 * phi + s.count)
    area = (u * u + v * v) < r * r
    path = np.abs(np.sin((u + 0.4 * v) * (2.0 + s.count))) < 0.12
    return area.astype(np.float32), ~path


_GENERATORS: dict[
    str, Callable[[FloatArray, FloatArray, _CategoryStyle], tuple[FloatArray, BoolArray]]
] = {
    "grid": _gen_grid,
    "circles": _gen_circles,
    "stripes": _gen_stripes,
    "water": _gen_water,
    "ponds": _gen_ponds,
    "strip": _gen_strip,
    "oval": _gen_oval,
    "single": _gen_single,
    "scatter": _gen_scatter,
    "park": _gen_park,
}


# -------------------------------------------------------------------------------------------------
# geometry helpers
# -------------------------------------------------------------------------------------------------


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


# -------------------------------------------------------------------------------------------------
# file writing
# -------------------------------------------------------------------------------------------------


def _jpeg_bytes(img: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=_JPEG_QUALITY)
    return buf.getvalue()


def _write_geotiff(path: Path, bands: npt.NDArray[Any], epsg: int, transform: Any) -> None:
    """Write a north-up GeoTIFF (bands first) atomically."""
    import rasterio

    with (
        atomic_output(path) as tmp,
        rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=bands.shape[2],
            height=bands.shape[1],
            count=bands.shape[0],
            dtype=bands.dtype.name,
            crs=f"EPSG:{epsg}",
            transform=transform,
        ) as dst,
    ):
        dst.write(bands)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


# -------------------------------------------------------------------------------------------------
# argument validation
# -------------------------------------------------------------------------------------------------


def _check_range(name: str, value: tuple[int, int], minimum: int) -> tuple[int, int]:
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in value)
    ):
        raise ValueError(f"{name} must be a (min, max) pair of integers, got {value!r}")
    lo, hi = int(value[0]), int(value[1])
    if lo < minimum or hi < lo:
        raise ValueError(f"{name} must satisfy {minimum} <= min <= max, got {value!r}")
    return lo, hi


def _split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` locations; every positive split gets >= 1 when n allows."""
    total = sum(fractions.values())
    quotas = {s: n * fractions.get(s, 0.0) / total for s in FMOW_SPLITS}
    counts = {s: math.floor(q) for s, q in quotas.items()}
    order = sorted(FMOW_SPLITS, key=lambda s: (-(quotas[s] - counts[s]), FMOW_SPLITS.index(s)))
    for s in order[: n - sum(counts.values())]:
        counts[s] += 1
    positive = [s for s in FMOW_SPLITS if fractions.get(s, 0.0) > 0]
    for s in positive:
        if counts[s] == 0:
            donor = max(positive, key=lambda d: (counts[d], -FMOW_SPLITS.index(d)))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[s] += 1
    return counts


def _prepare_output(root: Path, overwrite: bool) -> None:
    owned = [
        *FMOW_SPLITS,
        *(f"{s}_gt" for s in FMOW_ANONYMOUS_SPLITS),
        "manifest.json.bz2",
        *(f"{s}_gt_mapping.json" for s in FMOW_ANONYMOUS_SPLITS),
    ]
    prepare_sample_folder(root, overwrite, owned)


def check_plan_arguments(
    locations: int,
    split_fractions: Mapping[str, float],
    valid_splits: Sequence[str],
    categories: Sequence[str] | None,
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Validate the location plan of an fMoW-style sample generator.

    Args:
        locations: number of locations (a positive integer).
        split_fractions: share of locations per split.
        valid_splits: the splits the layout has.
        categories: the categories to cycle through, None for all 62.

    Returns:
        ``(fractions, categories)``.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if isinstance(locations, bool) or not isinstance(locations, int | np.integer) or locations < 1:
        raise ValueError(f"locations must be a positive integer, got {locations!r}")
    fractions = dict(split_fractions)
    unknown = sorted(set(fractions) - set(valid_splits))
    if unknown:
        raise ValueError(
            f"split_fractions has unknown splits {unknown}; valid: {list(valid_splits)}"
        )
    if (
        any(not math.isfinite(f) or f < 0 for f in fractions.values())
        or sum(fractions.values()) <= 0
    ):
        raise ValueError(f"split_fractions must be finite, >= 0 and sum to > 0, got {fractions}")
    cats: tuple[str, ...] = FMOW_CATEGORIES if categories is None else tuple(categories)
    if isinstance(categories, str) or not cats:
        raise ValueError(
            f"categories must be a non-empty sequence of fMoW categories, got {categories!r}"
        )
    bad = sorted({c for c in cats if c not in FMOW_CATEGORIES})
    if bad:
        raise ValueError(f"unknown fMoW categories {bad}; see FMOW_CATEGORIES")
    return fractions, cats


# -------------------------------------------------------------------------------------------------
# scene rendering
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """Per-location scene parameters shared by every acquisition."""

    style: _CategoryStyle
    region: _Region
    angle: float  # structure orientation (radians)
    obj_w_m: float  # object size in metres
    obj_h_m: float
    tex_freq: FloatArray  # (3, 2) background wave vectors (radians per metre)
    tex_phase: FloatArray  # (3,)
    change_ts: int | None  # construction: the structure exists only from this time on


def _waves(
    x: FloatArray, y: FloatArray, k: npt.NDArray[Any], phase: npt.NDArray[Any]
) -> FloatArray:
    """Sum of plane waves ``sum_i a_i sin(k_i0 x + k_i1 y + p_i)`` on the grid ``y (h,) x (w,)``.

    Separable: ``sin(a + b) = sin a cos b + cos a sin b`` needs sines of the two axes only, then
    outer products, which is several times cheaper than a sine per pixel.
    """
    amplitude = (1.0, 1.0, 0.5)
    out = np.zeros((y.shape[0], x.shape[0]), dtype=np.float32)
    for i in range(k.shape[0]):
        ax = (x * np.float32(k[i, 0])).astype(np.float32)
        by = (y * np.float32(k[i, 1]) + np.float32(phase[i])).astype(np.float32)
        a = np.float32(amplitude[i % 3])
        out += np.outer(np.cos(by) * a, np.sin(ax))
        out += np.outer(np.sin(by) * a, np.cos(ax))
    return out


def _render(
    h: int,
    w: int,
    box: tuple[int, int, int, int],
    gsd: float,
    scene: _Scene,
    *,
    shift: tuple[float, float],
    brightness: float,
    greenness: float,
    gain: FloatArray,
    cloud_cover: int,
    built: bool,
    rng: np.random.Generator,
    noise_tile: npt.NDArray[np.int8],
) -> npt.NDArray[np.uint8]:
    """Render one acquisition as an ``(h, w, 3)`` uint8 RGB array.

    The background is evaluated on the whole image, the structure only on the window that can hold
    it (the rotated object box), which keeps the cost at a few ns per pixel.
    """
    bx, by, bw, bh = box
    cx = bx + bw / 2.0 + shift[0]
    cy = by + bh / 2.0 + shift[1]
    xs = (np.arange(w, dtype=np.float32) + np.float32(0.5 - cx)) * np.float32(gsd)  # m east
    ys = (np.arange(h, dtype=np.float32) + np.float32(0.5 - cy)) * np.float32(gsd)  # m south

    # background land cover: vegetation / ground mixed by smooth waves in world coordinates
    tex = _waves(xs, ys, scene.tex_freq, scene.tex_phase)
    mix = np.clip(tex * np.float32(0.3) + np.float32(0.5), 0.0, 1.0)[..., None]  # (h, w, 1)
    ground = np.asarray(scene.region.ground, dtype=np.float32)
    veg = np.asarray(scene.region.vegetation, dtype=np.float32)
    # season: dry vegetation drifts towards the ground colour
    veg = (greenness * veg + (1.0 - greenness) * (0.6 * ground + 0.4 * veg)).astype(np.float32)
    img: FloatArray = mix * (veg - ground) + ground  # (h, w, 3)

    # structure in box-normalised coordinates, rotated by the location's angle, drawn in the window
    # of the image that the rotated object (|u|, |v| <= 1.1) can cover
    ca, sa = math.cos(scene.angle), math.sin(scene.angle)
    hw, hh = scene.obj_w_m / 2.0, scene.obj_h_m / 2.0
    rx = 1.1 * (abs(ca) * hw + abs(sa) * hh) / gsd  # half extent in pixels
    ry = 1.1 * (abs(sa) * hw + abs(ca) * hh) / gsd
    x0, x1 = max(0, int(cx - rx) - 1), min(w, int(cx + rx) + 2)
    y0, y1 = max(0, int(cy - ry) - 1), min(h, int(cy + ry) + 2)
    if x1 > x0 and y1 > y0:
        wx, wy = xs[None, x0:x1], ys[y0:y1, None]
        u: FloatArray = (wx * np.float32(ca / hw) + wy * np.float32(sa / hw)).astype(np.float32)
        v: FloatArray = (wy * np.float32(ca / hh) - wx * np.float32(sa / hh)).astype(np.float32)
        style = scene.style
        if built:
            mask, which = _GENERATORS[style.family](u, v, style)
            second = _WATER if style.family in ("water", "ponds") else style.secondary
            colour = np.where(which[..., None], style.primary, second)
        else:  # under construction: a cleared plot of bare soil with a darker outline
            inside = _inside(u, v, 0.95)
            mask = inside.astype(np.float32)
            edge = inside & ~_inside(u, v, 0.85)
            colour = np.where(edge[..., None], _SOIL * 0.7, _SOIL)
        win = img[y0:y1, x0:x1]
        win += mask[..., None] * (colour - win)

    # illumination and per-acquisition sensor gain
    img *= (brightness * gain).astype(np.float32)

    # clouds covering cloud_cover percent of the image (threshold from a subsampled quantile)
    if cloud_cover > 0:
        scale = np.float32(1.0 / max(h, w))
        k = rng.uniform(3.0, 9.0, size=(3, 2)) * rng.choice([-1.0, 1.0], size=(3, 2))
        ph = rng.uniform(0.0, 2.0 * math.pi, size=3)
        field = _waves(
            np.arange(w, dtype=np.float32) * scale, np.arange(h, dtype=np.float32) * scale, k, ph
        )
        sub = field[::2, ::2].ravel()
        if cloud_cover >= 100:
            thr = -np.inf
        else:
            kth = min(sub.size - 1, max(0, round(sub.size * (1.0 - cloud_cover / 100.0))))
            thr = float(np.partition(sub, kth)[kth])
        alpha = np.where(field >= thr, np.clip((field - thr) * 6.0 + 0.35, 0.35, 0.92), 0.0)
        alpha = alpha.astype(np.float32)[..., None]
        img += alpha * (_CLOUD - img)

    # sensor noise: a window of a seeded noise tile at a random offset
    oy = int(rng.integers(0, noise_tile.shape[0] - h + 1))
    ox = int(rng.integers(0, noise_tile.shape[1] - w + 1))
    img += noise_tile[oy : oy + h, ox : ox + w]
    np.clip(img, 0.0, 255.0, out=img)
    out: npt.NDArray[np.uint8] = img.astype(np.uint8)
    return out


def _downsample(img: npt.NDArray[np.uint8], w: int, h: int) -> npt.NDArray[np.uint8]:
    """Box-filter resize (the multispectral image is 4x coarser than the pan-sharpened one)."""
    out: npt.NDArray[np.uint8] = np.asarray(
        Image.fromarray(img, mode="RGB").resize((w, h), Image.Resampling.BOX)
    )
    return out


def _ms_bands(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """Synthesise 8 WorldView bands (uint16, 11-bit) from an RGB array ``(h, w, 3)``."""
    r, g, b = (rgb[..., i].astype(np.float32) * 8.0 for i in range(3))
    veg = np.clip(g - 0.5 * (r + b), 0.0, None)
    bands = np.stack(
        [
            0.9 * b + 40.0,  # coastal
            b,  # blue
            g,  # green
            0.5 * (r + g),  # yellow
            r,  # red
            0.6 * r + 0.4 * g + 1.5 * veg,  # red edge
            0.4 * r + 0.3 * g + 4.0 * veg + 150.0,  # nir1
            0.35 * r + 0.3 * g + 3.5 * veg + 120.0,  # nir2
        ]
    )
    out: npt.NDArray[np.uint16] = np.clip(bands, 0.0, 2047.0).astype(np.uint16)
    return out


# -------------------------------------------------------------------------------------------------
# metadata
# -------------------------------------------------------------------------------------------------


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


# -------------------------------------------------------------------------------------------------
# the generator
# -------------------------------------------------------------------------------------------------


def _plan_locations(
    locations: int,
    rng: np.random.Generator,
    fractions: Mapping[str, float],
    categories: Sequence[str],
) -> list[_Location]:
    counts = _split_counts(locations, fractions)
    splits = np.array([s for s in FMOW_SPLITS for _ in range(counts[s])])
    splits = splits[rng.permutation(locations)]
    regions = (np.arange(locations) % len(_REGIONS))[rng.permutation(locations)]
    per_cat_split: dict[tuple[str, str], int] = {}
    anon_ids = {s: rng.permutation(counts[s]).tolist() for s in FMOW_ANONYMOUS_SPLITS}
    anon_next = dict.fromkeys(FMOW_ANONYMOUS_SPLITS, 0)
    out: list[_Location] = []
    for i in range(locations):
        split = str(splits[i])
        category = categories[i % len(categories)]
        loc = per_cat_split.get((split, category), 0)
        per_cat_split[(split, category)] = loc + 1
        anon_id = -1
        if split in anon_ids:
            anon_id = int(anon_ids[split][anon_next[split]])
            anon_next[split] += 1
        region = _REGIONS[int(regions[i])]
        lat = region.lat + region.lat_spread * float(rng.uniform(-1.0, 1.0))
        lon = region.lon + region.lon_spread * float(rng.uniform(-1.0, 1.0))
        lon = (lon + 180.0) % 360.0 - 180.0
        # keep a ~1 km footprint from straddling the antimeridian
        lon = max(-179.98, min(179.98, lon))
        out.append(
            _Location(
                index=i,
                split=split,
                category=category,
                loc=loc,
                anon_id=anon_id,
                region=region,
                lat=lat,
                lon=lon,
                seed=int(rng.integers(0, 2**63 - 1)),
            )
        )
    return out


def generate_fmow_sample(
    output: str | Path,
    locations: int = 48,
    seed: int = 0,
    *,
    images_per_location: tuple[int, int] = (2, 5),
    image_size: tuple[int, int] = (160, 288),
    split_fractions: dict[str, float] | None = None,
    full: bool = False,
    categories: Sequence[str] | None = None,
    overwrite: bool = False,
) -> FMoWSampleSummary:
    """Write a seeded fMoW sample in the real fMoW-rgb or fMoW-full layout.

    Location ``i`` gets category ``categories[i % len(categories)]`` (so labels are spread), a
    region of the globe (11 regions in both hemispheres, Fiji across the antimeridian) with a
    jittered lat/lon, and a split drawn by largest remainder from ``split_fractions`` (every split
    with a positive share gets at least one location when there are enough locations). Each
    acquisition of a location has a distinct timestamp in 2002-2017; the file index ``t`` is a
    random permutation of the time order (never the time order itself when a location has 2+
    images). Images are procedural scenes (see the module docstring).

    Args:
        output: the sample's root folder (created).
        locations: number of locations over all splits (>= 1).
        seed: the random seed; the same seed and arguments give byte-identical JSON and identical
            pixels.
        images_per_location: inclusive ``(min, max)`` range of acquisitions per location, drawn per
            location.
        image_size: inclusive ``(min, max)`` range of the width and of the height of the
            pan-sharpened image in pixels (>= 16), each drawn per image; the multispectral image is
            4x coarser.
        split_fractions: share of locations per split among ``train``, ``val``, ``test``, ``seq``;
            normalised. Default :data:`DEFAULT_SPLIT_FRACTIONS`.
        full: ``False``: fMoW-rgb (``_rgb.jpg``/``_rgb.json`` + ``_msrgb.jpg``/``_msrgb.json``);
            ``True``: fMoW-full (``_rgb.tif`` 3-band uint8 + ``_ms.tif`` 8-band uint16 11-bit, UTM
            GeoTIFFs, + ``.json``).
        categories: the categories to cycle through (each one of :data:`FMOW_CATEGORIES`); default
            all 62.
        overwrite: when ``output`` is a non-empty folder, replace the sample's own entries (split
            folders, ``*_gt`` folders, mapping JSONs, manifest) instead of raising; other files
            there are left alone.

    Returns:
        A :class:`FMoWSampleSummary` of what was written.

    Raises:
        ValueError: when an argument is out of range or names an unknown split or category.
        FileExistsError: when ``output`` is a file, or a non-empty folder and ``overwrite`` is
            ``False``.
    """
    fractions, cats = check_plan_arguments(
        locations,
        DEFAULT_SPLIT_FRACTIONS if split_fractions is None else split_fractions,
        FMOW_SPLITS,
        categories,
    )
    n_lo, n_hi = _check_range("images_per_location", images_per_location, 1)
    s_lo, s_hi = _check_range("image_size", image_size, 16)

    root = Path(output)
    _prepare_output(root, overwrite)

    rng = np.random.default_rng(seed)
    plan = _plan_locations(int(locations), rng, fractions, cats)
    styles = {c: _category_style(c) for c in set(cats)}
    noise_tile = rng.integers(-6, 7, size=(s_hi + 64, s_hi + 64, 3), dtype=np.int8)

    written: list[str] = []
    images_per_split = dict.fromkeys(FMOW_SPLITS, 0)
    locations_per_split = dict.fromkeys(FMOW_SPLITS, 0)
    mappings: dict[str, list[dict[str, str]]] = {s: [] for s in FMOW_ANONYMOUS_SPLITS}
    made_dirs: set[Path] = set()
    box_id = 0
    transformers: dict[int, Any] = {}
    img_products = ("rgb", "ms") if full else ("rgb", "msrgb")
    img_ext = "tif" if full else "jpg"

    def write(rel: str, data: bytes) -> None:
        path = root / rel
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        atomic_write_bytes(path, data)
        written.append(rel)

    for L in plan:
        lrng = np.random.default_rng(L.seed)
        locations_per_split[L.split] += 1
        n_img = int(lrng.integers(n_lo, n_hi + 1))
        mean_side = (s_lo + s_hi) / 2.0
        base_gsd = float(lrng.uniform(0.35, 0.65))
        frac_w, frac_h = lrng.uniform(0.3, 0.55, size=2)
        f_len = lrng.uniform(1.0 / 120.0, 1.0 / 25.0, size=3)
        f_dir = lrng.uniform(0.0, 2.0 * math.pi, size=3)
        tex_freq = np.stack([f_len * np.cos(f_dir), f_len * np.sin(f_dir)], axis=1) * 2.0 * math.pi
        # acquisitions: distinct days, ~10:30 local solar time, t is a shuffled time order
        days = np.sort(lrng.choice(_DAYS_2002_2017, size=n_img, replace=False))
        local_s = lrng.integers(int(9.5 * 3600), int(11.5 * 3600), size=n_img)
        times = [
            _EPOCH_2002 + int(d) * 86400 + int(s) - round(L.lon / 15.0 * 3600)
            for d, s in zip(days, local_s, strict=True)
        ]
        order = lrng.permutation(n_img)
        if n_img > 1 and np.all(order == np.arange(n_img)):
            order = np.roll(order, 1)
        change_ts: int | None = None
        if L.category == "construction_site" or (n_img > 1 and lrng.random() < 0.25):
            change_ts = times[int(lrng.integers(1, n_img))] if n_img > 1 else times[0] + 1
        scene = _Scene(
            style=styles[L.category],
            region=L.region,
            angle=float(lrng.choice([0.0, math.pi / 2, lrng.uniform(0.0, math.pi)])),
            obj_w_m=float(frac_w * mean_side * base_gsd),
            obj_h_m=float(frac_h * mean_side * base_gsd),
            tex_freq=tex_freq.astype(np.float32),
            tex_phase=lrng.uniform(0.0, 2.0 * math.pi, size=3).astype(np.float32),
            change_ts=change_ts,
        )
        zone, band = _utm_zone(L.lat, L.lon)
        epsg = _utm_epsg(L.lat, L.lon)

        if L.split in FMOW_ANONYMOUS_SPLITS:
            img_dir = f"{L.split}/{L.anon_id:07d}"
            stem_base = f"{L.anon_id:07d}"
            gt_dir = f"{L.split}_gt/{L.category}/{L.category}_{L.loc}"
            mappings[L.split].append({"input": gt_dir, "output": img_dir})
        else:
            img_dir = f"{L.split}/{L.category}/{L.category}_{L.loc}"
            stem_base = f"{L.category}_{L.loc}"
            gt_dir = ""

        for t in range(n_img):
            ts = times[int(order[t])]
            w = int(lrng.integers(s_lo, s_hi + 1))
            h = int(lrng.integers(s_lo, s_hi + 1))
            off_nadir = float(lrng.uniform(2.0, 30.0))
            gsd = (
                base_gsd * float(lrng.uniform(0.9, 1.1)) / math.cos(math.radians(off_nadir)) ** 0.5
            )
            bw = max(4, min(round(scene.obj_w_m / gsd), int(0.9 * w)))
            bh = max(4, min(round(scene.obj_h_m / gsd), int(0.9 * h)))
            bx = round((w - bw) / 2.0 + lrng.uniform(-0.06, 0.06) * w)
            by = round((h - bh) / 2.0 + lrng.uniform(-0.06, 0.06) * h)
            bx = max(0, min(w - bw, bx))
            by = max(0, min(h - bh, by))
            elev, azim = _solar_angles(L.lat, L.lon, ts)
            elev_c = max(elev, 5.0)
            doy = datetime.fromtimestamp(ts, UTC).timetuple().tm_yday
            peak = 196 if L.lat >= 0 else 15
            amp = min(1.0, abs(L.lat) / 30.0)
            greenness = (
                0.5 + 0.5 * amp * math.cos(2.0 * math.pi * (doy - peak) / 365.0) + 0.5 * (1 - amp)
            )
            cloud_cover = 0 if lrng.random() < 0.6 else int(lrng.integers(1, 61))
            built = scene.change_ts is None or ts >= scene.change_ts
            shift = (float(lrng.uniform(-3.0, 3.0)), float(lrng.uniform(-3.0, 3.0)))
            gain = (1.0 + 0.06 * lrng.uniform(-1.0, 1.0, size=3)).astype(np.float32)
            pixels = _render(
                h,
                w,
                (bx, by, bw, bh),
                gsd,
                scene,
                shift=shift,
                brightness=0.6 + 0.45 * math.sin(math.radians(elev_c)),
                greenness=greenness,
                gain=gain,
                cloud_cover=cloud_cover,
                built=built,
                rng=lrng,
                noise_tile=noise_tile,
            )
            ms_w = max(4, round(w / _MS_FACTOR))
            ms_h = max(4, round(h / _MS_FACTOR))
            ms_rgb = _downsample(pixels, ms_w, ms_h)

            # footprint centre: the object position plus the offset of the box from the image centre
            dx_m = (w / 2.0 - (bx + bw / 2.0)) * gsd
            dy_m = ((by + bh / 2.0) - h / 2.0) * gsd
            c_lat = L.lat + dy_m / _METRES_PER_DEG_LAT
            c_lon = L.lon + dx_m / (_METRES_PER_DEG_LAT * math.cos(math.radians(L.lat)))

            box_id += 1
            boxes = [(bx, by, bw, bh, box_id)]  # x, y, w, h, ID; the first is the target
            if lrng.random() < 0.1:  # an occasional second, smaller instance
                box_id += 1
                sw, sh = max(2, bw // 3), max(2, bh // 3)
                sx, sy = int(lrng.integers(0, w - sw + 1)), int(lrng.integers(0, h - sh + 1))
                boxes.append((sx, sy, sw, sh, box_id))
            scan = "Forward" if lrng.random() < 0.5 else "Reverse"
            target_az = float(lrng.uniform(0.0, 360.0))
            cal = _abs_cal_factors(lrng)
            pan_res = gsd * float(lrng.uniform(0.97, 1.0))
            meta_common: dict[str, Any] = {"country_code": L.region.country_code}

            stem = f"{stem_base}_{t}"
            for product, (pw, ph, scale) in zip(
                img_products, ((w, h, 1), (ms_w, ms_h, _MS_FACTOR)), strict=True
            ):
                p_gsd = gsd * (w / pw if scale > 1 else 1.0)
                fname = f"{stem}_{product}.{img_ext}"
                p_boxes = [
                    {
                        "box": [
                            x * pw // w,
                            y * ph // h,
                            max(1, round(bw_ * pw / w)),
                            max(1, round(bh_ * ph / h)),
                        ],
                        "category": L.category,
                        "ID": id_,
                    }
                    for x, y, bw_, bh_, id_ in boxes
                ]
                meta: dict[str, Any] = {
                    "gsd": _r(p_gsd, 10),
                    "img_width": pw,
                    "img_height": ph,
                    **meta_common,
                    "cloud_cover": cloud_cover,
                    "timestamp": _iso(ts),
                    "scan_direction": scan,
                    "approximate_wavelengths": list(FMOW_APPROXIMATE_WAVELENGTHS),
                    **_variants("pan_resolution", pan_res, 0.01, lrng),
                    **_variants("multi_resolution", pan_res * _MS_FACTOR, 0.04, lrng),
                    **_variants("target_azimuth", target_az, 1.5, lrng),
                    **_variants("off_nadir_angle", off_nadir, 0.5, lrng),
                    "sun_azimuth_dbl": _r(azim, 10),
                    "sun_elevation_dbl": _r(elev, 10),
                    "utm": f"{zone}{band}",
                    "spatial_reference": "WGS84",
                    "abs_cal_factors": cal,
                    "mean_pixel_height": _r(p_gsd * (1.0 + 0.02 * off_nadir / 30.0), 10),
                    "mean_pixel_width": _r(p_gsd * (1.0 + 0.01 * off_nadir / 30.0), 10),
                    "img_filename": fname,
                    "raw_location": _footprint_wkt(c_lat, c_lon, w * gsd, h * gsd),
                    "bounding_boxes": p_boxes,
                }
                json_name = f"{stem}_{product}.json"
                if gt_dir:
                    anon = dict(meta)
                    anon["bounding_boxes"] = [{"box": b["box"], "ID": b["ID"]} for b in p_boxes]
                    write(f"{img_dir}/{json_name}", _json_bytes(anon))
                    gt_meta = dict(meta)
                    gt_name = f"{L.category}_{L.loc}_{t}_{product}"
                    gt_meta["img_filename"] = f"{gt_name}.{img_ext}"
                    write(f"{gt_dir}/{gt_name}.json", _json_bytes(gt_meta))
                else:
                    write(f"{img_dir}/{json_name}", _json_bytes(meta))

                rel_img = f"{img_dir}/{fname}"
                if not full:
                    write(rel_img, _jpeg_bytes(pixels if scale == 1 else ms_rgb))
                else:
                    from affine import Affine

                    if epsg not in transformers:
                        from pyproj import Transformer

                        transformers[epsg] = Transformer.from_crs(
                            "EPSG:4326", f"EPSG:{epsg}", always_xy=True
                        )
                    east, north = transformers[epsg].transform(c_lon, c_lat)
                    transform = Affine(
                        gsd * w / pw,
                        0.0,
                        east - w * gsd / 2.0,
                        0.0,
                        -gsd * h / ph,
                        north + h * gsd / 2.0,
                    )
                    bands: npt.NDArray[Any]
                    if scale == 1:
                        bands = np.ascontiguousarray(pixels.transpose(2, 0, 1))
                    else:
                        bands = _ms_bands(ms_rgb)
                    path = root / rel_img
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _write_geotiff(path, bands, epsg, transform)
                    written.append(rel_img)
            images_per_split[L.split] += 1

    for split, entries in mappings.items():
        if entries:
            entries.sort(key=lambda e: e["output"])
            write(f"{split}_gt_mapping.json", _json_bytes(entries))

    manifest = sorted(written)
    atomic_write_bytes(root / "manifest.json.bz2", bz2.compress(_json_bytes(manifest)))

    return FMoWSampleSummary(
        root=root,
        num_locations=len(plan),
        num_images=sum(images_per_split.values()),
        images_per_split=images_per_split,
        locations_per_split=locations_per_split,
        categories=tuple(c for c in FMOW_CATEGORIES if c in {L.category for L in plan}),
        full=full,
        num_files=len(manifest),
    )
