r"""Your own co-located GeoTIFF time series: `TimeSeriesRasters`, a per-date index.

Geography-aware pretraining (Ayush et al., ICCV 2021) needs *temporal positives*, two acquisitions
of the same place, and *geo labels*, a cluster of where the image is: for a stack of rasters over
the same places (Sentinel-2, Landsat, NAIP, ...) they come from the files themselves.
`TimeSeriesRasters` indexes GeoTIFFs by footprint and **acquisition date**, warps them to one CRS
and reads one date at a time; `RasterTemporalPairs` turns a pair of its queries into geossl's pair
sample. The torchgeo 0.8.1 ``RasterDataset`` defects its methods work around are listed in
[`geossl.datasets.rasters`][geossl.datasets.rasters].
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import rasterio
import shapely
import torch
from pyproj import CRS, Transformer
from torch import Tensor
from torchgeo.datasets import RasterDataset
from torchgeo.datasets.utils import GeoSlice

from geossl.datasets.rasters.date_index import dated_index, files_of_date, index_dates
from geossl.datasets.rasters.files import (
    check_band_arguments,
    check_res,
    check_same_kind,
    compile_date_regex,
    find_geotiffs,
    scan_band_products,
    scan_raster_file,
)
from geossl.datasets.rasters.integrity import drop_bad_files
from geossl.datasets.rasters.reading import (
    WindowReadInfo,
    merge_files,
    open_on_crs,
    read_window,
    window_read_info,
)
from geossl.datasets.rasters.validity import ValidityGrid, sample_validity
from geossl.datasets.skips import RasterSkipReport

__all__ = ["PatchQuery", "TimeSeriesRasters"]

#: A complete GeoSlice: ``(slice(xmin, xmax, xres), slice(ymin, ymax, yres), slice(tmin, tmax))``.
PatchQuery: TypeAlias = tuple[slice, slice, slice]


class TimeSeriesRasters(RasterDataset):
    """GeoTIFFs of the same places at several dates, indexed by footprint and acquisition date.

    Files are found under ``paths`` (folders are searched recursively) by extension
    (`extensions`). Each file's acquisition date is read from its name with
    ``filename_regex`` (named group ``date`` parsed with ``date_format``, or ``year``), else from
    its GeoTIFF tags (`DATE_TAGS`); the date is an interval (a whole day, or a whole year
    for a bare year). Files of one date form one acquisition (a mosaic when there are several); the
    dates, sorted, are `dates`.

    Every file must have a CRS and the same dtype; all files are warped to ``crs`` (default: the
    first file's, in sorted path order) and read at ``res`` (default: the first file's resolution
    in that CRS). A sample is torchgeo's ``{"image": [C, H, W], "crs", "bounds"}``; the image is
    uint8 when the files are 8-bit (no cast), else float32 with the files' values (torchgeo's
    convention; `RasterTemporalPairs` scales it to ``[0, 1]``).

    **One file per band** (``band_names``; torchgeo's ``separate_files``): ``filename_regex`` then
    also has a group ``band`` (default `DEFAULT_BAND_FILENAME_REGEX`: the last ``_`` token
    before the extension). The files whose names differ only in the ``band`` group form one
    *product* (e.g. a BigEarthNet patch folder, ``S2A_MSIL2A_20170613T101031_87_48_B01.tif`` ...
    ``_B12.tif``, ``_B8A.tif``), read as one raster with the bands in ``band_names`` order; files of
    other bands are ignored, and a product missing one of ``band_names`` is an error naming it. Each
    file holds one band; bands may have different resolutions: every band is read on the dataset's
    pixel grid at ``res`` (default: the finest band's resolution, e.g. 10 m for Sentinel-2),
    resampled with `resampling` (bilinear for non-8-bit data, GDAL's windowed read, so a 20 m
    pixel stays where it is on the ground: its 2 x 2 block of 10 m pixels averages back to it). The
    product is indexed by its finest band's file (`reference_band`), whose grid is the dataset's
    (`origin`) and whose mask is the one `validity` reads.

    Args:
        paths: folders to search or files to load.
        bands: 1-based band indexes to read (rasterio's convention), ``None`` for every band but
            alpha ([`model_bands`][geossl.utils.bands.model_bands]: an alpha band is a mask; every
            file must then have the same bands). Not with ``band_names``.
        filename_regex: regular expression (``re.VERBOSE``, searched anywhere in the file's base
            name) with a named group ``date`` (or ``year``), and ``band`` with ``band_names``;
            default `DEFAULT_FILENAME_REGEX` (`DEFAULT_BAND_FILENAME_REGEX` with
            ``band_names``).
        date_format: ``strptime`` format of the ``date`` group (default ``%Y%m%d``).
        crs: CRS to warp to (anything ``pyproj`` understands: ``"EPSG:32614"``, a WKT, an EPSG
            code), default the first file's.
        res: resolution in units of ``crs``, default the first file's (with ``band_names``: the
            finest band's).
        nodata: value that marks missing pixels in files that declare none (e.g. ``0`` for black
            scene borders; `validity` reads it). Files with a nodata value or a mask use theirs.
        transforms: a function applied to each sample.
        cache: keep the files open (per process) between queries.
        band_names: one file per band: the values of the ``band`` group to read, in this order
            (e.g. ``["B02", "B03", "B04", "B08"]``); ``None``: every file holds all its bands.

    Files whose tiles are cut are left out and counted in `skipped` (see `integrity`).

    Raises:
        DatasetNotFoundError: when no GeoTIFF (of ``band_names``) is found.
        BadDatasetError: naming the file, when a file cannot be read, has no CRS, has no
            acquisition date, lacks a requested band, or differs from the first file in dtype (or
            in band count with ``bands=None``); with ``band_names``, when a file name has no band,
            a band file holds more than one band, or a product lacks one of ``band_names``.
        ValueError: for invalid arguments.

    Example:
        >>> import tempfile
        >>> from geossl.synthetic.rasters import generate_raster_timeseries_sample
        >>> sample = generate_raster_timeseries_sample(tempfile.mkdtemp(), num_dates=5)
        >>> series = TimeSeriesRasters(sample.root, cache=False)
        >>> len(series.dates), series.crs.to_epsg(), series.res
        (5, 32614, (2.0, 2.0))
    """

    #: File extensions indexed (case-insensitive).
    extensions: tuple[str, ...] = (".tif", ".tiff")

    #: torchgeo selects files with ``filename_regex`` and skips the others silently; here every
    #: file with one of :attr:`extensions` is indexed and the constructor's ``filename_regex`` only
    #: reads dates (stored as :attr:`date_regex`), so torchgeo sees a match-all pattern.
    filename_regex = ".*"

    def __init__(
        self,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = "data",
        bands: Sequence[int] | None = None,
        filename_regex: str | None = None,
        date_format: str = "%Y%m%d",
        crs: Any = None,
        res: float | tuple[float, float] | None = None,
        nodata: float | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: bool = True,
        band_names: Sequence[str] | None = None,
    ) -> None:
        bands, names = check_band_arguments(bands, band_names)
        date_regex = compile_date_regex(filename_regex, names)
        check_res(res)
        if not isinstance(paths, str | os.PathLike):
            paths = list(paths)  # iterated more than once (an iterator would be used up)
        self.date_regex = date_regex
        self.date_format = date_format
        self.nodata = nodata
        self.paths = paths
        self._handles: dict[str, Any] = {}
        self._handles_pid = os.getpid()
        self._transformer: Transformer | None = None
        self._rio_crs: Any = None
        rio_crs = None if crs is None else rasterio.crs.CRS.from_user_input(crs)

        #: With ``band_names``: the band whose file indexes each product (the finest), else None.
        self.reference_band: str | None = None
        #: With ``band_names``: indexed file -> the product's band files in ``band_names`` order.
        self.band_files: dict[str, list[str]] | None = None
        # Each path is checked before torchgeo's listing (self.files) warns and skips a missing one.
        found = find_geotiffs(self._path_list(), lambda: self.files, self.extensions)
        #: Files left out of the index (their tiles are cut), counted by reason.
        self.skipped = RasterSkipReport(", ".join(map(str, self._path_list())), len(found))
        same_count = bands is None and names is None
        if names is None:
            scanned = [scan_raster_file(path, bands, date_regex, date_format) for path in found]
            indexed = infos = drop_bad_files(scanned, self.skipped)
            if bands is None and len(infos[0].model_bands) < infos[0].count:
                bands = list(infos[0].model_bands)  # alpha is a mask (model_bands), not a band
        else:
            products = scan_band_products(
                found, names, date_regex, date_format, self._path_list(), rio_crs, res
            )
            infos, indexed = products.infos, products.indexed
            rio_crs, res = products.crs, products.res
            self.reference_band, self.band_files = products.reference_band, products.band_files
        check_same_kind(infos, same_count=same_count)
        super().__init__(
            paths if names is None and len(indexed) == len(found) else [i.path for i in indexed],
            crs=rio_crs,
            res=res,
            bands=None,
            transforms=transforms,
            cache=cache,
        )
        self.paths = paths  # torchgeo stores what it was given (the indexed files)
        self.index = dated_index(self.index, indexed, str(self.paths))
        self.band_indexes = bands
        #: With ``band_names``: the band names read, in order (torchgeo's ``bands``), else None.
        self.band_names: list[str] | None = names
        if names is not None:  # torchgeo's separate-files mode, for its own __getitem__
            self.separate_files = True
            self.bands = tuple(names)
        first = indexed[0]
        self.file_dtype: str = first.dtype
        self.num_bands: int = (
            len(names) if names is not None else len(bands) if bands is not None else first.count
        )
        self.fill_value: float = first.nodata if first.nodata is not None else 0.0
        self._declared_nodata = first.nodata
        self._table: tuple[list[str], npt.NDArray[np.float64], CRS] | None = None
        self._read_info: dict[str, WindowReadInfo] = {}
        self._index_dates()

    def _index_dates(self) -> None:
        """Set `dates`, `times` and `file_dates` from `index`."""
        #: :attr:`dates`: the sorted distinct acquisition intervals (closed on both sides);
        #: :attr:`times`: each one's start in unix seconds, int64 ``[D]``; :attr:`file_dates`: the
        #: date id (into :attr:`dates`) of each row of :attr:`index`, int64 ``[N]``.
        self.dates, self.times, self.file_dates = index_dates(self.index)
        self._date_ids = {(d.left, d.right): i for i, d in enumerate(self.dates)}

    # ---------------------------------------------------------------------------------------------
    # indexing
    # ---------------------------------------------------------------------------------------------

    def _path_list(self) -> list[str | os.PathLike[str]]:
        return [self.paths] if isinstance(self.paths, str | os.PathLike) else list(self.paths)

    def _update_filepath(self, band: str, filepath: str) -> str:
        """The file of ``band`` in the product indexed by ``filepath`` (separate files)."""
        if self.band_files is None or self.band_names is None:
            return filepath
        return self.band_files[filepath][self.band_names.index(band)]

    @property
    def nodata_value(self) -> float | None:
        """Raw value of nodata pixels: the first file's declared nodata, else ``nodata``, else None.

        ``None`` means every pixel of a covered patch holds data (files that mark nodata only with
        an internal mask or alpha band are read with that mask filled with 0: pass ``nodata=0``).
        """
        return self._declared_nodata if self._declared_nodata is not None else self.nodata

    # ---------------------------------------------------------------------------------------------
    # torchgeo overrides
    # ---------------------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """uint8 for 8-bit files (read without a cast), else float32 (torchgeo's default)."""
        return torch.uint8 if getattr(self, "file_dtype", None) == "uint8" else torch.float32

    def _load_warp_file(self, filepath: Any) -> Any:
        """[`open_on_crs`][geossl.datasets.rasters.reading.open_on_crs] on the dataset's CRS."""
        if self._rio_crs is None:
            self._rio_crs = rasterio.crs.CRS.from_user_input(self.crs)
        return open_on_crs(filepath, self._rio_crs, self.resampling)

    def _open(self, filepath: str) -> Any:
        """`_load_warp_file`, cached per instance and per process when ``cache`` is set."""
        if not self.cache:
            return self._load_warp_file(filepath)
        if self._handles_pid != os.getpid():  # a forked worker: never use the parent's handles
            self._handles = {}
            self._handles_pid = os.getpid()
        handle = self._handles.get(filepath)
        if handle is None:
            handle = self._handles[filepath] = self._load_warp_file(filepath)
        return handle

    def _merge_files(
        self,
        filepaths: Sequence[str],
        query: GeoSlice,
        band_indexes: Sequence[int] | None = None,
    ) -> Tensor:
        """Mosaic the files at the query's bounds and resolution (torchgeo's, with `_open`).

        Args:
            filepaths: the files, the first one wins where they overlap.
            query: the GeoSlice.
            band_indexes: 1-based bands to read, ``None`` for all.

        Returns:
            ``[C, H, W]`` (torchgeo's ``array_to_tensor`` dtypes: uint16 becomes int32).
        """
        handles = [self._open(str(fp)) for fp in filepaths]
        x, y, _ = self._resolve(query)
        return merge_files(handles, x, y, band_indexes, self.resampling)

    def _file_table(self) -> tuple[list[str], npt.NDArray[np.float64], CRS]:
        """File paths ``[N]``, footprint bounds ``[N, 4]`` and the CRS: a cached view of the index.

        Reading them from the GeoDataFrame costs more than a small read;
        [`crs`][geossl.datasets.rasters.dataset.TimeSeriesRasters.crs]'s setter (torchgeo
        re-projects the index in place) drops the cache.
        """
        if self._table is None:
            paths = [str(p) for p in self.index["filepath"]]
            bounds = np.asarray(self.index.geometry.bounds.to_numpy(), dtype=np.float64)
            self._table = (paths, bounds, self.index.crs)
        return self._table

    @property
    def crs(self) -> CRS:
        """CRS of the dataset (the index's), cached."""
        return self._file_table()[2] if hasattr(self, "_table") else self.index.crs

    @crs.setter
    def crs(self, new_crs: CRS) -> None:
        """Re-project the index (as torchgeo does) and drop everything derived from the old CRS."""
        if new_crs == self.crs:
            return
        self.index.to_crs(new_crs, inplace=True)
        self._table = None
        self._rio_crs = None
        self._transformer = None
        self._handles = {}
        self._read_info = {}

    @property
    def origin(self) -> tuple[float, float]:
        """Top-left corner of the first file in the dataset's CRS: the pixel grid's origin."""
        bounds = self._file_table()[1]
        return float(bounds[0, 0]), float(bounds[0, 3])

    @property
    def file_bounds(self) -> npt.NDArray[np.float64]:
        """Each file's footprint ``(xmin, ymin, xmax, ymax)`` (rows of `index`) ``[N, 4]``."""
        return self._file_table()[1]

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of all files in the dataset's CRS."""
        bounds = self._file_table()[1]
        return (
            float(bounds[:, 0].min()),
            float(bounds[:, 1].min()),
            float(bounds[:, 2].max()),
            float(bounds[:, 3].max()),
        )

    def _resolve(self, query: GeoSlice) -> PatchQuery:
        """``_disambiguate_slice`` without its cost when the query is complete."""
        if isinstance(query, tuple) and len(query) == 3:
            x, y, t = query
            if None not in (x.start, x.stop, x.step, y.start, y.stop, y.step, t.start, t.stop):
                return x, y, t
        return self._disambiguate_slice(query)

    def _read_window(self, filepath: str, x: slice, y: slice) -> Tensor:
        """Read one file at the query's bounds and resolution (what ``merge`` gives, faster)."""
        handle = self._open(filepath)
        info = self._read_info.get(filepath)
        if info is None:
            info = self._read_info[filepath] = window_read_info(handle, self.band_indexes)
        return read_window(handle, info, x, y, self.resampling, self.fill_value)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_transformer"] = None
        state["_read_info"] = {}
        return state

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Read a spatiotemporal slice; an exact date of `dates` reads that date only.

        Args:
            query: ``(slice(xmin, xmax, xres), slice(ymin, ymax, yres), slice(tmin, tmax))``;
                missing parts default to the dataset's bounds.

        Returns:
            ``{"image": [C, H, W], "crs", "bounds": query}`` (uint8 for 8-bit files, else
            float32), ``H = round((ymax - ymin) / yres)``, ``W`` likewise.

        Raises:
            IndexError: when no file of the selected date(s) intersects the query.
        """
        x, y, t = self._resolve(query)
        date = self.date_of(t)
        if date is None:
            return super().__getitem__(query)
        paths, bounds, _ = self._file_table()
        rows, inside = files_of_date(bounds, self.file_dates, date, x, y)
        if len(rows) == 0:
            raise IndexError(
                f"query {query} is outside the files of date {self.dates[date]} "
                f"(dataset extent {self.extent})"
            )
        if self.band_files is None:
            products = [[paths[i]] for i in rows]
        else:  # one file per band: each band is read (resampled) onto the query's grid
            products = [self.band_files[paths[i]] for i in rows]
        parts = []
        for band in range(len(products[0])):
            files = [product[band] for product in products]
            if len(rows) == 1 and inside:  # the common case: one file covers the patch
                parts.append(self._read_window(files[0], x, y))
            else:
                parts.append(self._merge_files(files, (x, y, t), self.band_indexes))
        data = parts[0] if len(parts) == 1 else torch.cat(parts)
        sample: dict[str, Any] = {"crs": self.crs, "bounds": query, "image": data.to(self.dtype)}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    # ---------------------------------------------------------------------------------------------
    # dates, queries, coordinates
    # ---------------------------------------------------------------------------------------------

    def date_of(self, t: slice) -> int | None:
        """Index into `dates` of a time slice equal to one date, else ``None``."""
        return self._date_ids.get((t.start, t.stop))

    def date_slice(self, date: int) -> slice:
        """Time slice that selects the files of date ``date`` (an index into `dates`)."""
        interval = self.dates[date]
        return slice(interval.left, interval.right)

    def query(self, bounds: Sequence[float], date: int) -> PatchQuery:
        """A GeoSlice of ``bounds = (xmin, ymin, xmax, ymax)`` at ``date``, at the dataset's res."""
        xmin, ymin, xmax, ymax = (float(v) for v in bounds)
        xres, yres = self.res
        return slice(xmin, xmax, xres), slice(ymin, ymax, yres), self.date_slice(date)

    def footprints(self) -> list[Any]:
        """Per date, the union of its files' footprints (shapely, in the dataset's CRS) ``[D]``."""
        geometries = self.index.geometry.values
        return [shapely.union_all(geometries[self.file_dates == d]) for d in range(len(self.dates))]

    def to_lonlat(
        self, x: npt.ArrayLike, y: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Transform points from the dataset's CRS to longitude/latitude (EPSG:4326, degrees)."""
        if self._transformer is None:
            self._transformer = Transformer.from_crs(
                CRS.from_user_input(self.crs), CRS.from_epsg(4326), always_xy=True
            )
        lon, lat = self._transformer.transform(np.asarray(x, float), np.asarray(y, float))
        return np.atleast_1d(np.asarray(lon, np.float64)), np.atleast_1d(
            np.asarray(lat, np.float64)
        )

    def pixel_of(self, x: float, y: float) -> tuple[int, int]:
        """``(row, col)`` of the pixel-grid corner nearest to ``(x, y)`` (from `origin`)."""
        xres, yres = self.res
        ox, oy = self.origin
        return round((oy - y) / yres), round((x - ox) / xres)

    def location_of(self, xmin: float, ymax: float) -> int:
        """Dense id ``row * columns + col`` of the pixel at a patch's top-left corner, >= 0.

        Rows and columns count on the dataset's pixel grid from the grid corner at or above and
        left of the dataset's bounds, so two patches share an id exactly when they start at the
        same pixel.

        Args:
            xmin: the patch's left edge.
            ymax: the patch's top edge.

        Returns:
            The location id.
        """
        left, _, right, top = self.extent
        ox, oy = self.origin
        xres, yres = self.res
        row0 = math.floor((oy - top) / yres + 1e-6)
        col0 = math.floor((left - ox) / xres + 1e-6)
        columns = math.ceil((right - ox) / xres) - col0 + 1
        row, col = self.pixel_of(xmin, ymax)
        return int((row - row0) * columns + (col - col0))

    # ---------------------------------------------------------------------------------------------
    # nodata
    # ---------------------------------------------------------------------------------------------

    def validity(self, cell: tuple[float, float], max_cells: int = 1 << 22) -> ValidityGrid:
        """Sample where each date has data on a grid of ``cell``-sized cells over the bounds.

        Each file is read once, decimated to about one pixel per cell (nearest: cheap, and with
        GDAL overviews cheaper still); cell centres inside a file take the mask value of the
        nearest decimated pixel. With more than ``max_cells`` cells the cells grow (same aspect).

        Args:
            cell: ``(cell_x, cell_y)`` in CRS units.
            max_cells: cap on ``H * W``.

        Returns:
            The [`ValidityGrid`][geossl.datasets.rasters.validity.ValidityGrid] (``valid`` is bool
            ``[D, H, W]``).
        """
        band = self.band_indexes[0] if self.band_indexes else 1
        files = list(zip(self._file_table()[0], self.file_dates.tolist(), strict=True))
        return sample_validity(
            self.extent,
            files,
            len(self.dates),
            self._load_warp_file,
            band,
            self.nodata,
            cell,
            max_cells,
        )
