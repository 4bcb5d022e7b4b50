"""One fMoW image as an embedding input: its context crop, footprint and time.

Each image of an [`FMoWSource`][geossl.embed.sources.FMoWSource] is one embedding of its context
crop, the view the pretraining pipeline sees, placed by the JSON's ``raw_location`` footprint and
``timestamp``. An image that cannot be used is skipped and counted by reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from geossl.embed.chips import split_antimeridian
from geossl.embed.sources import crs_label, open_raster

__all__ = ["FMoWItem", "read_fmow_item"]


@dataclass(frozen=True, slots=True)
class FMoWItem:
    """One fMoW image read for embedding.

    Attributes:
        pixels: ``float32 [C, size, size]`` context crop in ``[0, 1]``.
        window: the crop ``(col_off, row_off, width, height)`` in image pixels.
        footprint: the image footprint from ``raw_location`` (lon/lat, split at the antimeridian).
        lon: longitude of the footprint's centroid.
        lat: latitude of the footprint's centroid.
        datetime: the acquisition time (the JSON ``timestamp``).
        crs: the image's CRS label for a GeoTIFF, None for a JPEG.
    """

    pixels: npt.NDArray[np.float32]
    window: tuple[int, int, int, int]
    footprint: shapely.Geometry
    lon: float
    lat: float
    datetime: datetime
    crs: str | None


def _footprint(value: Any) -> shapely.Geometry | None:
    """The ``raw_location`` WKT as a valid lon/lat (Multi)Polygon, None when unusable."""
    if not isinstance(value, str):
        return None
    try:
        geometry = shapely.from_wkt(value)
    except shapely.errors.ShapelyError:
        return None
    if not isinstance(geometry, shapely.Polygon) or geometry.is_empty:
        return geometry if isinstance(geometry, shapely.MultiPolygon) else None
    coords = np.asarray(geometry.exterior.coords)
    if not np.isfinite(coords).all() or np.abs(coords[:, 1]).max() > 90.0:
        return None
    west, east = coords[:, 0].min(), coords[:, 0].max()
    if west >= -180.0 and east <= 180.0 and east - west <= 180.0:
        return geometry  # the common case, kept bit for bit
    lon0 = coords[0, 0]
    lons = lon0 + (coords[:, 0] - lon0 + 180.0) % 360.0 - 180.0
    lons -= 360.0 * np.round(lon0 / 360.0)
    return split_antimeridian(shapely.Polygon(np.stack([lons, coords[:, 1]], axis=1)))


def read_fmow_item(
    image: Path, size: int, bands: Sequence[int] | None, scale: float
) -> FMoWItem | str:
    """Read an fMoW image's context crop and its JSON (footprint, time).

    The crop is the standard target box plus context
    ([`fmow_context_box`][geossl.datasets.fmow_context_box]) resized to ``size x size``
    ([`read_fmow_image`][geossl.datasets.read_fmow_image]): the view the pretraining pipeline sees.

    Args:
        image: the image file; its JSON is ``image.with_suffix(".json")``.
        size: the crop's output side in pixels.
        bands: 1-based band indexes, None for all.
        scale: factor from raw values to ``[0, 1]`` (applied to JPEG and GeoTIFF alike).

    Returns:
        The item, or the reason it was skipped (``"invalid json"``, ``"no footprint"``,
        ``"degenerate box"``, ``"unreadable image"``).
    """
    from geossl.datasets.errors import InvalidSampleError
    from geossl.datasets.fmow import fmow_context_box, fmow_meta_from_dict, read_fmow_image

    try:
        data = json.loads(image.with_suffix(".json").read_bytes())
        meta = fmow_meta_from_dict(data, image.with_suffix(".json"))
    except (OSError, ValueError, UnicodeDecodeError, InvalidSampleError):
        return "invalid json"
    footprint = _footprint(data.get("raw_location"))
    if footprint is None:
        return "no footprint"
    crop = fmow_context_box(meta.box, meta.img_width, meta.img_height)
    if crop is None:
        return "degenerate box"
    crs: str | None = None
    try:
        if image.suffix.lower() == ".tif":
            with open_raster(image) as dataset:
                crs = crs_label(dataset.crs) if dataset.crs is not None else None
            tensor = read_fmow_image(image, crop, size, bands, scale=scale)
            pixels = tensor.numpy().astype(np.float32, copy=False)
        else:
            tensor = read_fmow_image(image, crop, size, bands)
            pixels = tensor.numpy().astype(np.float32) * np.float32(scale)
    except Exception:  # PIL, rasterio and OS errors alike: the image is skipped and counted
        return "unreadable image"
    return FMoWItem(
        pixels=pixels,
        window=(crop[0], crop[1], crop[2] - crop[0], crop[3] - crop[1]),
        footprint=footprint,
        lon=meta.lon,
        lat=meta.lat,
        datetime=datetime.fromtimestamp(meta.timestamp, tz=UTC),
        crs=crs,
    )
