"""Seeded generator of a small co-registered GeoTIFF time series, for tests and examples.

The sample looks like a NAIP stack (the layout
[`TimeSeriesRasters`][geossl.datasets.rasters.TimeSeriesRasters] reads): one folder of north-up
GeoTIFFs in UTM zone 14N (EPSG:32614), 4 bands (red, green, blue, near-infrared), uint8, nodata 0,
named like NAIP quarter quads with the acquisition date at the end,
``m_4709963_{quadrant}_14_1_{YYYYMMDD}.tif`` (or ``{YYYY}.tif`` with ``name_style="year"``, like the
Landsat composites of a time-lapse).

Every date covers the same footprint on the same pixel grid (co-registered). With ``tiles=2`` each
date is two quarter quads side by side (``nw`` and ``ne``) that overlap by ``tile_overlap``
pixels, so a date is a mosaic. The pixels are a procedural scene shared by all dates (fields with
their own crops, two roads, a pond): each date changes the season (vegetation greenness), the
illumination and the sensor noise. Valid pixels are in 1..255; 0 marks nodata: the scene edge of
some acquisitions (a wedge on one side) and, at ``cloudy_date``, a large cloud-masked area.

Same seed and arguments => identical files (pixels, tags, names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geossl.synthetic.common import write_geotiff
from geossl.utils.checks import check_at_least, check_range

__all__ = ["RasterSampleSummary", "generate_raster_timeseries_sample"]

FloatArray = npt.NDArray[np.float32]

#: Default grid: 2 m pixels, top-left corner of the sample in UTM 14N (North Dakota, NAIP's
#: m_4709963 quad).
DEFAULT_ORIGIN = (485900.0, 5209248.0)
_QUADRANTS = ("nw", "ne")


@dataclass(frozen=True)
class RasterSampleSummary:
    """What `generate_raster_timeseries_sample` wrote.

    Attributes:
        root: the folder holding the GeoTIFFs.
        files: the files written, sorted.
        dates: the acquisition date of each date index, ``"YYYY-MM-DD"`` (sorted).
        epsg: the files' CRS.
        res: pixel size in metres.
        origin: ``(x, y)`` of the top-left corner of the whole sample.
        size: ``(height, width)`` of the whole sample in pixels (tiles together).
        num_bands: bands per file.
        nodata: the nodata value.
        nodata_fraction: share of nodata pixels of each date ``[D]``.
    """

    root: Path
    files: tuple[Path, ...]
    dates: tuple[str, ...]
    epsg: int
    res: float
    origin: tuple[float, float]
    size: tuple[int, int]
    num_bands: int
    nodata: int
    nodata_fraction: tuple[float, ...]


def _scene(height: int, width: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    """Static layers of the scene: field id map, roads, pond, per-field crop parameters."""
    fields_y, fields_x = 3, 4
    ys = np.sort(rng.uniform(0.15, 0.85, fields_y - 1)) * height
    xs = np.sort(rng.uniform(0.15, 0.85, fields_x - 1)) * width
    row = np.searchsorted(ys, np.arange(height))[:, None]
    col = np.searchsorted(xs, np.arange(width))[None, :]
    field = (row * fields_x + col).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    road = np.zeros((height, width), np.float32)
    for y in ys[:1]:
        road[np.abs(yy - y) < 1.5] = 1.0
    for x in xs[1:2]:
        road[np.abs(xx - x) < 1.5] = 1.0
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    radius = 0.12 * min(height, width)
    pond = (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2).astype(np.float32)
    texture = (
        np.sin(xx * rng.uniform(0.2, 0.5) + rng.uniform(0, 6))
        * np.cos(yy * rng.uniform(0.2, 0.5) + rng.uniform(0, 6))
    ).astype(np.float32)
    n_fields = fields_y * fields_x
    return {
        "field": field,
        "road": road,
        "pond": pond,
        "texture": texture,
        "peak_day": rng.uniform(150, 230, n_fields).astype(np.float32),
        "vigour": rng.uniform(0.3, 1.0, n_fields).astype(np.float32),
    }


def _render(
    scene: dict[str, Any], day_of_year: int, gain: float, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """One acquisition: ``[4, H, W]`` uint8 in 1..255 (red, green, blue, near-infrared)."""
    field = scene["field"].astype(np.int64)
    season = np.exp(-(((day_of_year - scene["peak_day"]) / 45.0) ** 2)) * scene["vigour"]
    green = season[field]  # [H, W] in 0..1
    soil = np.array([150.0, 125.0, 95.0, 120.0], np.float32)
    crop = np.array([55.0, 105.0, 45.0, 215.0], np.float32)
    pixels = soil[:, None, None] * (1 - green) + crop[:, None, None] * green
    pixels = pixels + 12.0 * scene["texture"][None]
    road, pond = scene["road"][None], scene["pond"][None]
    pixels = pixels * (1 - road) + np.array([170.0, 165.0, 160.0, 150.0])[:, None, None] * road
    pixels = pixels * (1 - pond) + np.array([35.0, 55.0, 75.0, 20.0])[:, None, None] * pond
    pixels = pixels * gain + rng.normal(0.0, 3.0, pixels.shape)
    out: npt.NDArray[np.uint8] = np.clip(np.rint(pixels), 1, 255).astype(np.uint8)
    return out


def _nodata_mask(
    height: int, width: int, index: int, cloudy: bool, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """Nodata of one date: nothing, a scene-edge wedge, or a large cloud mask."""
    yy, xx = np.mgrid[0:height, 0:width]
    if cloudy:  # only a band along the bottom edge stays clear
        return np.asarray(yy < 0.7 * height)
    if index % 2 == 0:
        return np.zeros((height, width), dtype=bool)
    # A scene edge: a wedge on the left or right side, 10-25 % of the area.
    share = rng.uniform(0.1, 0.25)
    slope = rng.uniform(-0.3, 0.3)
    edge = share * width + slope * (yy - height / 2)
    return np.asarray(xx < edge) if index % 4 == 1 else np.asarray(xx >= width - edge)


def _dates(num_dates: int, year_names: bool, rng: np.random.Generator) -> list[datetime]:
    if year_names:
        years = np.sort(rng.choice(np.arange(1985, 2025), num_dates, replace=False))
        return [datetime(int(y), 1, 1, tzinfo=UTC) for y in years]
    # Days 130-279 of 2009-2022: the growing season, when NAIP flies.
    picks = np.sort(rng.choice(14 * 150, num_dates, replace=False))
    return [
        datetime(2009 + int(p) // 150, 1, 1, tzinfo=UTC) + timedelta(days=129 + int(p) % 150)
        for p in picks
    ]


#: The creation options of the sample's GeoTIFFs: NAIP-like tiled, deflated, nodata 0.
_CREATION_OPTIONS = {
    "nodata": 0,
    "tiled": True,
    "blockxsize": 64,
    "blockysize": 64,
    "compress": "deflate",
    "photometric": "minisblack",
}
_BAND_NAMES = ("red", "green", "blue", "nir")


@dataclass(frozen=True)
class _Grid:
    """Where the files of one date go: CRS, pixel size, top-left corner, tile column spans."""

    epsg: int
    res: float
    origin: tuple[float, float]
    spans: tuple[tuple[int, int], ...]  # [c0, c1) columns of each tile
    year_names: bool  # ``{YYYY}.tif`` instead of NAIP's quarter-quad names


def _write_date(
    root: Path, pixels: npt.NDArray[np.uint8], moment: datetime, grid: _Grid
) -> list[Path]:
    """Write the tiles of one acquisition (``pixels``: ``[C, H, W]`` of the whole sample)."""
    from affine import Affine

    stamp = moment.strftime("%Y:%m:%d %H:%M:%S")
    files: list[Path] = []
    for quadrant, (c0, c1) in zip(_QUADRANTS, grid.spans, strict=False):
        if grid.year_names:
            name = f"{moment:%Y}.tif"
        else:
            name = f"m_4709963_{quadrant}_14_1_{moment:%Y%m%d}.tif"
        x0, y0 = grid.origin
        transform = Affine(grid.res, 0.0, x0 + c0 * grid.res, 0.0, -grid.res, y0)
        write_geotiff(
            root / name,
            np.ascontiguousarray(pixels[:, :, c0:c1]),
            grid.epsg,
            transform,
            tags={"TIFFTAG_DATETIME": stamp},
            band_names=_BAND_NAMES[: pixels.shape[0]],
            **_CREATION_OPTIONS,
        )
        files.append(root / name)
    return files


def _check_arguments(
    size: tuple[int, int],
    num_dates: int,
    num_bands: int,
    tiles: int,
    tile_overlap: int,
    name_style: str,
    res: float,
) -> None:
    """Validate the arguments of `generate_raster_timeseries_sample`."""
    height, width = size
    check_at_least("num_dates", num_dates, 1)
    if height < 16 or width < 16:
        raise ValueError(f"size must be at least (16, 16), got {size}")
    check_range("num_bands", num_bands, low=1, high=4)
    if tiles not in (1, 2):
        raise ValueError(f"tiles must be 1 or 2, got {tiles}")
    if name_style not in ("naip", "year"):
        raise ValueError(f"name_style must be 'naip' or 'year', got {name_style!r}")
    if name_style == "year" and tiles != 1:
        raise ValueError("name_style='year' writes one file per date: tiles must be 1")
    if tiles == 2 and not 0 <= tile_overlap < width // 2:
        raise ValueError(f"tile_overlap must be in [0, width / 2), got {tile_overlap}")
    if not (math.isfinite(res) and res > 0):
        raise ValueError(f"res must be positive, got {res}")


def _prepare_output(root: Path, overwrite: bool) -> None:
    """Create the sample's folder, or clear its ``.tif`` files (only with ``overwrite``)."""
    if root.is_file():
        raise FileExistsError(f"{root} is a file")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass overwrite=True to replace the sample")
        for old in root.glob("*.tif"):
            old.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _date_pixels(
    scene: dict[str, FloatArray],
    moment: datetime,
    seed_index: tuple[int, int],
    num_bands: int,
    cloudy: bool,
) -> tuple[npt.NDArray[np.uint8], float]:
    """Render one date's bands with its nodata set to 0; return them and the nodata fraction.

    Each date draws from its own generator, seeded ``[seed, index]``, so the dates are independent.
    """
    seed, index = seed_index
    drng = np.random.default_rng([seed, index])
    pixels = _render(
        scene,
        moment.timetuple().tm_yday,
        gain=float(drng.uniform(0.85, 1.15)),
        rng=drng,
    )[:num_bands]
    height, width = pixels.shape[1:]
    nodata = _nodata_mask(height, width, index, cloudy, drng)
    pixels[:, nodata] = 0
    return pixels, float(nodata.mean())


def generate_raster_timeseries_sample(
    output: str | Path,
    num_dates: int = 5,
    seed: int = 0,
    *,
    size: tuple[int, int] = (96, 128),
    num_bands: int = 4,
    tiles: int = 1,
    tile_overlap: int = 8,
    epsg: int = 32614,
    res: float = 2.0,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    name_style: str = "naip",
    cloudy_date: int | None = 2,
    overwrite: bool = False,
) -> RasterSampleSummary:
    """Write a seeded, co-registered GeoTIFF time series (see the module docstring).

    Args:
        output: folder to create (the files go directly in it).
        num_dates: number of acquisition dates (>= 1), distinct days in the 2009-2022 growing
            seasons (distinct years 1985-2024 with ``name_style="year"``).
        seed: the random seed.
        size: ``(height, width)`` of the whole sample in pixels (>= 16 each).
        num_bands: bands per file, 1..4 (red, green, blue, near-infrared).
        tiles: files per date, 1 or 2 (two quarter quads side by side).
        tile_overlap: pixels the two tiles share when ``tiles=2``.
        epsg: the CRS (a projected CRS in metres).
        res: pixel size in CRS units.
        origin: ``(x, y)`` of the sample's top-left corner.
        name_style: ``"naip"`` (``m_4709963_{nw|ne}_14_1_{YYYYMMDD}.tif``) or ``"year"``
            (``{YYYY}.tif``, one tile only).
        cloudy_date: the date index whose acquisition is mostly nodata (70 %), ``None`` for none.
        overwrite: replace the ``.tif`` files of an existing non-empty folder instead of raising.

    Returns:
        A [`RasterSampleSummary`][geossl.synthetic.rasters.RasterSampleSummary].

    Raises:
        ValueError: for an argument out of range.
        FileExistsError: when ``output`` is a file, or a non-empty folder and ``overwrite`` is
            ``False``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     summary = generate_raster_timeseries_sample(folder, num_dates=2, size=(16, 16))
        ...     print([f.name for f in summary.files], summary.epsg)
        ['m_4709963_nw_14_1_20130630.tif', 'm_4709963_nw_14_1_20140616.tif'] 32614
    """
    height, width = size
    _check_arguments(size, num_dates, num_bands, tiles, tile_overlap, name_style, res)
    root = Path(output)
    _prepare_output(root, overwrite)

    rng = np.random.default_rng(seed)
    scene = _scene(height, width, rng)
    when = _dates(num_dates, name_style == "year", rng)
    half = width // 2
    spans = [(0, width)] if tiles == 1 else [(0, half + tile_overlap), (half, width)]
    grid = _Grid(epsg, res, origin, tuple(spans), name_style == "year")
    files: list[Path] = []
    fractions: list[float] = []
    for index, moment in enumerate(when):
        pixels, share = _date_pixels(scene, moment, (seed, index), num_bands, cloudy_date == index)
        fractions.append(share)
        files += _write_date(root, pixels, moment, grid)
    return RasterSampleSummary(
        root=root,
        files=tuple(sorted(files)),
        dates=tuple(f"{m:%Y-%m-%d}" for m in when),
        epsg=epsg,
        res=res,
        origin=origin,
        size=(height, width),
        num_bands=num_bands,
        nodata=0,
        nodata_fraction=tuple(fractions),
    )
