"""The chip grid of a raster, windowed chip reads and chip footprints in EPSG:4326.

A raster of ``W x H`` pixels is cut into chips of ``chip_size x chip_size`` pixels every ``stride``
pixels, starting at pixel ``(0, 0)``: chip ``(row, col)`` is the pixel window
``(col * stride, row * stride, chip_size, chip_size)`` (column offset, row offset, width, height).
The grid has just enough chips to cover the raster, and no chip wholly outside it::

    n_cols = 1 if W <= chip_size else min(ceil((W - chip_size) / stride) + 1, ceil(W / stride))

(the second term only counts when ``stride > chip_size``, where chips leave gaps between them), so
the last row and column of chips may extend past the raster's edge; the part outside is read as
nodata (and counts towards the chip's nodata fraction).

At chip resolution each chip is one cell of ``stride x stride`` pixels centred on the chip's centre
([`ChipGrid.cell_transform`][geossl.embed.chips.ChipGrid.cell_transform]): with ``stride ==
chip_size`` the cells are the chips themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from affine import Affine

from geossl.utils.checks import check_at_least

__all__ = [
    "ChipBlock",
    "ChipGrid",
    "chip_footprints",
    "normalize_chips",
    "read_chip_block",
    "split_antimeridian",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ChipGrid:
    """A regular grid of square chips over a raster.

    Attributes:
        width: raster width in pixels.
        height: raster height in pixels.
        chip_size: chip side in pixels (the model's input size).
        stride: step between neighbouring chips in pixels (``chip_size`` for no overlap).
    """

    width: int
    height: int
    chip_size: int
    stride: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"raster size must be positive, got {self.width} x {self.height}")
        check_at_least("chip_size", self.chip_size, 1)
        check_at_least("stride", self.stride, 1)

    @staticmethod
    def _count(size: int, chip: int, stride: int) -> int:
        if size <= chip:
            return 1
        # With stride > chip the covering count would add a chip that starts past the edge.
        return min(math.ceil((size - chip) / stride) + 1, math.ceil(size / stride))

    @property
    def n_rows(self) -> int:
        """Number of chip rows."""
        return self._count(self.height, self.chip_size, self.stride)

    @property
    def n_cols(self) -> int:
        """Number of chip columns."""
        return self._count(self.width, self.chip_size, self.stride)

    @property
    def num_chips(self) -> int:
        """``n_rows * n_cols``."""
        return self.n_rows * self.n_cols

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Pixel window ``(col_off, row_off, width, height)`` of chip ``(row, col)``."""
        return col * self.stride, row * self.stride, self.chip_size, self.chip_size

    def cell_transform(self, transform: Affine) -> Affine:
        r"""Affine transform of the chip-resolution raster (one pixel per chip).

        Pixel ``(i, j)`` of the result covers the ``stride x stride`` cell centred on the centre
        of chip ``(i, j)``:

        $$
        T_{cell} = T \cdot \mathrm{translate}(o, o) \cdot \mathrm{scale}(s), \quad
        o = (c - s) / 2
        $$

        with ``c`` the chip size and ``s`` the stride, so pixel centres are chip centres and the
        cells tile the plane without gaps.

        Args:
            transform: the source raster's transform (pixel to map coordinates).

        Returns:
            The transform of the chip-resolution grid, in the same CRS.
        """
        offset = (self.chip_size - self.stride) / 2.0
        return transform @ Affine.translation(offset, offset) @ Affine.scale(self.stride)


@dataclass(slots=True)
class ChipBlock:
    """A group of chips read together, ready for the model.

    Only the chips that are kept (nodata fraction at most the threshold) carry pixels; the skipped
    ones are counted in ``num_considered - len(rows)``.

    Attributes:
        source: index of the source (raster or fMoW folder) in the run.
        pixels: ``float32 [N, C, chip, chip]`` normalised pixels of the kept chips.
        rows: ``[N]`` chip row in the source's grid (``-1`` for fMoW images).
        cols: ``[N]`` chip column (``-1`` for fMoW images).
        windows: ``[N, 4]`` pixel windows ``(col_off, row_off, width, height)``.
        nodata_fraction: ``[N]`` fraction of nodata pixels in each kept chip.
        num_considered: chips of the grid this block covered (kept + skipped).
        items: per-chip extras for the writers (footprints, paths, times), or None.
        embeddings: ``float32 [N, D]`` once the model has run.
        invalid: fMoW images skipped because their JSON or image was unusable, by reason.
        unit: position of the block's work unit in a dataset run
            ([`geossl.embed.dataset`][geossl.embed.dataset]); -1 otherwise.
    """

    source: int
    pixels: FloatArray
    rows: IntArray
    cols: IntArray
    windows: IntArray
    nodata_fraction: FloatArray
    num_considered: int
    items: dict[str, Any] | None = None
    embeddings: FloatArray | None = None
    invalid: dict[str, int] = field(default_factory=dict)
    unit: int = -1

    @property
    def num_kept(self) -> int:
        """Chips kept (embedded)."""
        return len(self.rows)


def normalize_chips(
    raw: npt.NDArray[Any],
    valid: npt.NDArray[np.bool_] | None,
    *,
    scale: float,
    mean: Sequence[float],
    std: Sequence[float],
) -> FloatArray:
    r"""Scale, clip and normalise raw chips the way the pretraining pipeline does.

    $$
    x = \frac{\mathrm{clip}(v \cdot \mathrm{scale}, 0, 1) - \mu_b}{\sigma_b}
    $$

    per band ``b``; invalid (nodata or NaN) pixels are set to 0, i.e. the band mean.

    Args:
        raw: ``[N, C, h, w]`` raw pixel values (any numeric dtype).
        valid: ``[N, h, w]`` validity mask, or None when every pixel is valid.
        scale: factor that maps raw values to ``[0, 1]`` (``1/255`` for 8-bit imagery).
        mean: per-band mean in ``[0, 1]`` units (``C`` values).
        std: per-band standard deviation (``C`` values).

    Returns:
        ``float32 [N, C, h, w]``.
    """
    out = raw.astype(np.float32, copy=True)
    out *= np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    mu = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    sigma = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    out -= mu
    out /= sigma
    bad = np.isnan(out)
    if valid is not None:
        bad |= ~valid[:, None, :, :]
    out[bad] = 0.0
    return out


def read_chip_block(
    dataset: Any,
    grid: ChipGrid,
    row: int,
    col_start: int,
    col_stop: int,
    bands: Sequence[int],
    *,
    dtype: str | None = None,
    all_valid: bool = False,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Read chips ``(row, col_start .. col_stop - 1)`` with one windowed read.

    The union of the chip windows is clipped to the raster, read once (bands and mask), and placed
    into a zero-filled array; pixels outside the raster are invalid. This avoids rasterio's
    ``boundless`` reads (which go through a warped VRT).

    Args:
        dataset: an open rasterio dataset.
        grid: the raster's chip grid.
        row: the chip row.
        col_start: first chip column.
        col_stop: one past the last chip column.
        bands: 1-based band indexes to read.
        dtype: the dtype to read as (default: the first band's).
        all_valid: skip reading the mask (the raster has no nodata, alpha or mask band).

    Returns:
        ``raw [N, C, chip, chip]`` in the raster's dtype and ``valid [N, chip, chip]`` (bool), with
        ``N = col_stop - col_start``.
    """
    from rasterio.windows import Window

    chip, stride = grid.chip_size, grid.stride
    x0 = col_start * stride
    y0 = row * stride
    span_w = (col_stop - col_start - 1) * stride + chip
    span_h = chip
    # The part of the span inside the raster.
    in_w = max(0, min(span_w, grid.width - x0))
    in_h = max(0, min(span_h, grid.height - y0))
    out_dtype = np.dtype(dtype if dtype is not None else dataset.dtypes[bands[0] - 1])
    span = np.zeros((len(bands), span_h, span_w), dtype=out_dtype)
    span_valid = np.zeros((span_h, span_w), dtype=bool)
    if in_w > 0 and in_h > 0:
        window = Window(x0, y0, in_w, in_h)
        span[:, :in_h, :in_w] = dataset.read(list(bands), window=window, out_dtype=out_dtype)
        if all_valid:
            span_valid[:in_h, :in_w] = True
        else:
            span_valid[:in_h, :in_w] = dataset.dataset_mask(window=window) > 0
        if out_dtype.kind == "f":
            span_valid &= np.isfinite(span).all(axis=0)
    n = col_stop - col_start
    raw = np.empty((n, len(bands), chip, chip), dtype=out_dtype)
    valid = np.empty((n, chip, chip), dtype=bool)
    for k in range(n):
        x = k * stride
        raw[k] = span[:, :, x : x + chip]
        valid[k] = span_valid[:, x : x + chip]
    return raw, valid


def _ring_points(
    windows: IntArray, densify: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pixel coordinates of each window's boundary, ``densify`` points per edge, clockwise."""
    t = np.arange(densify, dtype=np.float64) / densify  # [k] in [0, 1)
    c0 = windows[:, 0:1].astype(np.float64)
    r0 = windows[:, 1:2].astype(np.float64)
    w = windows[:, 2:3].astype(np.float64)
    h = windows[:, 3:4].astype(np.float64)
    # top (left to right), right (top to bottom), bottom (right to left), left (bottom to top)
    xs = np.concatenate([c0 + t * w, c0 + w + 0 * t, c0 + w - t * w, c0 + 0 * t], axis=1)
    ys = np.concatenate([r0 + 0 * t, r0 + t * h, r0 + h + 0 * t, r0 + h - t * h], axis=1)
    return xs, ys


def split_antimeridian(polygon: shapely.Polygon) -> shapely.Geometry:
    """Split a lon/lat polygon whose longitudes run past +-180 into a MultiPolygon.

    Args:
        polygon: a polygon with *unwrapped* longitudes (continuous across the antimeridian, e.g.
            179.9 .. 180.1).

    Returns:
        The polygon itself when it lies within ``[-180, 180]``, else the MultiPolygon of its parts
        on each side, shifted back into ``[-180, 180]``.
    """
    minx, _, maxx, _ = polygon.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return polygon
    parts: list[shapely.Geometry] = []
    for shift in (-360.0, 0.0, 360.0):
        window = shapely.box(-180.0 - shift, -90.0, 180.0 - shift, 90.0)
        piece = shapely.intersection(polygon, window)
        if not piece.is_empty and piece.area > 0:
            parts.append(shapely.transform(piece, lambda xy, s=shift: xy + np.array([s, 0.0])))
    polygons = [
        geom
        for part in parts
        for geom in (part.geoms if isinstance(part, shapely.MultiPolygon) else [part])
        if isinstance(geom, shapely.Polygon)
    ]
    return shapely.MultiPolygon(polygons) if len(polygons) > 1 else polygons[0]


def chip_footprints(
    transform: Affine,
    crs: Any,
    windows: IntArray,
    *,
    densify: int = 4,
) -> tuple[list[shapely.Geometry | None], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Footprints of pixel windows as lon/lat polygons (EPSG:4326, x = longitude).

    Each window's boundary is sampled with ``densify`` points per edge (corners included) in pixel
    coordinates, mapped to the raster's CRS with ``transform`` and reprojected to EPSG:4326 with
    `rasterio.warp.transform` (GDAL/PROJ, longitude first). Longitudes are unwrapped around
    each ring's first vertex, so a chip across the antimeridian becomes a two-part MultiPolygon
    ([`split_antimeridian`][geossl.embed.chips.split_antimeridian]). Neighbouring chips sample their
    shared edge at the same points, so the footprints of a grid tile the raster's footprint without
    gaps.

    Args:
        transform: the raster's affine transform.
        crs: the raster's CRS (anything rasterio accepts).
        windows: ``[N, 4]`` windows ``(col_off, row_off, width, height)``.
        densify: points per edge (>= 1; 1 gives the 4 corners only).

    Returns:
        ``(footprints, lon, lat)``: the polygons (None where the reprojection failed, e.g. outside
        the projection's domain) and the lon/lat of each window's centre (NaN where it failed).
    """
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp_transform

    check_at_least("densify", densify, 1)
    n = len(windows)
    if n == 0:
        return [], np.empty(0), np.empty(0)
    px, py = _ring_points(windows, densify)  # [n, 4k]
    cx = windows[:, 0] + windows[:, 2] / 2.0
    cy = windows[:, 1] + windows[:, 3] / 2.0
    all_px = np.concatenate([px.ravel(), cx])
    all_py = np.concatenate([py.ravel(), cy])
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    xs = a * all_px + b * all_py + c
    ys = d * all_px + e * all_py + f
    src = CRS.from_user_input(crs)
    if src.is_geographic:
        # A chip past the edge of a global raster runs past a pole, where there is nothing.
        ys = np.clip(ys, -90.0, 90.0)
    if src == CRS.from_epsg(4326):
        lons, lats = xs, ys
    else:
        out_x, out_y = warp_transform(src, "EPSG:4326", xs.tolist(), ys.tolist())
        lons, lats = np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)
    m = px.shape[1]
    ring_lon = lons[: n * m].reshape(n, m)
    ring_lat = lats[: n * m].reshape(n, m)
    centre_lon = (lons[n * m :] + 180.0) % 360.0 - 180.0
    centre_lat = lats[n * m :].copy()
    # A ring that jumps by ~360 degrees crosses the antimeridian: unwrap its longitudes along the
    # ring, from the first vertex (other rings keep PROJ's values bit for bit, so neighbours share
    # edges exactly). Unwrapping step by step, not around the first vertex, keeps a chip wider
    # than 180 degrees (a coarse global raster) whole.
    with np.errstate(invalid="ignore"):  # failed points are inf; those rings are dropped below
        jumps = (ring_lon.max(axis=1) - ring_lon.min(axis=1)) > 180.0
        if jumps.any():
            ring_lon[jumps] = np.unwrap(ring_lon[jumps], period=360.0, axis=1)
    finite = np.isfinite(ring_lon) & np.isfinite(ring_lat) & (np.abs(ring_lat) <= 90.0)
    ok = np.asarray(finite.all(axis=1), dtype=bool)
    coords = np.stack([ring_lon, ring_lat], axis=-1)  # [n, m, 2]
    footprints: list[shapely.Geometry | None] = []
    polygons = shapely.polygons(np.where(ok[:, None, None], coords, 0.0))
    for i, polygon in enumerate(polygons):
        if not ok[i]:
            footprints.append(None)
            continue
        footprints.append(split_antimeridian(polygon))
    bad = ~np.isfinite(centre_lon) | ~np.isfinite(centre_lat)
    centre_lon[bad] = np.nan
    centre_lat[bad] = np.nan
    return footprints, centre_lon, centre_lat
