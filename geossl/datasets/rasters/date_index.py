"""The per-date index of a raster time series: the files' dates and the files of one date.

torchgeo's ``RasterDataset`` indexes files in a GeoDataFrame whose index is each file's date
interval; [`dated_index`][geossl.datasets.rasters.date_index.dated_index] puts the files' own dates
there (torchgeo's match-all regex gives none) and
[`index_dates`][geossl.datasets.rasters.date_index.index_dates] numbers the distinct dates. A query
of one date then selects its files from a cached bounds table
([`files_of_date`][geossl.datasets.rasters.date_index.files_of_date]), without the GeoDataFrame's
cost.

Examples:
    >>> import numpy as np
    >>> bounds = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    >>> rows, inside = files_of_date(bounds, np.array([0, 0]), 0, slice(6, 9, 1), slice(2, 4, 1))
    >>> rows.tolist(), inside
    ([0, 1], True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from geopandas import GeoDataFrame

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.rasters.files import RasterFileInfo, unix_seconds

__all__ = ["dated_index", "files_of_date", "index_dates"]


def dated_index(
    index: GeoDataFrame, indexed: Sequence[RasterFileInfo], searched: str
) -> GeoDataFrame:
    """Torchgeo's index with the datetimes of its match-all regex replaced by the files' dates.

    Args:
        index: torchgeo's index (``filepath`` column, footprint geometries).
        indexed: the scanned infos of the indexed files.
        searched: the paths searched (for the error message).

    Returns:
        The index, its rows in the same order, indexed by the closed date intervals.

    Raises:
        BadDatasetError: naming a file that torchgeo did not index.
    """
    by_path = {info.path: info for info in indexed}
    filepaths = [str(p) for p in index["filepath"]]
    if sorted(filepaths) != sorted(by_path):  # pragma: no cover - torchgeo skipped a file
        missing = sorted(set(by_path) - set(filepaths))
        raise BadDatasetError(missing[0] if missing else searched, "torchgeo could not index")
    intervals = pd.IntervalIndex.from_arrays(
        [by_path[p].mint for p in filepaths],
        [by_path[p].maxt for p in filepaths],
        closed="both",
        name="datetime",
    )
    return GeoDataFrame(
        {"filepath": filepaths},
        index=intervals,
        geometry=index.geometry.values,
        crs=index.crs,
    )


def index_dates(
    index: GeoDataFrame,
) -> tuple[pd.IntervalIndex, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct dates of a dated index, their times and each row's date id.

    Args:
        index: the index of [`dated_index`][geossl.datasets.rasters.date_index.dated_index].

    Returns:
        The sorted distinct date intervals ``[D]``, each one's start in unix seconds (int64
        ``[D]``) and each row's date id (an index into the intervals, int64 ``[N]``).
    """
    dates = pd.IntervalIndex(index.index.unique()).sort_values()
    times = np.array([unix_seconds(d.left) for d in dates], dtype=np.int64)
    date_ids = {(d.left, d.right): i for i, d in enumerate(dates)}
    file_dates = np.array([date_ids[(d.left, d.right)] for d in index.index], dtype=np.int64)
    return dates, times, file_dates


def files_of_date(
    bounds: npt.NDArray[np.float64],
    file_dates: npt.NDArray[np.int64],
    date: int,
    x: slice,
    y: slice,
) -> tuple[npt.NDArray[np.intp], bool]:
    """The files of ``date`` that intersect a query, and whether the first one covers it.

    Args:
        bounds: each file's footprint ``(xmin, ymin, xmax, ymax)`` ``[N, 4]``.
        file_dates: each file's date id ``[N]``.
        date: the date id.
        x: the query's ``slice(xmin, xmax, xres)``.
        y: the query's ``slice(ymin, ymax, yres)``.

    Returns:
        The rows (indexes into ``bounds``) ``[K]``, and ``True`` when the first of them covers the
        query (up to a millionth of a pixel); ``False`` when there are none.
    """
    b = bounds
    rows = np.flatnonzero(
        (file_dates == date)
        & (b[:, 0] < x.stop)
        & (b[:, 2] > x.start)
        & (b[:, 1] < y.stop)
        & (b[:, 3] > y.start)
    )
    if len(rows) == 0:
        return rows, False
    eps_x, eps_y = 1e-6 * abs(x.step), 1e-6 * abs(y.step)
    inside = bool(
        b[rows[0], 0] <= x.start + eps_x
        and b[rows[0], 2] >= x.stop - eps_x
        and b[rows[0], 1] <= y.start + eps_y
        and b[rows[0], 3] >= y.stop - eps_y
    )
    return rows, inside
