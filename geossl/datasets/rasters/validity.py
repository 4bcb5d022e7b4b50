"""Where each date of a raster time series has data: `ValidityGrid` and its sampling.

[`sample_validity`][geossl.datasets.rasters.validity.sample_validity] reads each file once,
decimated to about one pixel per cell
([`decimated_mask`][geossl.datasets.rasters.validity.decimated_mask]), and marks the cell centres
whose nearest decimated pixel has data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning, RasterioError

__all__ = ["ValidityGrid", "decimated_mask", "sample_validity"]


@dataclass(frozen=True)
class ValidityGrid:
    """Where each date has data, sampled at the centres of a regular grid of cells.

    Cell ``(r, c)`` has its centre at ``(left + (c + 0.5) * cell_x, top - (r + 0.5) * cell_y)`` in
    the dataset's CRS; ``valid[d, r, c]`` is ``True`` when a file of date ``d`` covers that point
    and its mask (nodata value, internal mask or alpha band of the first selected band) says the
    pixel there has data.

    Attributes:
        valid: bool ``[D, H, W]``.
        left: x of the grid's left edge.
        top: y of the grid's top edge.
        cell_x: cell width in CRS units.
        cell_y: cell height in CRS units.
        unreadable: files whose mask failed to read -> GDAL's message (they count as no data).
    """

    valid: npt.NDArray[np.bool_]
    left: float
    top: float
    cell_x: float
    cell_y: float
    unreadable: dict[str, str] = field(default_factory=dict)


def decimated_mask(
    handle: Any, band: int, cell_x: float, cell_y: float, nodata: float | None
) -> tuple[npt.NDArray[np.bool_], Any]:
    """Read a file's mask at about one pixel per cell; returns ``(mask [h, w], transform)``.

    Args:
        handle: the open file.
        band: the 1-based band whose mask is read.
        cell_x: cell width in CRS units.
        cell_y: cell height in CRS units.
        nodata: the dataset's ``nodata``, used when the file declares no nodata value or mask.
    """
    fx = max(1, int(cell_x / abs(handle.transform.a)))
    fy = max(1, int(cell_y / abs(handle.transform.e)))
    shape = (max(1, math.ceil(handle.height / fy)), max(1, math.ceil(handle.width / fx)))
    declares = handle.nodata is not None or any(
        flag.name != "all_valid" for flag in handle.mask_flag_enums[band - 1]
    )
    if nodata is not None and not declares:
        data = handle.read(band, out_shape=shape, resampling=Resampling.nearest)
        mask = data != nodata
    else:
        with warnings.catch_warnings():
            # A 4-band uint8 file with a nodata value may also look like RGBA: the nodata value
            # wins, as it does in rasterio.merge's reads, which is what we want to mirror.
            warnings.simplefilter("ignore", NodataShadowWarning)
            mask = handle.read_masks(band, out_shape=shape, resampling=Resampling.nearest) > 0
    scale = rasterio.Affine.scale(handle.width / shape[1], handle.height / shape[0])
    return np.asarray(mask, dtype=bool), handle.transform @ scale


def sample_validity(
    extent: tuple[float, float, float, float],
    files: Sequence[tuple[str, int]],
    num_dates: int,
    open_file: Callable[[str], Any],
    band: int,
    nodata: float | None,
    cell: tuple[float, float],
    max_cells: int,
) -> ValidityGrid:
    """Sample where each date has data on a grid of ``cell``-sized cells over ``extent``.

    Args:
        extent: ``(xmin, ymin, xmax, ymax)`` of the files.
        files: ``(path, date id)`` of every file.
        num_dates: the number of dates ``D``.
        open_file: opens a file on the dataset's CRS (closed here after the read).
        band: the 1-based band whose mask is read.
        nodata: the dataset's ``nodata`` (see
            [`decimated_mask`][geossl.datasets.rasters.validity.decimated_mask]).
        cell: ``(cell_x, cell_y)`` in CRS units.
        max_cells: cap on ``H * W``; with more cells the cells grow (same aspect).

    Returns:
        The [`ValidityGrid`][geossl.datasets.rasters.validity.ValidityGrid] (``valid`` is bool
        ``[D, H, W]``).
    """
    left, bottom, right, top = extent
    cell_x, cell_y = float(cell[0]), float(cell[1])
    width = max(1, math.ceil((right - left) / cell_x))
    height = max(1, math.ceil((top - bottom) / cell_y))
    if width * height > max_cells:
        grow = math.sqrt(width * height / max_cells)
        cell_x, cell_y = cell_x * grow, cell_y * grow
        width = max(1, math.ceil((right - left) / cell_x))
        height = max(1, math.ceil((top - bottom) / cell_y))
    xs = left + (np.arange(width) + 0.5) * cell_x  # [W] cell centres
    ys = top - (np.arange(height) + 0.5) * cell_y  # [H]
    valid = np.zeros((num_dates, height, width), dtype=bool)
    unreadable: dict[str, str] = {}
    for path, date in files:
        handle = open_file(path)
        try:
            mask, transform = decimated_mask(handle, band, cell_x, cell_y, nodata)
        except (RasterioError, OSError) as error:  # cut tiles: no data here, counted by the caller
            cause = error.__cause__ or error
            unreadable[path] = (str(cause).strip() or type(cause).__name__).splitlines()[0]
            continue
        finally:
            handle.close()
        cols = np.floor((xs - transform.c) / transform.a).astype(np.int64)
        rows = np.floor((ys - transform.f) / transform.e).astype(np.int64)
        col_in = np.flatnonzero((cols >= 0) & (cols < mask.shape[1]))
        row_in = np.flatnonzero((rows >= 0) & (rows < mask.shape[0]))
        if len(col_in) and len(row_in):
            grid = np.ix_(row_in, col_in)
            valid[date][grid] |= mask[np.ix_(rows[row_in], cols[col_in])]
    return ValidityGrid(valid, left, top, cell_x, cell_y, unreadable)
