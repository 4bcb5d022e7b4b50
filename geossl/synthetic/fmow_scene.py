"""The procedural scenes of the fMoW samples: regions, category styles, painters, rendering.

A scene is a land-cover background texture (the palette of one of 11 regions of the globe) plus a
category-specific structure (building grids, tank circles, field stripes, water bodies, runways,
ovals, ...) drawn by the ``_gen_*`` painters inside the target box. `_render` draws one
acquisition of a scene (season, sun, gain, misregistration, clouds, construction);
`_downsample` and `_ms_bands` make the coarser multispectral product. Used by
[`geossl.synthetic.fmow`][geossl.synthetic.fmow] and
[`geossl.synthetic.fmow_sentinel`][geossl.synthetic.fmow_sentinel].
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from geossl.datasets.fmow.constants import FMOW_CATEGORIES

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


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
class _CategoryStyle:
    family: str
    primary: FloatArray
    secondary: FloatArray
    count: int  # cells / stripes / blobs across the box
    duty: float  # filled fraction of a cell or stripe


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


def _cells(u: FloatArray, v: FloatArray, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    fu = (u + 1.0) * (n / 2.0)
    fv = (v + 1.0) * (n / 2.0)
    parity = (np.floor(fu) + np.floor(fv)) % 2.0
    return fu - np.floor(fu), fv - np.floor(fv), parity.astype(np.float32)


def _inside(u: FloatArray, v: FloatArray, extent: float = 1.0) -> BoolArray:
    return (np.abs(u) < extent) & (np.abs(v) < extent)


# structure painters: (u, v) are box-normalised object coordinates (|u|, |v| <= 1 inside the
# target box); they return (mask in [0, 1], which colour: True = primary, False = secondary)


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


def _draw_scene(
    style: _CategoryStyle,
    region: _Region,
    lrng: np.random.Generator,
    obj_size_m: tuple[float, float],
    tex_freq: npt.NDArray[np.floating[Any]],
    change_ts: int | None,
) -> _Scene:
    """A location's scene; draws its angle, then its texture phases, from ``lrng``.

    Shared by the fMoW and fMoW-Sentinel samples: the draw order is part of their seeded output.
    """
    return _Scene(
        style=style,
        region=region,
        angle=float(lrng.choice([0.0, math.pi / 2, lrng.uniform(0.0, math.pi)])),
        obj_w_m=obj_size_m[0],
        obj_h_m=obj_size_m[1],
        tex_freq=tex_freq.astype(np.float32),
        tex_phase=lrng.uniform(0.0, 2.0 * math.pi, size=3).astype(np.float32),
        change_ts=change_ts,
    )


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

    _draw_structure(img, xs, ys, (cx, cy), gsd, scene, built)

    # illumination and per-acquisition sensor gain
    img *= (brightness * gain).astype(np.float32)

    if cloud_cover > 0:
        _add_clouds(img, cloud_cover, rng)

    # sensor noise: a window of a seeded noise tile at a random offset
    oy = int(rng.integers(0, noise_tile.shape[0] - h + 1))
    ox = int(rng.integers(0, noise_tile.shape[1] - w + 1))
    img += noise_tile[oy : oy + h, ox : ox + w]
    np.clip(img, 0.0, 255.0, out=img)
    out: npt.NDArray[np.uint8] = img.astype(np.uint8)
    return out


def _draw_structure(
    img: FloatArray,
    xs: FloatArray,
    ys: FloatArray,
    centre: tuple[float, float],
    gsd: float,
    scene: _Scene,
    built: bool,
) -> None:
    """Paint the category structure (or a cleared plot when not ``built``) into ``img`` in place.

    ``xs`` / ``ys``: metres east / south of the object centre of every column / row.
    """
    h, w = img.shape[:2]
    cx, cy = centre
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


def _add_clouds(img: FloatArray, cloud_cover: int, rng: np.random.Generator) -> None:
    """Blend clouds over ``cloud_cover`` percent of ``img`` in place.

    The threshold of the cloud field comes from a quantile of a subsampled copy.
    """
    h, w = img.shape[:2]
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


def _greenness(lat: float, ts: int) -> float:
    """Seasonal vegetation greenness at latitude ``lat`` on the day of timestamp ``ts``.

    Peaks mid-July (north) or mid-January (south); near the equator it stays high all year.
    """
    doy = datetime.fromtimestamp(ts, UTC).timetuple().tm_yday
    peak = 196 if lat >= 0 else 15
    amp = min(1.0, abs(lat) / 30.0)
    return 0.5 + 0.5 * amp * math.cos(2.0 * math.pi * (doy - peak) / 365.0) + 0.5 * (1 - amp)
