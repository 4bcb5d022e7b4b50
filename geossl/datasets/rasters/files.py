"""The files of a raster time series: their acquisition dates, their checks, their band products.

Each GeoTIFF of a [`TimeSeriesRasters`][geossl.datasets.rasters.dataset.TimeSeriesRasters] is dated
from its name (`DEFAULT_FILENAME_REGEX`,
[`date_from_name`][geossl.datasets.rasters.files.date_from_name]), else from its GeoTIFF tags
(`DATE_TAGS`, [`date_from_tags`][geossl.datasets.rasters.files.date_from_tags]), and checked once
([`scan_raster_file`][geossl.datasets.rasters.files.scan_raster_file]); all of them must be of one
kind ([`check_same_kind`][geossl.datasets.rasters.files.check_same_kind]). With one file per band,
[`group_band_files`][geossl.datasets.rasters.files.group_band_files] groups the files of one product
and [`scan_band_products`][geossl.datasets.rasters.files.scan_band_products] scans them.

Examples:
    >>> import re
    >>> regex = re.compile(DEFAULT_FILENAME_REGEX, re.VERBOSE)
    >>> start, end = date_from_name("m_4709963_se_14_1_20090818.tif", regex, "%Y%m%d")
    >>> str(start.date()), unix_seconds(start)
    ('2009-08-18', 1250553600)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from torchgeo.datasets.utils import disambiguate_timestamp

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.rasters.blocks import truncated_blocks
from geossl.utils.bands import model_bands

__all__ = [
    "DATE_TAGS",
    "DEFAULT_BAND_FILENAME_REGEX",
    "DEFAULT_FILENAME_REGEX",
    "BandProducts",
    "RasterFileInfo",
    "check_band_arguments",
    "check_res",
    "check_same_kind",
    "compile_date_regex",
    "date_from_name",
    "date_from_tags",
    "find_geotiffs",
    "group_band_files",
    "native_res",
    "scan_band_products",
    "scan_raster_file",
    "unix_seconds",
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

_TAG_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[:\-/]?(0[1-9]|1[0-2])[:\-/]?(0[1-9]|[12]\d|3[01])")
_EPOCH = pd.Timestamp("1970-01-01")


def unix_seconds(timestamp: pd.Timestamp) -> int:
    """Seconds since 1970-01-01 UTC of a naive (UTC) timestamp."""
    return int((timestamp - _EPOCH) // pd.Timedelta(seconds=1))


@dataclass(frozen=True)
class RasterFileInfo:
    """What the scan of one file found: band count, dtype, nodata, dates, damage, model bands.

    ``problem`` is ``""``, or why the file is skipped (its tiles are cut:
    [`truncated_blocks`][geossl.datasets.rasters.blocks.truncated_blocks]); ``model_bands`` are
    the 1-based bands a model reads when none are named
    ([`model_bands`][geossl.utils.bands.model_bands]: every band but alpha).
    """

    path: str
    count: int
    dtype: str
    nodata: float | None
    mint: pd.Timestamp
    maxt: pd.Timestamp
    problem: str = ""
    model_bands: tuple[int, ...] = ()


def check_band_arguments(
    bands: Sequence[int] | None, band_names: Sequence[str] | None
) -> tuple[list[int] | None, list[str] | None]:
    """Validate ``bands`` (1-based indexes) and ``band_names`` (one file per band).

    Returns:
        Both as lists (``None`` stays ``None``).

    Raises:
        ValueError: for repeated, empty or non-positive values, or when both are given.
    """
    indexes: list[int] | None = None
    if bands is not None:
        indexes = [int(b) for b in bands]
        if not indexes or min(indexes) < 1 or len(set(indexes)) != len(indexes):
            raise ValueError(f"bands must be distinct 1-based band indexes, got {indexes}")
    names: list[str] | None = None
    if band_names is not None:
        names = [str(b) for b in band_names]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"band_names must be distinct non-empty names, got {names}")
        if indexes is not None:
            raise ValueError(
                "give bands (band indexes inside each file) or band_names (one file per "
                "band), not both"
            )
    return indexes, names


def compile_date_regex(filename_regex: str | None, band_names: list[str] | None) -> re.Pattern[str]:
    """Compile ``filename_regex`` (default by ``band_names``) and check its named groups.

    Raises:
        ValueError: for an invalid expression, one without a ``date`` or ``year`` group, or one
            without a ``band`` group with ``band_names``.
    """
    if filename_regex is not None:
        pattern = filename_regex
    else:
        pattern = DEFAULT_FILENAME_REGEX if band_names is None else DEFAULT_BAND_FILENAME_REGEX
    try:
        date_regex = re.compile(pattern, re.VERBOSE)
    except re.error as error:
        raise ValueError(f"filename_regex is not a valid regular expression: {error}") from None
    if not {"date", "year"} & set(date_regex.groupindex):
        raise ValueError(
            f"filename_regex must have a named group 'date' (or 'year'), got {pattern!r}"
        )
    if band_names is not None and "band" not in date_regex.groupindex:
        raise ValueError(
            f"filename_regex must have a named group 'band' with band_names, got {pattern!r}"
        )
    return date_regex


def check_res(res: float | tuple[float, float] | None) -> None:
    """Raise ValueError unless ``res`` is None or one or two positive finite numbers."""
    if res is None:
        return
    res_pair = (res, res) if isinstance(res, int | float) else tuple(res)
    if len(res_pair) != 2 or not all(math.isfinite(r) and r > 0 for r in res_pair):
        raise ValueError(f"res must be positive, got {res}")


def date_from_name(
    path: str, date_regex: re.Pattern[str], date_format: str
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The date interval in a file's base name (``date`` or ``year`` group), else ``None``.

    Raises:
        BadDatasetError: when the ``date`` group does not parse with ``date_format``.
    """
    match = date_regex.search(os.path.basename(path))
    if match is None:
        return None
    groups = match.groupdict()
    if groups.get("date"):
        text, fmt = groups["date"], date_format
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


def date_from_tags(src: Any) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The day of the first of `DATE_TAGS` found in an open raster's tags, else ``None``."""
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


def find_geotiffs(
    paths: Sequence[str | os.PathLike[str]],
    listing: Callable[[], Sequence[str]],
    extensions: Sequence[str],
) -> list[str]:
    """The files with one of ``extensions`` (case-insensitive) in ``listing()``, in its order.

    Args:
        paths: the paths searched, each of which must exist.
        listing: the files under ``paths`` (called once they are known to exist).
        extensions: the extensions indexed, lower case with the dot (``".tif"``).

    Raises:
        DatasetNotFoundError: for a path that does not exist, or when no file is found.
    """
    for path in paths:
        if not os.path.exists(path):
            raise DatasetNotFoundError(path, "path does not exist", dataset="rasters")
    files = [f for f in listing() if os.path.splitext(f)[1].lower() in extensions]
    if not files:
        raise DatasetNotFoundError(
            ", ".join(os.fspath(p) for p in paths),
            f"no GeoTIFF ({', '.join('*' + e for e in extensions)}) found",
            dataset="rasters",
        )
    return files


def scan_raster_file(
    path: str, bands: Sequence[int] | None, date_regex: re.Pattern[str], date_format: str
) -> RasterFileInfo:
    """Check one file (readable, CRS, bands) and find its date.

    Raises:
        BadDatasetError: naming the file, when it is unreadable, has no CRS, lacks a band of
            ``bands`` or has no date.
    """
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
            date = date_from_name(path, date_regex, date_format) or date_from_tags(src)
            dtype = str(src.dtypes[0])
            nodata = None if src.nodata is None else float(src.nodata)
            problem = truncated_blocks(src)
            chosen = model_bands(src.colorinterp, bands)
    except RasterioError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise BadDatasetError(path, f"not a readable raster ({message})") from None
    if date is None:
        raise BadDatasetError(
            path,
            "no acquisition date: the file name has none (filename_regex "
            f"{date_regex.pattern.strip()!r}) and the GeoTIFF has none of the tags "
            f"{', '.join(DATE_TAGS)}",
        )
    return RasterFileInfo(path, count, dtype, nodata, date[0], date[1], problem, chosen)


def group_band_files(
    files: Sequence[str],
    names: Sequence[str],
    date_regex: re.Pattern[str],
    searched: Sequence[str | os.PathLike[str]],
) -> list[list[str]]:
    """Group one-band files into products: ``[P][len(names)]`` paths, sorted by product.

    A product is the set of files whose paths differ only in the regex's ``band`` group.

    Args:
        files: the files found.
        names: the bands to read, in order.
        date_regex: the compiled ``filename_regex`` (with a ``band`` group).
        searched: the paths searched (for the error message).

    Raises:
        BadDatasetError: naming the file whose name has no band, or the product that lacks a
            band of ``names`` (with the file name it should have).
        DatasetNotFoundError: when no file has a band of ``names``.
    """
    wanted = set(names)
    products: dict[tuple[str, str], dict[str, str]] = {}
    for path in files:
        name = os.path.basename(path)
        match = date_regex.search(name)
        band = match.group("band") if match is not None else None
        if match is None or band is None:
            raise BadDatasetError(
                path,
                "no band in the file name (filename_regex "
                f"{date_regex.pattern.strip()!r} has no match with a 'band' group)",
            )
        if band not in wanted:
            continue  # another band of the product
        start, end = match.span("band")
        key = (os.path.dirname(path), name[:start] + "{band}" + name[end:])
        products.setdefault(key, {})[band] = path
    if not products:
        raise DatasetNotFoundError(
            ", ".join(os.fspath(p) for p in searched),
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


def native_res(path: str, crs: Any) -> tuple[float, float]:
    """A file's resolution in ``crs`` (its own when already in it; else GDAL's warp default)."""
    with rasterio.open(path) as src:
        if src.crs == crs:
            return abs(float(src.res[0])), abs(float(src.res[1]))
        with WarpedVRT(src, crs=crs) as vrt:
            return abs(float(vrt.res[0])), abs(float(vrt.res[1]))


def check_same_kind(infos: Sequence[RasterFileInfo], *, same_count: bool) -> None:
    """Raise BadDatasetError naming the first file whose dtype (or band count) differs."""
    first = infos[0]
    for info in infos[1:]:
        if info.dtype != first.dtype:
            raise BadDatasetError(
                info.path, f"dtype {info.dtype} differs from {first.dtype} of {first.path}"
            )
        if same_count and info.count != first.count:
            raise BadDatasetError(
                info.path,
                f"has {info.count} bands but {first.path} has {first.count}; pass bands=[...] "
                "to read bands that every file has",
            )
        if same_count and info.model_bands != first.model_bands:
            raise BadDatasetError(
                info.path,
                f"has the data bands {list(info.model_bands)} but {first.path} has "
                f"{list(first.model_bands)} (an alpha band is a mask, not data); pass bands=[...]",
            )


@dataclass(frozen=True)
class BandProducts:
    """What the scan of one-band files found (`scan_band_products`)."""

    #: Every band file's info, product by product, in ``band_names`` order.
    infos: list[RasterFileInfo]
    #: The info of each product's indexed (reference band) file.
    indexed: list[RasterFileInfo]
    #: The CRS (the one given, else the first file's).
    crs: Any
    #: The resolution (the one given, else the finest band's).
    res: float | tuple[float, float]
    #: The band whose file indexes each product: the finest (the first of equals).
    reference_band: str
    #: Indexed file -> the product's band files in ``band_names`` order.
    band_files: dict[str, list[str]]


def scan_band_products(
    found: Sequence[str],
    names: list[str],
    date_regex: re.Pattern[str],
    date_format: str,
    searched: Sequence[str | os.PathLike[str]],
    crs: Any,
    res: float | tuple[float, float] | None,
) -> BandProducts:
    """Scan one-band files as products (`group_band_files`), each indexed by its finest band.

    Args:
        found: the files found.
        names: the bands to read, in order.
        date_regex: the compiled ``filename_regex`` (with a ``band`` group).
        date_format: ``strptime`` format of the ``date`` group.
        searched: the paths searched (for the error message).
        crs: the CRS to read in, ``None`` for the first file's.
        res: the resolution, ``None`` for the finest band's.

    Returns:
        The [`BandProducts`][geossl.datasets.rasters.files.BandProducts].

    Raises:
        BadDatasetError: naming the file, as
            [`group_band_files`][geossl.datasets.rasters.files.group_band_files] and
            [`scan_raster_file`][geossl.datasets.rasters.files.scan_raster_file] do, or when a band
            file holds more than one band.
    """
    products = group_band_files(found, names, date_regex, searched)
    by_file = {
        p: scan_raster_file(p, None, date_regex, date_format) for files in products for p in files
    }
    for path, info in by_file.items():
        if info.count != 1:
            raise BadDatasetError(
                path,
                f"has {info.count} bands; with band_names every file holds one band",
            )
    if crs is None:  # the first file's, as without band_names
        with rasterio.open(products[0][0]) as src:
            crs = src.crs
    areas = [math.prod(native_res(p, crs)) for p in products[0]]
    finest = int(np.argmin(areas))  # the first of equals, in band_names order
    if res is None:
        res = native_res(products[0][finest], crs)
    return BandProducts(
        infos=[by_file[p] for files in products for p in files],
        indexed=[by_file[files[finest]] for files in products],
        crs=crs,
        res=res,
        reference_band=names[finest],
        band_files={files[finest]: list(files) for files in products},
    )
