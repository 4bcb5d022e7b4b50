r"""Your own co-located GeoTIFF time series: a torchgeo ``RasterDataset`` with a per-date index.

Geography-aware pretraining (Ayush et al., ICCV 2021) needs *temporal positives*, two acquisitions
of the same place, and *geo labels*, a cluster of where the image is. fMoW provides both per
image; for a stack of rasters over the same places (Sentinel-2, Landsat, NAIP, ...) they come from
the files themselves:

* :class:`TimeSeriesRasters` indexes GeoTIFFs by footprint and **acquisition date** (from the file
  name, else from the GeoTIFF tags), warps them to one CRS (the first file's unless given) and
  reads one date at a time: ``dataset[(x, y, rasters.date_slice(d))]`` mosaics the files of date
  ``d`` only. Bands may also come **one file per band** at different resolutions (Sentinel-2's
  ``..._B02.tif`` at 10 m, ``..._B05.tif`` at 20 m, ``..._B01.tif`` at 60 m; ``band_names``): the
  band files of one product are read as one raster, every band resampled onto one pixel grid;
* :class:`RasterTemporalPairs` turns a pair of queries of one footprint at two dates (drawn by
  :class:`~geossl.samplers.TemporalGeoPairSampler`) into geossl's pair sample (docs/design.md):
  ``image [2, C, H, W]``, ``time [2]``, ``lat``/``lon`` of the patch centre and its ``geo_label``.

Both views are read on the same pixel grid (the patch bounds are multiples of the dataset's
resolution from the first file's origin), so on co-registered stacks they are pixel-aligned, which
the SCRL term assumes (both views share one canvas).

torchgeo 0.8.1 ``RasterDataset`` defects worked around here (see the methods that override them):

* files whose name does not match ``filename_regex`` are skipped silently, and a file without a
  date gets ``(Timestamp.min, Timestamp.max)``, i.e. it matches every query: here the regex only
  reads dates, a file without one falls back to its tags or fails naming the file;
* unreadable files are skipped silently; a file without a CRS is indexed silently as if it were in
  the dataset's CRS; ``bands`` must be names of ``all_bands`` (no 1-based indexes) and are never
  checked against the files: here each of these is a one-line error naming the file;
* ``_load_warp_file`` wraps a file in a ``WarpedVRT`` whenever ``calculate_default_transform``
  differs from the file's transform in the last bit (it does for the EPSG:4326 Landsat stack of the
  tests: 10 of 108 reads of 64 px windows on the file's own grid came back shifted, at 5 ms per
  read); the VRT uses nearest resampling whatever :attr:`resampling` says. Here a file is warped
  only when its CRS differs from the dataset's or it is not north-up, and with :attr:`resampling`;
* every query goes through ``rasterio.merge`` and the GeoDataFrame (``bounds``, ``cx``), a few ms of
  Python per read: a query inside one file is a direct windowed read here (an integer window when
  the patch is on the file's grid, or off it by a fraction of a pixel with nearest resampling),
  identical to merge's result;
* ``_cached_load_warp_file`` is an ``lru_cache`` on the method: shared by every instance, keyed on
  ``self`` (the datasets are never freed) and its open handles are inherited by forked DataLoader
  workers. Here ``_merge_files`` opens files through a cache that is per instance and per process,
  and dropped when pickled;
* a query selects the files whose date interval *overlaps* the query's, so a file dated by a bare
  year also answers every day of that year: a query whose time slice is exactly one of
  :attr:`~TimeSeriesRasters.dates` selects the files of that date only.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import rasterio
import rasterio.merge
import rasterio.windows
import shapely
import torch
from geopandas import GeoDataFrame
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning, RasterioError
from rasterio.vrt import WarpedVRT
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets import RasterDataset
from torchgeo.datasets.utils import GeoSlice, array_to_tensor, disambiguate_timestamp

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit

__all__ = [
    "DATE_TAGS",
    "DEFAULT_BAND_FILENAME_REGEX",
    "DEFAULT_FILENAME_REGEX",
    "PairQuery",
    "PatchQuery",
    "RasterTemporalPairs",
    "TimeSeriesRasters",
    "ValidityGrid",
]

#: Default ``filename_regex``: the first 8-digit ``YYYYMMDD`` date in the file name (NAIP
#: ``m_4709963_se_14_1_20090818.tif``, Sentinel-2 ``S2A_MSIL2A_20190822T102031_..._T32TMT_...``,
#: Landsat ``LC08_L2SP_044034_20200917_20200925_02_T1_SR_B4.TIF``: the acquisition comes before the
#: processing date), else a bare year ``19xx``/``20xx`` (``1985.tif``, ``s2_2019_b4.tif``). Digits
#: around the match are not allowed, so a 7-digit NAIP quad id or a path/row is never read as a
#: date. Group ``date`` is parsed with ``date_format``, group ``year`` with ``%Y``.
DEFAULT_FILENAME_REGEX = r"""
    (?<!\d)
    (?:
        (?P<date>(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))
      | (?P<year>(?:19|20)\d{2})
    )
    (?!\d)
"""

#: Default ``filename_regex`` with ``band_names`` (one file per band): the date of
#: :data:`DEFAULT_FILENAME_REGEX`, then group ``band`` = the last ``_``-separated token before the
#: extension: ``S2A_MSIL2A_20170613T101031_87_48_B8A.tif`` is 2017-06-13, band ``B8A``;
#: ``LC08_L2SP_044034_20200917_20200925_02_T1_SR_B4.TIF`` is 2020-09-17, band ``B4``.
DEFAULT_BAND_FILENAME_REGEX = (
    DEFAULT_FILENAME_REGEX
    + r"""
    .*_(?P<band>[A-Za-z0-9]+)\.[A-Za-z0-9]+$
"""
)

#: GeoTIFF metadata tags read (case-insensitively, default and ``IMAGERY`` domains) when the file
#: name has no date, in this order. ``TIFFTAG_DATETIME`` is ``"YYYY:MM:DD HH:MM:SS"``; the others
#: may be ISO 8601 or ``YYYYMMDD``. Only the day is kept.
DATE_TAGS: tuple[str, ...] = (
    "ACQUISITIONDATETIME",
    "ACQUISITIONDATE",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "TIFFTAG_DATETIME",
    "DATETIME",
)

#: A complete GeoSlice: ``(slice(xmin, xmax, xres), slice(ymin, ymax, yres), slice(tmin, tmax))``.
PatchQuery: TypeAlias = tuple[slice, slice, slice]
#: One footprint at two dates: what :class:`RasterTemporalPairs` reads (view 0, view 1).
PairQuery: TypeAlias = tuple[PatchQuery, PatchQuery]

_TAG_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[:\-/]?(0[1-9]|1[0-2])[:\-/]?(0[1-9]|[12]\d|3[01])")
_EPOCH = pd.Timestamp("1970-01-01")


def _unix_seconds(timestamp: pd.Timestamp) -> int:
    """Seconds since 1970-01-01 UTC of a naive (UTC) timestamp."""
    return int((timestamp - _EPOCH) // pd.Timedelta(seconds=1))


@dataclass(frozen=True)
class _FileInfo:
    path: str
    count: int
    dtype: str
    nodata: float | None
    mint: pd.Timestamp
    maxt: pd.Timestamp


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
    """

    valid: npt.NDArray[np.bool_]
    left: float
    top: float
    cell_x: float
    cell_y: float


class TimeSeriesRasters(RasterDataset):
    """GeoTIFFs of the same places at several dates, indexed by footprint and acquisition date.

    Files are found under ``paths`` (folders are searched recursively) by extension
    (:attr:`extensions`). Each file's acquisition date is read from its name with
    ``filename_regex`` (named group ``date`` parsed with ``date_format``, or ``year``), else from
    its GeoTIFF tags (:data:`DATE_TAGS`); the date is an interval (a whole day, or a whole year
    for a bare year). Files of one date form one acquisition (a mosaic when there are several); the
    dates, sorted, are :attr:`dates`.

    Every file must have a CRS and the same dtype; all files are warped to ``crs`` (default: the
    first file's, in sorted path order) and read at ``res`` (default: the first file's resolution
    in that CRS). A sample is torchgeo's ``{"image": [C, H, W], "crs", "bounds"}``; the image is
    uint8 when the files are 8-bit (no cast), else float32 with the files' values (torchgeo's
    convention; :class:`RasterTemporalPairs` scales it to ``[0, 1]``).

    **One file per band** (``band_names``; torchgeo's ``separate_files``): ``filename_regex`` then
    also has a group ``band`` (default :data:`DEFAULT_BAND_FILENAME_REGEX`: the last ``_`` token
    before the extension). The files whose names differ only in the ``band`` group form one
    *product* (e.g. a BigEarthNet patch folder, ``S2A_MSIL2A_20170613T101031_87_48_B01.tif`` ...
    ``_B12.tif``, ``_B8A.tif``), read as one raster with the bands in ``band_names`` order; files of
    other bands are ignored, and a product missing one of ``band_names`` is an error naming it. Each
    file holds one band; bands may have different resolutions: every band is read on the dataset's
    pixel grid at ``res`` (default: the finest band's resolution, e.g. 10 m for Sentinel-2),
    resampled with :attr:`resampling` (bilinear for non-8-bit data, GDAL's windowed read, so a 20 m
    pixel stays where it is on the ground: its 2 x 2 block of 10 m pixels averages back to it). The
    product is indexed by its finest band's file (:attr:`reference_band`), whose grid is the
    dataset's (:attr:`origin`) and whose mask is the one :meth:`validity` reads.

    Args:
        paths: folders to search or files to load.
        bands: 1-based band indexes to read (rasterio's convention), ``None`` for all bands (then
            every file must have the same band count). Not with ``band_names``.
        filename_regex: regular expression (``re.VERBOSE``, searched anywhere in the file's base
            name) with a named group ``date`` (or ``year``), and ``band`` with ``band_names``;
            default :data:`DEFAULT_FILENAME_REGEX` (:data:`DEFAULT_BAND_FILENAME_REGEX` with
            ``band_names``).
        date_format: ``strptime`` format of the ``date`` group (default ``%Y%m%d``).
        crs: CRS to warp to (anything ``pyproj`` understands: ``"EPSG:32614"``, a WKT, an EPSG
            code), default the first file's.
        res: resolution in units of ``crs``, default the first file's (with ``band_names``: the
            finest band's).
        nodata: value that marks missing pixels in files that declare none (e.g. ``0`` for black
            scene borders); used by :meth:`validity`. Files with a nodata value or a mask use it.
        transforms: a function applied to each sample.
        cache: keep the files open (per process) between queries.
        band_names: one file per band: the values of the ``band`` group to read, in this order
            (e.g. ``["B02", "B03", "B04", "B08"]``); ``None``: every file holds all its bands.

    Raises:
        DatasetNotFoundError: when no GeoTIFF (of ``band_names``) is found.
        BadDatasetError: naming the file, when a file cannot be read, has no CRS, has no
            acquisition date, lacks a requested band, or differs from the first file in dtype (or
            in band count with ``bands=None``); with ``band_names``, when a file name has no band,
            a band file holds more than one band, or a product lacks one of ``band_names``.
        ValueError: for invalid arguments.
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
        if bands is not None:
            bands = [int(b) for b in bands]
            if not bands or min(bands) < 1 or len(set(bands)) != len(bands):
                raise ValueError(f"bands must be distinct 1-based band indexes, got {bands}")
        names: list[str] | None = None
        if band_names is not None:
            names = [str(b) for b in band_names]
            if not names or len(set(names)) != len(names) or not all(names):
                raise ValueError(f"band_names must be distinct non-empty names, got {names}")
            if bands is not None:
                raise ValueError(
                    "give bands (band indexes inside each file) or band_names (one file per "
                    "band), not both"
                )
        if filename_regex is not None:
            pattern = filename_regex
        else:
            pattern = DEFAULT_FILENAME_REGEX if names is None else DEFAULT_BAND_FILENAME_REGEX
        try:
            date_regex = re.compile(pattern, re.VERBOSE)
        except re.error as error:
            raise ValueError(f"filename_regex is not a valid regular expression: {error}") from None
        if not {"date", "year"} & set(date_regex.groupindex):
            raise ValueError(
                f"filename_regex must have a named group 'date' (or 'year'), got {pattern!r}"
            )
        if names is not None and "band" not in date_regex.groupindex:
            raise ValueError(
                f"filename_regex must have a named group 'band' with band_names, got {pattern!r}"
            )
        if res is not None:
            res_pair = (res, res) if isinstance(res, int | float) else tuple(res)
            if len(res_pair) != 2 or not all(math.isfinite(r) and r > 0 for r in res_pair):
                raise ValueError(f"res must be positive, got {res}")
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
        found = self._find_files()
        if names is None:
            infos = [self._scan(path, bands) for path in found]
            indexed = infos
        else:
            products = self._group_band_files(found, names)
            by_file = {p: self._scan(p, None) for files in products for p in files}
            for path, info in by_file.items():
                if info.count != 1:
                    raise BadDatasetError(
                        path,
                        f"has {info.count} bands; with band_names every file holds one band",
                    )
            if rio_crs is None:  # the first file's, as without band_names
                with rasterio.open(products[0][0]) as src:
                    rio_crs = src.crs
            areas = [math.prod(self._native_res(p, rio_crs)) for p in products[0]]
            finest = int(np.argmin(areas))  # the first of equals, in band_names order
            self.reference_band = names[finest]
            if res is None:
                res = self._native_res(products[0][finest], rio_crs)
            self.band_files = {files[finest]: list(files) for files in products}
            infos = [by_file[p] for files in products for p in files]
            indexed = [by_file[files[finest]] for files in products]
        first = infos[0]
        for info in infos[1:]:
            if info.dtype != first.dtype:
                raise BadDatasetError(
                    info.path, f"dtype {info.dtype} differs from {first.dtype} of {first.path}"
                )
            if bands is None and names is None and info.count != first.count:
                raise BadDatasetError(
                    info.path,
                    f"has {info.count} bands but {first.path} has {first.count}; pass bands=[...] "
                    "to read bands that every file has",
                )
        super().__init__(
            paths if names is None else [info.path for info in indexed],
            crs=rio_crs,
            res=res,
            bands=None,
            transforms=transforms,
            cache=cache,
        )
        self.paths = paths  # torchgeo stores what it was given (the indexed files)
        by_path = {info.path: info for info in indexed}
        filepaths = [str(p) for p in self.index["filepath"]]
        if sorted(filepaths) != sorted(by_path):  # pragma: no cover - torchgeo skipped a file
            missing = sorted(set(by_path) - set(filepaths))
            raise BadDatasetError(missing[0] if missing else str(paths), "torchgeo could not index")
        # Replace torchgeo's datetimes (from its match-all regex) with the files' dates.
        intervals = pd.IntervalIndex.from_arrays(
            [by_path[p].mint for p in filepaths],
            [by_path[p].maxt for p in filepaths],
            closed="both",
            name="datetime",
        )
        self.index = GeoDataFrame(
            {"filepath": filepaths},
            index=intervals,
            geometry=self.index.geometry.values,
            crs=self.index.crs,
        )
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
        self._read_info: dict[str, tuple[float, float, float, float, list[int], bool]] = {}

        dates = pd.IntervalIndex(self.index.index.unique()).sort_values()
        #: Sorted distinct acquisition intervals (closed on both sides).
        self.dates: pd.IntervalIndex = dates
        #: Acquisition time of each date, unix seconds of the interval's start, int64 ``[D]``.
        self.times: npt.NDArray[np.int64] = np.array(
            [_unix_seconds(d.left) for d in dates], dtype=np.int64
        )
        self._date_ids = {(d.left, d.right): i for i, d in enumerate(dates)}
        #: Date id (into :attr:`dates`) of each row of :attr:`index`, int64 ``[N]``.
        self.file_dates: npt.NDArray[np.int64] = np.array(
            [self._date_ids[(d.left, d.right)] for d in self.index.index], dtype=np.int64
        )

    # ---------------------------------------------------------------------------------------------
    # indexing
    # ---------------------------------------------------------------------------------------------

    def _find_files(self) -> list[str]:
        paths = self._path_list()
        for path in paths:
            if not os.path.exists(path):
                raise DatasetNotFoundError(path, "path does not exist", dataset="rasters")
        files = [f for f in self.files if os.path.splitext(f)[1].lower() in self.extensions]
        if not files:
            raise DatasetNotFoundError(
                ", ".join(os.fspath(p) for p in paths),
                f"no GeoTIFF ({', '.join('*' + e for e in self.extensions)}) found",
                dataset="rasters",
            )
        return files

    def _date_from_name(self, path: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        match = self.date_regex.search(os.path.basename(path))
        if match is None:
            return None
        groups = match.groupdict()
        if groups.get("date"):
            text, fmt = groups["date"], self.date_format
        elif groups.get("year"):
            text, fmt = groups["year"], "%Y"
        else:
            return None
        try:
            return disambiguate_timestamp(text, fmt)
        except ValueError:
            raise BadDatasetError(
                path, f"date {text!r} in the file name does not match date_format {fmt!r}"
            ) from None

    def _group_band_files(self, files: Sequence[str], names: Sequence[str]) -> list[list[str]]:
        """Group one-band files into products: ``[P][len(names)]`` paths, sorted by product.

        A product is the set of files whose paths differ only in the regex's ``band`` group.

        Raises:
            BadDatasetError: naming the file whose name has no band, or the product that lacks a
                band of ``names`` (with the file name it should have).
            DatasetNotFoundError: when no file has a band of ``names``.
        """
        wanted = set(names)
        products: dict[tuple[str, str], dict[str, str]] = {}
        for path in files:
            name = os.path.basename(path)
            match = self.date_regex.search(name)
            band = match.group("band") if match is not None else None
            if match is None or band is None:
                raise BadDatasetError(
                    path,
                    "no band in the file name (filename_regex "
                    f"{self.date_regex.pattern.strip()!r} has no match with a 'band' group)",
                )
            if band not in wanted:
                continue  # another band of the product
            start, end = match.span("band")
            key = (os.path.dirname(path), name[:start] + "{band}" + name[end:])
            products.setdefault(key, {})[band] = path
        if not products:
            raise DatasetNotFoundError(
                ", ".join(os.fspath(p) for p in self._path_list()),
                f"no GeoTIFF of band_names {list(names)} found",
                dataset="rasters",
            )
        grouped: list[list[str]] = []
        for (folder, pattern), by_band in sorted(products.items()):
            for band in names:
                if band not in by_band:
                    some = by_band[next(iter(by_band))]
                    raise BadDatasetError(
                        some,
                        f"band {band} missing: no {pattern.replace('{band}', band)} in {folder} "
                        f"(band_names={list(names)})",
                    )
            grouped.append([by_band[band] for band in names])
        return grouped

    @staticmethod
    def _native_res(path: str, crs: Any) -> tuple[float, float]:
        """A file's resolution in ``crs`` (its own when already in it; else GDAL's warp default)."""
        with rasterio.open(path) as src:
            if src.crs == crs:
                return abs(float(src.res[0])), abs(float(src.res[1]))
            with WarpedVRT(src, crs=crs) as vrt:
                return abs(float(vrt.res[0])), abs(float(vrt.res[1]))

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

    @staticmethod
    def _date_from_tags(src: Any) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        tags: dict[str, str] = {}
        for namespace in (None, "IMAGERY"):
            try:
                found = src.tags(ns=namespace) if namespace else src.tags()
            except RasterioError:  # pragma: no cover - a driver without that domain
                continue
            for key, value in found.items():
                tags.setdefault(str(key).upper(), str(value))
        for key in DATE_TAGS:
            match = _TAG_DATE.search(tags.get(key, ""))
            if match:
                return disambiguate_timestamp("".join(match.groups()), "%Y%m%d")
        return None

    def _scan(self, path: str, bands: Sequence[int] | None) -> _FileInfo:
        """Check one file (readable, CRS, bands) and find its date."""
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise BadDatasetError(
                        path, "no CRS (georeference it, e.g. gdal_edit.py -a_srs EPSG:XXXX FILE)"
                    )
                count = int(src.count)
                if bands is not None and max(bands) > count:
                    raise BadDatasetError(
                        path,
                        f"has {count} band{'s' if count != 1 else ''}, bands={list(bands)} asks "
                        f"for band {max(bands)}",
                    )
                date = self._date_from_name(path) or self._date_from_tags(src)
                dtype = str(src.dtypes[0])
                nodata = None if src.nodata is None else float(src.nodata)
        except RasterioError as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise BadDatasetError(path, f"not a readable raster ({message})") from None
        if date is None:
            raise BadDatasetError(
                path,
                "no acquisition date: the file name has none (filename_regex "
                f"{self.date_regex.pattern.strip()!r}) and the GeoTIFF has none of the tags "
                f"{', '.join(DATE_TAGS)}",
            )
        return _FileInfo(path, count, dtype, nodata, date[0], date[1])

    # ---------------------------------------------------------------------------------------------
    # torchgeo overrides
    # ---------------------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """uint8 for 8-bit files (read without a cast), else float32 (torchgeo's default)."""
        return torch.uint8 if getattr(self, "file_dtype", None) == "uint8" else torch.float32

    def _load_warp_file(self, filepath: Any) -> Any:
        """Open a file, warped to the dataset's CRS only when its CRS differs or it is not north-up.

        Files in the dataset's CRS are read directly: ``rasterio.merge`` reads them at the query's
        grid and resolution (resampling with :attr:`resampling` where the grids differ).

        Args:
            filepath: the file.

        Returns:
            A rasterio dataset or a ``WarpedVRT`` over it.
        """
        if self._rio_crs is None:
            self._rio_crs = rasterio.crs.CRS.from_user_input(self.crs)
        src = rasterio.open(filepath)
        t = src.transform
        north_up = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0
        if src.crs == self._rio_crs and north_up:
            return src
        vrt = WarpedVRT(src, crs=self._rio_crs, resampling=self.resampling)
        src.close()  # as torchgeo does: the VRT keeps its own reference to the file
        return vrt

    def _open(self, filepath: str) -> Any:
        """:meth:`_load_warp_file`, cached per instance and per process when ``cache`` is set."""
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
        """Mosaic the files at the query's bounds and resolution (torchgeo's, with :meth:`_open`).

        Args:
            filepaths: the files, the first one wins where they overlap.
            query: the GeoSlice.
            band_indexes: 1-based bands to read, ``None`` for all.

        Returns:
            ``[C, H, W]`` (torchgeo's ``array_to_tensor`` dtypes: uint16 becomes int32).
        """
        handles = [self._open(str(fp)) for fp in filepaths]
        x, y, _ = self._resolve(query)
        dest, _ = rasterio.merge.merge(
            handles,
            (x.start, y.start, x.stop, y.stop),
            (x.step, y.step),
            indexes=band_indexes,
            resampling=self.resampling,
        )
        return array_to_tensor(dest)

    def _file_table(self) -> tuple[list[str], npt.NDArray[np.float64], CRS]:
        """File paths ``[N]``, footprint bounds ``[N, 4]`` and the CRS: a cached view of the index.

        Reading them from the GeoDataFrame costs more than a small read; :attr:`crs`'s setter
        (torchgeo re-projects the index in place) drops the cache.
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
        """Each file's footprint ``(xmin, ymin, xmax, ymax)`` (rows of :attr:`index`) ``[N, 4]``."""
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
            t = handle.transform
            indexes = self.band_indexes if self.band_indexes else list(range(1, handle.count + 1))
            masked = handle.nodata is None and any(
                flag.name != "all_valid" for flag in handle.mask_flag_enums[indexes[0] - 1]
            )
            info = self._read_info[filepath] = (t.a, t.c, t.e, t.f, indexes, masked)
        a, c, e, f, indexes, masked = info
        height = round((y.stop - y.start) / y.step)
        width = round((x.stop - x.start) / x.step)
        col, row = (x.start - c) / a, (y.stop - f) / e
        cols, rows = (x.stop - x.start) / a, (y.start - y.stop) / e
        same_scale = max(abs(cols - width), abs(rows - height)) < 1e-6
        on_grid = max(abs(col - round(col)), abs(row - round(row))) < 1e-6
        if same_scale and (on_grid or self.resampling == Resampling.nearest):
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
            resampling=self.resampling,
            masked=masked,
        )
        if masked:  # an internal mask or alpha band: merge fills the masked pixels
            data = data.filled(self.fill_value)
        return array_to_tensor(np.asarray(data))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_transformer"] = None
        state["_read_info"] = {}
        return state

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Read a spatiotemporal slice; an exact date of :attr:`dates` reads that date only.

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
        paths, b, _ = self._file_table()
        rows = np.flatnonzero(
            (self.file_dates == date)
            & (b[:, 0] < x.stop)
            & (b[:, 2] > x.start)
            & (b[:, 1] < y.stop)
            & (b[:, 3] > y.start)
        )
        if len(rows) == 0:
            raise IndexError(
                f"query {query} is outside the files of date {self.dates[date]} "
                f"(dataset extent {self.extent})"
            )
        eps_x, eps_y = 1e-6 * abs(x.step), 1e-6 * abs(y.step)
        inside = (
            b[rows[0], 0] <= x.start + eps_x
            and b[rows[0], 2] >= x.stop - eps_x
            and b[rows[0], 1] <= y.start + eps_y
            and b[rows[0], 3] >= y.stop - eps_y
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
        """Index into :attr:`dates` of a time slice equal to one date, else ``None``."""
        return self._date_ids.get((t.start, t.stop))

    def date_slice(self, date: int) -> slice:
        """Time slice that selects the files of date ``date`` (an index into :attr:`dates`)."""
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
        """``(row, col)`` of the pixel-grid corner nearest to ``(x, y)`` (from :attr:`origin`)."""
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
            The :class:`ValidityGrid` (``valid`` is bool ``[D, H, W]``).
        """
        left, bottom, right, top = self.extent
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
        valid = np.zeros((len(self.dates), height, width), dtype=bool)
        band = self.band_indexes[0] if self.band_indexes else 1
        paths = self._file_table()[0]
        for path, date in zip(paths, self.file_dates, strict=True):
            handle = self._load_warp_file(path)
            try:
                mask, transform = self._decimated_mask(handle, band, cell_x, cell_y)
            finally:
                handle.close()
            cols = np.floor((xs - transform.c) / transform.a).astype(np.int64)
            rows = np.floor((ys - transform.f) / transform.e).astype(np.int64)
            col_in = np.flatnonzero((cols >= 0) & (cols < mask.shape[1]))
            row_in = np.flatnonzero((rows >= 0) & (rows < mask.shape[0]))
            if len(col_in) and len(row_in):
                grid = np.ix_(row_in, col_in)
                valid[date][grid] |= mask[np.ix_(rows[row_in], cols[col_in])]
        return ValidityGrid(valid, left, top, cell_x, cell_y)

    def _decimated_mask(
        self, handle: Any, band: int, cell_x: float, cell_y: float
    ) -> tuple[npt.NDArray[np.bool_], Any]:
        """Read a file's mask at about one pixel per cell; returns ``(mask [h, w], transform)``."""
        fx = max(1, int(cell_x / abs(handle.transform.a)))
        fy = max(1, int(cell_y / abs(handle.transform.e)))
        shape = (max(1, math.ceil(handle.height / fy)), max(1, math.ceil(handle.width / fx)))
        declares = handle.nodata is not None or any(
            flag.name != "all_valid" for flag in handle.mask_flag_enums[band - 1]
        )
        if self.nodata is not None and not declares:
            data = handle.read(band, out_shape=shape, resampling=Resampling.nearest)
            mask = data != self.nodata
        else:
            with warnings.catch_warnings():
                # A 4-band uint8 file with a nodata value may also look like RGBA: the nodata value
                # wins, as it does in rasterio.merge's reads, which is what we want to mirror.
                warnings.simplefilter("ignore", NodataShadowWarning)
                mask = handle.read_masks(band, out_shape=shape, resampling=Resampling.nearest) > 0
        scale = rasterio.Affine.scale(handle.width / shape[1], handle.height / shape[0])
        return np.asarray(mask, dtype=bool), handle.transform @ scale


class RasterTemporalPairs(Dataset[dict[str, Tensor]]):
    """Two dates of one patch of a :class:`TimeSeriesRasters` as geossl's pair sample.

    Indexed by a pair of GeoSlice queries of the same footprint at two dates (from
    :class:`~geossl.samplers.TemporalGeoPairSampler`), it returns the keys of docs/design.md:

    * ``image``: ``[2, C, H, W]``, uint8 for 8-bit files (the task divides by 255), else float32
      ``clamp(value * scale, 0, 1)``; view 0 is the first query's date, view 1 the second's;
    * ``time``: int64 ``[2]``, unix seconds of each date's start (midnight UTC; Jan 1 for a year);
    * ``index``: int64 ``[2]``, the two dates' ids in ``rasters.dates``;
    * ``location``: int64, the patch position's id (:meth:`TimeSeriesRasters.location_of`);
    * ``lat``, ``lon``: float32, the patch centre in degrees (EPSG:4326);
    * ``geo_label``: int64, the geo cluster of the centre (nearest of ``centroids`` by cosine
      similarity, :func:`~geossl.datasets.geo_clusters.assign_clusters`), -1 without centroids;
    * ``label``: int64 -1 (no class);
    * ``bounds``: float64 ``[4]``, ``(xmin, ymin, xmax, ymax)`` in ``rasters.crs``. The CRS itself
      is not in the sample (the default collate cannot stack CRS objects): it is ``rasters.crs``.

    Both views come from the same window of the same pixel grid, so on co-registered stacks the
    two patches are pixel-aligned (what the SCRL term assumes).

    Args:
        rasters: the time series.
        centroids: geo-cluster centroids, unit vectors ``[K, 3]`` (e.g. from
            :func:`~geossl.datasets.geo_clusters.spherical_kmeans` of patch centres).
        scale: factor from the files' values to ``[0, 1]`` for non-8-bit files (e.g. ``1e-4`` for
            Sentinel-2 L2A reflectance); default ``1 / (2**bits - 1)`` for integer files and 1 for
            float files. Ignored for uint8.

    Raises:
        ValueError: for a non-positive ``scale`` or malformed centroids.
    """

    def __init__(
        self,
        rasters: TimeSeriesRasters,
        centroids: npt.ArrayLike | None = None,
        scale: float | None = None,
    ) -> None:
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be positive, got {scale}")
        cents = None if centroids is None else np.asarray(centroids, dtype=np.float64)
        if cents is not None and (cents.ndim != 2 or cents.shape[1] != 3 or len(cents) == 0):
            raise ValueError(f"centroids must have shape [K, 3], got {list(cents.shape)}")
        dtype = np.dtype(rasters.file_dtype)
        if scale is None:
            scale = 1.0 / float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0
        self.rasters = rasters
        self.centroids = cents
        self.scale = float(scale)

    def to_unit(self, image: Tensor) -> Tensor:
        """Raw values on the ``[0, 1]`` scale the model sees (uint8 kept: the task divides by 255).

        Non-8-bit values become ``clamp(value * scale, 0, 1)`` as float32.

        Args:
            image: ``[..., C, H, W]`` read from :attr:`rasters`.

        Returns:
            The image on the ``[0, 1]`` scale (uint8 stays uint8).
        """
        if image.dtype == torch.uint8:
            return image
        return (image.float() * self.scale).clamp_(0.0, 1.0)

    def __getitem__(self, pair: tuple[GeoSlice, GeoSlice]) -> dict[str, Tensor]:
        """Read both views of a pair query.

        Args:
            pair: two GeoSlices ``(x, y, t)`` with the same ``x`` and ``y`` and two dates of
                ``rasters.dates`` (the same date twice for a single-date pair: both views are
                then the same image, read once).

        Returns:
            The sample dict described in the class docstring.

        Raises:
            ValueError: when the two queries differ in footprint or a time slice is not a date.
        """
        first, second = (self.rasters._resolve(q) for q in pair)
        if first[:2] != second[:2]:
            raise ValueError(f"the two queries of a pair must share a footprint: {pair}")
        dates = [self.rasters.date_of(q[2]) for q in (first, second)]
        if dates[0] is None or dates[1] is None:
            raise ValueError(f"each query of a pair must select one of rasters.dates: {pair}")
        view0 = self.rasters[first]["image"]  # [C, H, W]
        # A single-date pair (TemporalGeoPairSampler(single_date_pairs=True)): one read.
        view1 = view0 if dates[0] == dates[1] else self.rasters[second]["image"]
        images = self.to_unit(torch.stack([view0, view1]))  # [2, C, H, W]
        x, y = first[0], first[1]
        cx, cy = (x.start + x.stop) / 2.0, (y.start + y.stop) / 2.0
        lon, lat = self.rasters.to_lonlat([cx], [cy])
        geo_label = -1
        if self.centroids is not None:
            geo_label = int(assign_clusters(latlon_to_unit(lat, lon), self.centroids)[0])
        return {
            "image": images,
            "time": torch.tensor([int(self.rasters.times[d]) for d in dates], dtype=torch.int64),
            "index": torch.tensor(dates, dtype=torch.int64),
            "location": torch.tensor(self.rasters.location_of(x.start, y.stop), dtype=torch.int64),
            "lat": torch.tensor(float(lat[0]), dtype=torch.float32),
            "lon": torch.tensor(float(lon[0]), dtype=torch.float32),
            "geo_label": torch.tensor(geo_label, dtype=torch.int64),
            "label": torch.tensor(-1, dtype=torch.int64),
            "bounds": torch.tensor([x.start, y.start, x.stop, y.stop], dtype=torch.float64),
        }
