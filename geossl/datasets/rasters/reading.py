"""Reading a window of the files of a raster time series, faster than torchgeo's merge.

[`open_on_crs`][geossl.datasets.rasters.reading.open_on_crs] opens a file, warped (``WarpedVRT``)
only when its CRS differs from the dataset's or it is not north-up;
[`read_window`][geossl.datasets.rasters.reading.read_window] reads one file at a query's bounds and
resolution with a direct windowed read (an integer window on the file's grid), identical to what
[`merge_files`][geossl.datasets.rasters.reading.merge_files] (``rasterio.merge``, for queries over
several files) gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.merge
import rasterio.windows
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from torch import Tensor
from torchgeo.datasets.utils import array_to_tensor

__all__ = ["WindowReadInfo", "merge_files", "open_on_crs", "read_window", "window_read_info"]

#: Per file: the transform's ``(a, c, e, f)``, the 1-based bands read and whether the read is masked
#: (an internal mask or alpha band and no nodata value).
WindowReadInfo = tuple[float, float, float, float, list[int], bool]


def open_on_crs(filepath: Any, crs: Any, resampling: Resampling) -> Any:
    """Open a file, warped to ``crs`` only when its CRS differs or it is not north-up.

    Files in ``crs`` are read directly: ``rasterio.merge`` reads them at the query's grid and
    resolution (resampling with ``resampling`` where the grids differ).

    Args:
        filepath: the file.
        crs: the dataset's rasterio CRS.
        resampling: the resampling of the warp.

    Returns:
        A rasterio dataset or a ``WarpedVRT`` over it.
    """
    src = rasterio.open(filepath)
    t = src.transform
    north_up = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
    if src.crs == crs and north_up:
        return src
    vrt = WarpedVRT(src, crs=crs, resampling=resampling)
    src.close()  # as torchgeo does: the VRT keeps its own reference to the file
    return vrt


def merge_files(
    handles: Sequence[Any],
    x: slice,
    y: slice,
    band_indexes: Sequence[int] | None,
    resampling: Resampling,
) -> Tensor:
    """Mosaic open files at the bounds and resolution of ``x`` and ``y`` (``rasterio.merge``).

    Args:
        handles: the open files, the first one wins where they overlap.
        x: ``slice(xmin, xmax, xres)``.
        y: ``slice(ymin, ymax, yres)``.
        band_indexes: 1-based bands to read, ``None`` for all.
        resampling: the resampling where the grids differ.

    Returns:
        ``[C, H, W]`` (torchgeo's ``array_to_tensor`` dtypes: uint16 becomes int32).
    """
    dest, _ = rasterio.merge.merge(
        list(handles),
        (x.start, y.start, x.stop, y.stop),
        (x.step, y.step),
        indexes=band_indexes,
        resampling=resampling,
    )
    return array_to_tensor(dest)


def window_read_info(handle: Any, band_indexes: Sequence[int] | None) -> WindowReadInfo:
    """What `read_window` needs of an open file, computed once per file."""
    t = handle.transform
    indexes = list(band_indexes) if band_indexes else list(range(1, handle.count + 1))
    masked = handle.nodata is None and any(
        flag.name != "all_valid" for flag in handle.mask_flag_enums[indexes[0] - 1]
    )
    return (t.a, t.c, t.e, t.f, indexes, masked)


def read_window(
    handle: Any,
    info: WindowReadInfo,
    x: slice,
    y: slice,
    resampling: Resampling,
    fill_value: float,
) -> Tensor:
    """Read one open file at the bounds and resolution of ``x`` and ``y`` (what merge gives).

    Args:
        handle: the open file.
        info: its [`window_read_info`][geossl.datasets.rasters.reading.window_read_info].
        x: ``slice(xmin, xmax, xres)``.
        y: ``slice(ymin, ymax, yres)``.
        resampling: the resampling of a fractional or rescaled window.
        fill_value: the value of masked pixels.

    Returns:
        ``[C, H, W]`` (torchgeo's ``array_to_tensor`` dtypes).
    """
    a, c, e, f, indexes, masked = info
    height = round((y.stop - y.start) / y.step)
    width = round((x.stop - x.start) / x.step)
    col, row = (x.start - c) / a, (y.stop - f) / e
    cols, rows = (x.stop - x.start) / a, (y.start - y.stop) / e
    same_scale = max(abs(cols - width), abs(rows - height)) < 1e-6
    on_grid = max(abs(col - round(col)), abs(row - round(row))) < 1e-6
    if same_scale and (on_grid or resampling == Resampling.nearest):
        # The file's own pixels, an integer window (much faster than a fractional one). Off the
        # grid by a fraction of a pixel, nearest resampling at scale 1 picks exactly these.
        window = rasterio.windows.Window(
            math.floor(col + 0.5), math.floor(row + 0.5), width, height
        )
    else:  # GDAL resamples a fractional or rescaled window
        window = rasterio.windows.Window(col, row, cols, rows)
    data = handle.read(
        indexes,
        window=window,
        out_shape=(len(indexes), height, width),
        resampling=resampling,
        masked=masked,
    )
    if masked:  # an internal mask or alpha band: merge fills the masked pixels
        data = data.filled(fill_value)
    return array_to_tensor(np.asarray(data))
