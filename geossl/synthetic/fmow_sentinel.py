"""Seeded generator of a small fMoW-Sentinel sample in the real on-disk layout.

The layout of fMoW-Sentinel ([`geossl.datasets.fmow.sentinel`][geossl.datasets.fmow.sentinel]):
``train.csv``, ``val.csv`` and ``test_gt.csv`` with the columns
``category,location_id,image_id,timestamp,polygon`` and one 13-band uint16 GeoTIFF per row at
``{split}/{category}/{category}_{location_id}/{category}_{location_id}_{image_id}.tif``.

Each location gets the time series the real dataset was built with: its fMoW acquisition dates from
2015-07-01 on (``image_id < 100``), plus the midpoint of every 6-month interval from 2015-07-01 to
2019-12-31 that has none of them (``image_id >= 100``). All composites of one location share one
EPSG:4326 grid at about 10 m (the location's footprint), so the acquisitions of a place are
pixel-aligned. As in the real data, a few downloads "failed": their file holds a single null band
and their row is left out of the CSV.

The pixels are the procedural scenes of `geossl.synthetic.fmow_scene` (land cover plus a
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
from geossl.synthetic.common import (
    _check_range,
    check_plan_arguments,
    prepare_sample_folder,
    write_geotiff,
)
from geossl.synthetic.fmow_layout import _Location, _plan_locations
from geossl.synthetic.fmow_metadata import _METRES_PER_DEG_LAT, _footprint_wkt, _iso
from geossl.synthetic.fmow_scene import (
    _category_style,
    _CategoryStyle,
    _draw_scene,
    _greenness,
    _render,
    _Scene,
)
from geossl.utils.checks import check_fraction
from geossl.utils.io import atomic_write_bytes

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
    """What `generate_fmow_sentinel_sample` wrote.

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


_Row = tuple[str, int, int, str, str]  # category, location, image_id, timestamp, polygon


def _series(
    lrng: np.random.Generator,
    fmow_images: tuple[int, int],
    intervals: Sequence[tuple[int, int]],
) -> list[tuple[int, int]]:
    """The ``(image_id, unix time)`` of a location: fMoW dates, then one per empty interval."""
    start_s, end_s = intervals[0][0], intervals[-1][1]
    n_fmow = int(lrng.integers(fmow_images[0], fmow_images[1] + 1))
    fmow_times = sorted(int(t) for t in lrng.integers(start_s, end_s, size=n_fmow))
    series = [(i, t) for i, t in enumerate(fmow_times)]
    for k, (lo, hi) in enumerate(intervals):
        if not any(lo <= t < hi for t in fmow_times):
            series.append((100 + k, (lo + hi) // 2))
    return series


def _sentinel_scene(
    location: _Location,
    lrng: np.random.Generator,
    style: _CategoryStyle,
    size: tuple[int, int],
    span: tuple[int, int],
) -> _Scene:
    """Draw the scene of a location whose ``(w, h)`` grid is at 10 m (``span``: first, last s)."""
    w, h = size
    frac_w, frac_h = lrng.uniform(0.3, 0.55, size=2)
    f_len = lrng.uniform(1.0 / 600.0, 1.0 / 150.0, size=3)
    f_dir = lrng.uniform(0.0, 2.0 * math.pi, size=3)
    tex_freq = np.stack([f_len * np.cos(f_dir), f_len * np.sin(f_dir)], axis=1) * 2.0 * math.pi
    change_ts: int | None = None
    if location.category == "construction_site" or lrng.random() < 0.2:
        change_ts = int(lrng.integers(span[0], span[1]))
    obj_size_m = (float(frac_w * w * SENTINEL_GSD), float(frac_h * h * SENTINEL_GSD))
    return _draw_scene(style, location.region, lrng, obj_size_m, tex_freq, change_ts)


def _composite(
    location: _Location,
    scene: _Scene,
    ts: int,
    lrng: np.random.Generator,
    size: tuple[int, int],
    noise_tile: npt.NDArray[np.int8],
) -> npt.NDArray[np.uint8]:
    """Render the RGB ``(h, w, 3)`` composite of a location at time ``ts`` (season, sun, clouds)."""
    w, h = size
    return _render(
        h,
        w,
        (0, 0, w, h),
        SENTINEL_GSD,
        scene,
        shift=(0.0, 0.0),  # composites of one place share the grid: no misregistration
        brightness=float(lrng.uniform(0.9, 1.1)),
        greenness=_greenness(location.lat, ts),
        gain=(1.0 + 0.03 * lrng.uniform(-1.0, 1.0, size=3)).astype(np.float32),
        cloud_cover=0 if lrng.random() < 0.85 else int(lrng.integers(1, 15)),
        built=scene.change_ts is None or ts >= scene.change_ts,
        rng=lrng,
        noise_tile=noise_tile,
    )


@dataclass(frozen=True)
class _Draws:
    """The sample-wide arguments every location is drawn with."""

    fmow_images: tuple[int, int]
    sizes: tuple[int, int]
    failed_fraction: float
    intervals: list[tuple[int, int]]
    noise_tile: npt.NDArray[np.int8]


def _write_location(
    root: Path, location: _Location, style: _CategoryStyle, draws: _Draws
) -> tuple[list[_Row], int]:
    """Write the GeoTIFFs of one location; return its CSV rows and its number of failed files."""
    from affine import Affine

    lrng = np.random.default_rng(location.seed)
    s_lo, s_hi = draws.sizes
    w, h = (int(v) for v in lrng.integers(s_lo, s_hi + 1, size=2))
    series = _series(lrng, draws.fmow_images, draws.intervals)
    span = (draws.intervals[0][0], draws.intervals[-1][1])
    scene = _sentinel_scene(location, lrng, style, (w, h), span)
    lat, lon = location.lat, location.lon
    dlat = SENTINEL_GSD / _METRES_PER_DEG_LAT
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    transform = Affine(dlon, 0.0, lon - w / 2.0 * dlon, 0.0, -dlat, lat + h / 2.0 * dlat)
    polygon = _footprint_wkt(lat, lon, w * SENTINEL_GSD, h * SENTINEL_GSD)
    name = f"{location.category}_{location.loc}"
    folder = root / location.split / location.category / name
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[_Row] = []
    failed = 0
    for image_id, ts in series:
        path = folder / f"{name}_{image_id}.tif"
        if lrng.random() < draws.failed_fraction:  # a failed download: one null band, not listed
            write_geotiff(path, np.zeros((1, h, w), dtype=np.uint16), 4326, transform)
            failed += 1
            continue
        pixels = _composite(location, scene, ts, lrng, (w, h), draws.noise_tile)
        write_geotiff(path, sentinel_bands(pixels), 4326, transform)
        rows.append((location.category, location.loc, image_id, _iso(ts), polygon))
    return rows, failed


def _write_csvs(
    root: Path, lines: Mapping[str, list[_Row]], fractions: Mapping[str, float]
) -> None:
    """Write the CSV of every split that has rows or a positive share (and its folder)."""
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
        A [`FMoWSentinelSampleSummary`][geossl.synthetic.fmow_sentinel.FMoWSentinelSampleSummary].

    Raises:
        ValueError: when an argument is out of range or names an unknown split or category.
        FileExistsError: when ``output`` is a file, or a non-empty folder without ``overwrite``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     summary = generate_fmow_sentinel_sample(
        ...         f"{folder}/sentinel", locations=3, image_size=(8, 12), categories=["airport"]
        ...     )
        ...     print(summary.num_locations, sorted(p.name for p in summary.root.glob("*.csv")))
        3 ['test_gt.csv', 'train.csv', 'val.csv']
    """
    shares = DEFAULT_SENTINEL_SPLIT_FRACTIONS if split_fractions is None else split_fractions
    fractions, cats = check_plan_arguments(locations, shares, tuple(FMOW_SENTINEL_CSV), categories)
    fmow_images = _check_range("fmow_images_per_location", fmow_images_per_location, 0)
    sizes = _check_range("image_size", image_size, 8)
    check_fraction("failed_fraction", failed_fraction, high_open=True)

    owned = [*FMOW_SENTINEL_CSV, *FMOW_SENTINEL_CSV.values()]  # split folders and CSVs
    root = prepare_sample_folder(output, overwrite, owned)
    rng = np.random.default_rng(seed)
    plan = _plan_locations(int(locations), rng, fractions, cats)
    styles = {c: _category_style(c) for c in set(cats)}
    noise_tile = rng.integers(-4, 5, size=(sizes[1] + 64, sizes[1] + 64, 3), dtype=np.int8)
    draws = _Draws(fmow_images, sizes, failed_fraction, _interval_bounds(), noise_tile)

    lines: dict[str, list[_Row]] = {s: [] for s in FMOW_SENTINEL_CSV}
    locations_per_split = dict.fromkeys(FMOW_SENTINEL_CSV, 0)
    num_failed = 0
    for location in plan:
        locations_per_split[location.split] += 1
        rows, failed = _write_location(root, location, styles[location.category], draws)
        lines[location.split].extend(rows)
        num_failed += failed
    _write_csvs(root, lines, fractions)

    return FMoWSentinelSampleSummary(
        root=root,
        num_locations=len(plan),
        num_images=sum(len(rows) for rows in lines.values()),
        images_per_split={s: len(rows) for s, rows in lines.items()},
        locations_per_split=locations_per_split,
        categories=tuple(c for c in FMOW_CATEGORIES if c in {L.category for L in plan}),
        num_failed=num_failed,
    )
