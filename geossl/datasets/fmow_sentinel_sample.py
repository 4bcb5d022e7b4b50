"""Seeded generator of a small fMoW-Sentinel sample in the real on-disk layout.

The layout of fMoW-Sentinel (:mod:`geossl.datasets.fmow.sentinel`): ``train.csv``, ``val.csv`` and
``test_gt.csv`` with the columns ``category,location_id,image_id,timestamp,polygon`` and one
13-band uint16 GeoTIFF per row at
``{split}/{category}/{category}_{location_id}/{category}_{location_id}_{image_id}.tif``.

Each location gets the time series the real dataset was built with: its fMoW acquisition dates from
2015-07-01 on (``image_id < 100``), plus the midpoint of every 6-month interval from 2015-07-01 to
2019-12-31 that has none of them (``image_id >= 100``). All composites of one location share one
EPSG:4326 grid at about 10 m (the location's footprint), so the acquisitions of a place are
pixel-aligned. As in the real data, a few downloads "failed": their file holds a single null band
and their row is left out of the CSV.

The pixels are the procedural scenes of :mod:`geossl.datasets.fmow_sample` (land cover plus a
category-specific structure) rendered at 10 m, with seasons, and turned into the 13 Sentinel-2
bands by a simple spectral model (vegetation bright in the red edge and NIR, dark in SWIR; the
cirrus band B10 near zero), as reflectance times 10,000.

Same seed, same arguments => byte-identical CSVs and identical pixels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_SENTINEL_CSV
from geossl.datasets.fmow_sample import (
    _METRES_PER_DEG_LAT,
    _category_style,
    _check_range,
    _footprint_wkt,
    _iso,
    _plan_locations,
    _render,
    _Scene,
    _write_geotiff,
    check_plan_arguments,
)
from geossl.utils.io import atomic_write_bytes, prepare_sample_folder

__all__ = [
    "DEFAULT_SENTINEL_SPLIT_FRACTIONS",
    "FMoWSentinelSampleSummary",
    "generate_fmow_sentinel_sample",
]

#: Default share of locations per split.
DEFAULT_SENTINEL_SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}

#: Ground sample distance of the composites in metres (Sentinel-2's 10 m bands).
SENTINEL_GSD = 10.0

_NUM_INTERVALS = 9  # 6-month intervals from 2015-07-01 to 2019-12-31
_CSV_HEADER = "category,location_id,image_id,timestamp,polygon\n"


@dataclass(frozen=True)
class FMoWSentinelSampleSummary:
    """What :func:`generate_fmow_sentinel_sample` wrote.

    Attributes:
        root: the sample's root folder.
        num_locations: locations over all splits.
        num_images: rows of the CSVs (images listed).
        images_per_split: rows per split.
        locations_per_split: locations per split.
        categories: the categories with at least one location, in fMoW order.
        num_failed: images written with a single null band and left out of the CSVs.
    """

    root: Path
    num_locations: int
    num_images: int
    images_per_split: Mapping[str, int] = field(default_factory=dict)
    locations_per_split: Mapping[str, int] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    num_failed: int = 0


def _interval_bounds() -> list[tuple[int, int]]:
    """Unix-second bounds of the nine 6-month intervals from 2015-07-01 to 2019-12-31."""
    edges = [
        datetime(2015 + (6 + 6 * k) // 12, 1 + (6 + 6 * k) % 12, 1, tzinfo=UTC)
        for k in range(_NUM_INTERVALS + 1)
    ]
    return [(int(a.timestamp()), int(b.timestamp())) for a, b in itertools.pairwise(edges)]


def sentinel_bands(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """The 13 Sentinel-2 bands (reflectance x 10,000, uint16) of an RGB scene ``(h, w, 3)``."""
    r, g, b = (rgb[..., i].astype(np.float32) * np.float32(3500.0 / 255.0) for i in range(3))
    veg = np.clip(g - 0.5 * (r + b), 0.0, None)
    nir = 0.35 * r + 0.3 * g + 3.8 * veg + 380.0
    bands = np.stack(
        [
            0.9 * b + 300.0,  # B01 coastal aerosol
            b,  # B02 blue
            g,  # B03 green
            r,  # B04 red
            0.7 * r + 0.3 * g + 1.0 * veg,  # B05 red edge 1
            0.4 * r + 0.3 * g + 3.0 * veg + 300.0,  # B06 red edge 2
            0.35 * r + 0.3 * g + 3.6 * veg + 350.0,  # B07 red edge 3
            nir,  # B08 NIR
            nir + 0.1 * veg + 20.0,  # B8A narrow NIR
            0.2 * nir + 100.0,  # B09 water vapour
            10.0 + 0.005 * b,  # B10 cirrus
            0.8 * r + 0.4 * g - 1.0 * veg + 500.0,  # B11 SWIR 1
            0.7 * r + 0.2 * g - 1.2 * veg + 300.0,  # B12 SWIR 2
        ]
    )
    out: npt.NDArray[np.uint16] = np.clip(bands, 0.0, 10_000.0).astype(np.uint16)
    return out


def generate_fmow_sentinel_sample(
    output: str | Path,
    locations: int = 24,
    seed: int = 0,
    *,
    fmow_images_per_location: tuple[int, int] = (0, 3),
    image_size: tuple[int, int] = (24, 64),
    split_fractions: Mapping[str, float] | None = None,
    categories: Sequence[str] | None = None,
    failed_fraction: float = 0.02,
    overwrite: bool = False,
) -> FMoWSentinelSampleSummary:
    """Write a seeded fMoW-Sentinel sample in the real layout.

    Args:
        output: the sample's root folder (created).
        locations: locations over all splits (>= 1).
        seed: the random seed.
        fmow_images_per_location: inclusive range of fMoW acquisition dates after 2015-07-01 per
            location (``image_id`` 0, 1, ...); the empty 6-month intervals add ``image_id`` 100+.
        image_size: inclusive range of the width and of the height of a location's grid in pixels
            (>= 8), drawn per location.
        split_fractions: share of locations per split among ``train``, ``val``, ``test``.
        categories: the categories to cycle through; default all 62.
        failed_fraction: chance that an image "failed to download" (one null band, not listed).
        overwrite: replace the sample's own entries of a non-empty ``output``.

    Returns:
        A :class:`FMoWSentinelSampleSummary`.

    Raises:
        ValueError: when an argument is out of range or names an unknown split or category.
        FileExistsError: when ``output`` is a file, or a non-empty folder without ``overwrite``.
    """
    fractions, cats = check_plan_arguments(
        locations,
        DEFAULT_SENTINEL_SPLIT_FRACTIONS if split_fractions is None else split_fractions,
        tuple(FMOW_SENTINEL_CSV),
        categories,
    )
    f_lo, f_hi = _check_range("fmow_images_per_location", fmow_images_per_location, 0)
    s_lo, s_hi = _check_range("image_size", image_size, 8)
    if not 0.0 <= failed_fraction < 1.0:
        raise ValueError(f"failed_fraction must be in [0, 1), got {failed_fraction}")

    owned = [*FMOW_SENTINEL_CSV, *FMOW_SENTINEL_CSV.values()]  # split folders and CSVs
    root = prepare_sample_folder(output, overwrite, owned)
    rng = np.random.default_rng(seed)
    plan = _plan_locations(int(locations), rng, fractions, cats)
    styles = {c: _category_style(c) for c in set(cats)}
    noise_tile = rng.integers(-4, 5, size=(s_hi + 64, s_hi + 64, 3), dtype=np.int8)
    intervals = _interval_bounds()
    start_s, end_s = intervals[0][0], intervals[-1][1]

    from affine import Affine

    # CSV rows per split: (category, location, image_id, timestamp, polygon)
    lines: dict[str, list[tuple[str, int, int, str, str]]] = {s: [] for s in FMOW_SENTINEL_CSV}
    locations_per_split = dict.fromkeys(FMOW_SENTINEL_CSV, 0)
    num_failed = 0
    for L in plan:
        lrng = np.random.default_rng(L.seed)
        locations_per_split[L.split] += 1
        w, h = (int(v) for v in lrng.integers(s_lo, s_hi + 1, size=2))
        # fMoW dates after the start of Sentinel-2, then one composite per empty interval
        n_fmow = int(lrng.integers(f_lo, f_hi + 1))
        fmow_times = sorted(int(t) for t in lrng.integers(start_s, end_s, size=n_fmow))
        series = [(i, t) for i, t in enumerate(fmow_times)]
        for k, (lo, hi) in enumerate(intervals):
            if not any(lo <= t < hi for t in fmow_times):
                series.append((100 + k, (lo + hi) // 2))
        frac_w, frac_h = lrng.uniform(0.3, 0.55, size=2)
        f_len = lrng.uniform(1.0 / 600.0, 1.0 / 150.0, size=3)
        f_dir = lrng.uniform(0.0, 2.0 * math.pi, size=3)
        tex_freq = np.stack([f_len * np.cos(f_dir), f_len * np.sin(f_dir)], axis=1) * 2.0 * math.pi
        change_ts: int | None = None
        if L.category == "construction_site" or lrng.random() < 0.2:
            change_ts = int(lrng.integers(start_s, end_s))
        scene = _Scene(
            style=styles[L.category],
            region=L.region,
            angle=float(lrng.choice([0.0, math.pi / 2, lrng.uniform(0.0, math.pi)])),
            obj_w_m=float(frac_w * w * SENTINEL_GSD),
            obj_h_m=float(frac_h * h * SENTINEL_GSD),
            tex_freq=tex_freq.astype(np.float32),
            tex_phase=lrng.uniform(0.0, 2.0 * math.pi, size=3).astype(np.float32),
            change_ts=change_ts,
        )
        dlat = SENTINEL_GSD / _METRES_PER_DEG_LAT
        dlon = dlat / max(math.cos(math.radians(L.lat)), 1e-6)
        transform = Affine(dlon, 0.0, L.lon - w / 2.0 * dlon, 0.0, -dlat, L.lat + h / 2.0 * dlat)
        polygon = _footprint_wkt(L.lat, L.lon, w * SENTINEL_GSD, h * SENTINEL_GSD)
        folder = f"{L.split}/{L.category}/{L.category}_{L.loc}"
        (root / folder).mkdir(parents=True, exist_ok=True)
        for image_id, ts in series:
            path = root / folder / f"{L.category}_{L.loc}_{image_id}.tif"
            if lrng.random() < failed_fraction:  # a failed download: one null band, not listed
                _write_geotiff(path, np.zeros((1, h, w), dtype=np.uint16), 4326, transform)
                num_failed += 1
                continue
            doy = datetime.fromtimestamp(ts, UTC).timetuple().tm_yday
            peak = 196 if L.lat >= 0 else 15
            amp = min(1.0, abs(L.lat) / 30.0)
            greenness = 0.5 + 0.5 * amp * math.cos(2.0 * math.pi * (doy - peak) / 365.0)
            pixels = _render(
                h,
                w,
                (0, 0, w, h),
                SENTINEL_GSD,
                scene,
                shift=(0.0, 0.0),  # composites of one place share the grid: no misregistration
                brightness=float(lrng.uniform(0.9, 1.1)),
                greenness=greenness + 0.5 * (1.0 - amp),
                gain=(1.0 + 0.03 * lrng.uniform(-1.0, 1.0, size=3)).astype(np.float32),
                cloud_cover=0 if lrng.random() < 0.85 else int(lrng.integers(1, 15)),
                built=change_ts is None or ts >= change_ts,
                rng=lrng,
                noise_tile=noise_tile,
            )
            _write_geotiff(path, sentinel_bands(pixels), 4326, transform)
            lines[L.split].append((L.category, L.loc, image_id, _iso(ts), polygon))

    for split, rows in lines.items():
        if fractions.get(split, 0.0) <= 0 and not rows:
            continue
        rows.sort(key=lambda r: (FMOW_CATEGORIES.index(r[0]), r[1], r[2]))
        body = "".join(
            f'{cat},{loc},{image_id},{stamp},"{polygon}"\n'
            for cat, loc, image_id, stamp, polygon in rows
        )
        atomic_write_bytes(root / FMOW_SENTINEL_CSV[split], (_CSV_HEADER + body).encode("ascii"))
        (root / split).mkdir(exist_ok=True)

    return FMoWSentinelSampleSummary(
        root=root,
        num_locations=len(plan),
        num_images=sum(len(rows) for rows in lines.values()),
        images_per_split={s: len(rows) for s, rows in lines.items()},
        locations_per_split=locations_per_split,
        categories=tuple(c for c in FMOW_CATEGORIES if c in {L.category for L in plan}),
        num_failed=num_failed,
    )
