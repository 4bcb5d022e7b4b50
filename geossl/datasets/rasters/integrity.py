"""Corrupt GeoTIFFs of a raster stack: found cheaply, skipped and counted, never a traceback.

A GeoTIFF whose header opens but whose tiles are cut (an interrupted copy) used to crash
pretraining with a rasterio traceback that named the file only inside a chained GDAL error. Now:

* [`truncated_blocks`][geossl.datasets.rasters.blocks.truncated_blocks] compares the end of each
  band's last tile (or strip), read from the TIFF tags, with the file's size: a few tag reads per
  file at indexing, no pixel read. A truncated file is left out of the index
  ([`drop_bad_files`][geossl.datasets.rasters.integrity.drop_bad_files]) and counted;
* a file whose tiles fail to read later (in the validity scan, the band statistics or the
  training loader) is counted with its GDAL message, warned about by name and left out of this
  process's queries ([`exclude_files`][geossl.datasets.rasters.integrity.exclude_files]); past a
  limit the run stops with one line naming the file.

Counts and limits are those of fMoW's bad samples
([`geossl.datasets.skips`][geossl.datasets.skips]).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rasterio.errors import RasterioError

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.rasters.date_index import files_of_date
from geossl.datasets.skips import RasterSkipReport, check_bad_fraction, print_skip_summary

if TYPE_CHECKING:
    from geossl.datasets.rasters.dataset import PatchQuery, TimeSeriesRasters
    from geossl.datasets.rasters.files import RasterFileInfo

__all__ = [
    "READ_ERRORS",
    "TRUNCATED_FILE",
    "UNREADABLE_TILES",
    "drop_bad_files",
    "exclude_files",
    "files_of_query",
    "read_problem",
    "skip_unreadable",
]

#: What a failed pixel read raises (GDAL's error is chained to a ``RasterioIOError``).
READ_ERRORS: tuple[type[BaseException], ...] = (RasterioError, OSError)

#: The reason of a file whose last tile lies past its end.
TRUNCATED_FILE = "truncated file"

#: The reason of a file whose tiles fail to read.
UNREADABLE_TILES = "unreadable tiles"


def drop_bad_files(
    infos: Sequence[RasterFileInfo], report: RasterSkipReport
) -> list[RasterFileInfo]:
    """The files without a ``problem``; the others are counted in ``report``.

    Raises:
        BadDatasetError: when every file has a problem.
    """
    good = []
    for info in infos:
        if info.problem:
            report.add_bad(TRUNCATED_FILE, info.path)
        else:
            good.append(info)
    if not good:
        raise BadDatasetError(
            report.root, f"no readable GeoTIFF; most common problem: {report.worst_reason()}"
        )
    return good


def files_of_query(rasters: TimeSeriesRasters, query: PatchQuery) -> list[str]:
    """The files a query of one date reads (its date's files that intersect it)."""
    x, y, t = rasters._resolve(query)
    date = rasters.date_of(t)
    if date is None:
        return []
    paths, bounds, _ = rasters._file_table()
    rows, _ = files_of_date(bounds, rasters.file_dates, date, x, y)
    if rasters.band_files is None:
        return [paths[i] for i in rows]
    return [f for i in rows for f in rasters.band_files[paths[i]]]


def read_problem(error: BaseException, files: Sequence[str]) -> tuple[str, str]:
    """``(file, GDAL's first line)`` of a failed read: the file the message names, else the first.

    rasterio raises "Read failed. See previous exception for details." with GDAL's message (which
    names the file by its base name only) chained as the cause.
    """
    cause = error.__cause__ or error.__context__ or error
    message = (str(cause).strip() or type(cause).__name__).splitlines()[0]
    named = [f for f in files if os.path.basename(f) in message]
    return (named or list(files) or ["?"])[0], message


def exclude_files(rasters: TimeSeriesRasters, files: Sequence[str]) -> None:
    """Leave ``files`` out of this process's queries (their date id becomes -1).

    A query that only they covered then raises ``IndexError`` (no file of the date), which the
    readers treat as a failed read.
    """
    paths = rasters._file_table()[0]
    if rasters.band_files is not None:  # one file per band: drop the products holding them
        bad = set(files)
        rows = [i for i, p in enumerate(paths) if bad & set(rasters.band_files[p])]
    else:
        positions = {p: i for i, p in enumerate(paths)}
        rows = [positions[f] for f in files if f in positions]
    if rows:
        rasters.file_dates = rasters.file_dates.copy()
        rasters.file_dates[rows] = -1


def skip_unreadable(
    rasters: TimeSeriesRasters, unreadable: dict[str, str], max_bad_fraction: float
) -> None:
    """Count the files whose tiles failed to read in a scan, leave them out, report the skips.

    Args:
        rasters: the stack (its `skipped` report is updated).
        unreadable: file -> GDAL's message (`ValidityGrid.unreadable`).
        max_bad_fraction: the largest share of skipped files tolerated.

    Raises:
        BadDatasetError: one line naming the paths and the most common problem, past
            ``max_bad_fraction``.
    """
    report = rasters.skipped
    for path, message in unreadable.items():
        report.add_bad(UNREADABLE_TILES, path)
        warnings.warn(f"{path}: {UNREADABLE_TILES} ({message}); skipped", RuntimeWarning, 3)
    exclude_files(rasters, list(unreadable))
    check_bad_fraction(report.root, report, max_bad_fraction, "raster files")
    if report.num_bad:
        print_skip_summary(report.summary_lines(), report, progress=True)
