"""fMoW-Sentinel: the metadata CSVs and the 13-band GeoTIFF headers.

fMoW-Sentinel (Cong et al., "SatMAE", NeurIPS 2022) pairs every fMoW location with a time series of
Sentinel-2 cloud composites: 13-band uint16 GeoTIFFs (reflectance times 10,000, bands
`FMOW_SENTINEL_BANDS`) at
``{split}/{category}/{category}_{location_id}/{category}_{location_id}_{image_id}.tif``, listed in
``train.csv``, ``val.csv`` and ``test_gt.csv`` with the columns ``category``, ``location_id``,
``image_id``, ``timestamp`` (``YYYY-MM-DDThh:mm:ssZ``, the centre of the composite's interval) and
``polygon`` (the footprint). ``image_id < 100`` comes from an fMoW image's date, ``>= 100`` fills
one of the nine 6-month intervals from 2015-07-01 to 2019-12-31 that had no fMoW image.

The CSV is the list of samples (no folder walk):
[`read_fmow_sentinel_csv`][geossl.datasets.fmow.sentinel.read_fmow_sentinel_csv] validates its rows,
[`read_sentinel_header`][geossl.datasets.fmow.sentinel.read_sentinel_header] opens each GeoTIFF's
header for its size, band count and the lon/lat of its centre (the raster's georeferencing is the
location; the CSV polygon is the fallback for a raster without CRS).
[`geossl.datasets.fmow.index.build_fmow_index`][geossl.datasets.fmow.index.build_fmow_index] with
``product="sentinel"`` runs both and caches the result like any fMoW index, so the fMoW datasets,
the temporal pair sampler and the geo clusters work on fMoW-Sentinel unchanged.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_SENTINEL_BANDS, FMOW_SENTINEL_CSV
from geossl.datasets.fmow.metadata import _parse_timestamp, _wkt_centroid

__all__ = [
    "SENTINEL_REQUIRED_COLUMNS",
    "SentinelHeader",
    "fmow_sentinel_path",
    "read_fmow_sentinel_csv",
    "read_sentinel_header",
]

#: Columns every fMoW-Sentinel CSV must have (``polygon`` is optional: the raster locates itself).
SENTINEL_REQUIRED_COLUMNS: tuple[str, ...] = ("category", "location_id", "image_id", "timestamp")

_CATEGORIES = frozenset(FMOW_CATEGORIES)


def fmow_sentinel_path(split: str, category: str, location_id: int, image_id: int) -> str:
    """The image path of a CSV row, relative to the root, ``/``-separated."""
    folder = f"{category}_{location_id}"
    return f"{split}/{category}/{folder}/{folder}_{image_id}.tif"


def _as_id(value: object) -> int | None:
    """A non-negative integer id from a CSV cell (``7``, ``"7"``, ``7.0``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value) if value >= 0 else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


def _read_sentinel_frame(path: Path) -> pd.DataFrame:
    """The CSV's cells as strings, column names stripped.

    Raises:
        BadDatasetError: if the CSV is missing, cannot be parsed or lacks a required column.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadDatasetError(path, f"cannot read the fMoW-Sentinel CSV ({message})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in SENTINEL_REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadDatasetError(
            path,
            f"the fMoW-Sentinel CSV lacks the column(s) {missing}; expected "
            f"{', '.join(SENTINEL_REQUIRED_COLUMNS)}[, polygon], found {list(frame.columns)}",
        )
    return frame


def read_fmow_sentinel_csv(
    root: str | os.PathLike[str], split: str
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Read and validate the metadata CSV of one fMoW-Sentinel split.

    A row is kept when its category is one of the 62 fMoW categories, its ids are non-negative
    integers, its timestamp parses (ISO 8601; naive times are UTC) and it is the first row of its
    ``(category, location_id, image_id)``. Other columns (an unnamed index column, say) are
    ignored.

    Args:
        root: the fMoW-Sentinel root (the CSVs lie in it).
        split: ``"train"``, ``"val"`` or ``"test"`` (read from ``test_gt.csv``).

    Returns:
        ``(rows, bad)``: the valid rows with the columns ``path`` (relative image path),
        ``category``, ``location_id``, ``image_id``, ``timestamp`` (unix seconds, int64), ``lon``,
        ``lat`` (the CSV polygon's centroid, NaN when absent or malformed), in CSV order; and one
        ``(reason, where)`` per skipped row (``where`` is ``"{csv}:{line}"``).

    Raises:
        ValueError: for a split fMoW-Sentinel does not have.
        BadDatasetError: if the CSV is missing, cannot be parsed or lacks a required column.
    """
    if split not in FMOW_SENTINEL_CSV:
        raise ValueError(f"fMoW-Sentinel has the splits {list(FMOW_SENTINEL_CSV)}, got {split!r}")
    name = FMOW_SENTINEL_CSV[split]
    frame = _read_sentinel_frame(Path(root) / name)
    polygons = frame["polygon"].tolist() if "polygon" in frame.columns else [None] * len(frame)
    rows: dict[str, list[object]] = {
        key: []
        for key in ("path", "category", "location_id", "image_id", "timestamp", "lon", "lat")
    }
    bad: list[tuple[str, str]] = []
    seen: set[tuple[str, int, int]] = set()
    categories = frame["category"].tolist()
    locations = frame["location_id"].tolist()
    images = frame["image_id"].tolist()
    times = frame["timestamp"].tolist()
    for number, (category, location, image, stamp, polygon) in enumerate(
        zip(categories, locations, images, times, polygons, strict=True)
    ):
        where = f"{name}:{number + 2}"  # line 1 is the header
        category = category.strip()
        if category not in _CATEGORIES:
            bad.append(("unknown category", where))
            continue
        location_id, image_id = _as_id(location), _as_id(image)
        if location_id is None or image_id is None:
            bad.append(("malformed id", where))
            continue
        timestamp = _parse_timestamp(stamp)
        if timestamp is None:
            bad.append(("malformed timestamp", where))
            continue
        key = (category, location_id, image_id)
        if key in seen:
            bad.append(("duplicate row", where))
            continue
        seen.add(key)
        centre = _wkt_centroid(polygon) if polygon else None
        rows["path"].append(fmow_sentinel_path(split, category, location_id, image_id))
        rows["category"].append(category)
        rows["location_id"].append(location_id)
        rows["image_id"].append(image_id)
        rows["timestamp"].append(timestamp)
        rows["lon"].append(centre[0] if centre is not None else math.nan)
        rows["lat"].append(centre[1] if centre is not None else math.nan)
    table = pd.DataFrame(rows)
    table = table.astype(
        {"location_id": "int64", "image_id": "int64", "timestamp": "int64", "lon": "float64"}
    ).astype({"lat": "float64"})
    return table, bad


@dataclass(frozen=True, slots=True)
class SentinelHeader:
    """What `read_sentinel_header` reads from a GeoTIFF's header.

    Attributes:
        width: pixels.
        height: pixels.
        lon: longitude of the raster's centre in degrees (NaN without a CRS).
        lat: latitude of the raster's centre in degrees (NaN without a CRS).
        gsd: pixel size in metres (NaN without a CRS).
    """

    width: int
    height: int
    lon: float
    lat: float
    gsd: float


def read_sentinel_header(
    path: str | os.PathLike[str], num_bands: int = len(FMOW_SENTINEL_BANDS)
) -> SentinelHeader | str:
    """Open a GeoTIFF's header (no pixels) and check it.

    Args:
        path: the image.
        num_bands: the band count the image must have (13: the images that failed to download hold
            a single null band).

    Returns:
        The header, or the reason to skip the image: ``"missing image"``, ``"empty image"``,
        ``"unreadable image"`` or ``"wrong band count"``.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.warp import transform

    try:
        if os.path.getsize(path) == 0:
            return "empty image"
    except OSError:
        return "missing image"
    try:
        with warnings.catch_warnings():
            # a raster without georeferencing is located by its CSV polygon instead
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != num_bands:
                    return "wrong band count"
                width, height = src.width, src.height
                left, bottom, right, top = src.bounds
                crs = src.crs
    except (OSError, RasterioError):
        return "unreadable image"
    if width < 1 or height < 1:
        return "empty image"
    if crs is None:
        return SentinelHeader(width, height, math.nan, math.nan, math.nan)
    cx, cy = (left + right) / 2.0, (bottom + top) / 2.0
    if crs.is_geographic:
        lon, lat = cx, cy
        # the pixel height in degrees of latitude (~111.32 km each; longitude degrees shrink)
        gsd = abs(top - bottom) / height * 111_320.0
    else:
        lons, lats = transform(crs, "EPSG:4326", [cx], [cy])
        lon, lat = lons[0], lats[0]
        gsd = abs(right - left) / width * (crs.linear_units_factor[1] if crs.is_projected else 1.0)
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 90.0:
        return SentinelHeader(width, height, math.nan, math.nan, math.nan)
    return SentinelHeader(width, height, (lon + 180.0) % 360.0 - 180.0, lat, gsd)
