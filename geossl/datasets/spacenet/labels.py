"""SpaceNet building labels: GeoJSON polygons read, reprojected and rasterised on an image grid.

Polygons in any CRS are reprojected to the image's CRS and rasterised with
``rasterio.features.rasterize(all_touched=False)`` (a pixel is a building when its centre is
inside a polygon: torchgeo's rule) into a 0/1 mask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from rasterio.crs import CRS as RasterioCRS
from rasterio.features import rasterize
from rasterio.transform import Affine
from shapely.geometry import shape as shapely_shape
from shapely.geometry.base import BaseGeometry

from geossl.datasets.errors import InvalidSampleError
from geossl.datasets.spacenet.constants import GEOJSON_DEFAULT_CRS

__all__ = ["BuildingLabels", "rasterize_buildings", "read_building_labels"]

#: GeoJSON geometry types read as building footprints; any other type is skipped and counted.
_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class BuildingLabels:
    """The building polygons of one GeoJSON file.

    Attributes:
        path: the file.
        polygons: Polygon / MultiPolygon geometries (2-D) in `crs`.
        crs: the file's CRS (its ``crs`` member, else RFC 7946's WGS 84 longitude / latitude).
        skipped: features without a polygonal geometry (null, points, lines), not rasterised.
        empty_file: the file has no bytes (SpaceNet-4 writes such files for tiles without
            buildings); read as no buildings.
    """

    path: Path
    polygons: tuple[BaseGeometry, ...]
    crs: CRS
    skipped: int = 0
    empty_file: bool = False


def _geojson_crs(data: Mapping[str, Any], path: Path) -> CRS:
    member = data.get("crs")
    if member is None:
        return CRS.from_user_input(GEOJSON_DEFAULT_CRS)
    try:
        name = member["properties"]["name"]
        return CRS.from_user_input(name)
    except (KeyError, TypeError, ValueError, CRSError) as error:
        raise InvalidSampleError(path, "unreadable GeoJSON crs member", repr(member)) from error


def read_building_labels(path: str | os.PathLike[str]) -> BuildingLabels:
    """Read the building polygons of a GeoJSON file.

    Accepts a FeatureCollection, a Feature or a bare geometry; an empty (0-byte) file means no
    buildings. The ``crs`` member (old-style ``{"type": "name", "properties": {"name": ...}}``,
    as SpaceNet writes it) gives the CRS; without it the coordinates are WGS 84 longitude /
    latitude (RFC 7946). Z coordinates are dropped.

    Args:
        path: the GeoJSON file.

    Returns:
        The [`BuildingLabels`][geossl.datasets.spacenet.labels.BuildingLabels].

    Raises:
        FileNotFoundError: if the file does not exist.
        InvalidSampleError: if the file is not GeoJSON (not JSON, or JSON without a GeoJSON
            ``type``), or a geometry or the CRS cannot be parsed; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        return BuildingLabels(path, (), CRS.from_user_input(GEOJSON_DEFAULT_CRS), 0, True)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidSampleError(path, "not GeoJSON", f"not JSON: {error}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InvalidSampleError(path, "not GeoJSON", "FeatureCollection without features")
        geometries = [f.get("geometry") if isinstance(f, dict) else None for f in features]
    elif kind == "Feature":
        geometries = [data.get("geometry")]
    elif kind in (*_POLYGONAL, "Point", "MultiPoint", "LineString", "MultiLineString"):
        geometries = [data]
    else:
        raise InvalidSampleError(path, "not GeoJSON", f"type {kind!r}")
    crs = _geojson_crs(data, path)
    polygons: list[BaseGeometry] = []
    skipped = 0
    for geometry in geometries:
        if not isinstance(geometry, dict) or geometry.get("type") not in _POLYGONAL:
            skipped += 1
            continue
        try:
            polygon = shapely.force_2d(shapely_shape(geometry))
        except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException) as error:
            raise InvalidSampleError(path, "bad GeoJSON geometry", str(error)) from None
        if polygon.is_empty:
            skipped += 1
            continue
        polygons.append(polygon)
    return BuildingLabels(path, tuple(polygons), crs, skipped)


def _reproject(geometries: Sequence[BaseGeometry], src: CRS, dst: CRS) -> list[BaseGeometry]:
    """Reproject 2-D geometries (coordinates in x / y = longitude / latitude order)."""
    if src == dst or not geometries:
        return list(geometries)
    transformer = Transformer.from_crs(src, dst, always_xy=True)

    def forward(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return [shapely.transform(g, forward) for g in geometries]


def rasterize_buildings(
    labels: BuildingLabels,
    *,
    transform: Affine,
    crs: CRS | RasterioCRS | str,
    shape: tuple[int, int],
) -> npt.NDArray[np.uint8]:
    """Rasterise building polygons on an image grid: 1 where a pixel centre is inside a polygon.

    The polygons are reprojected from ``labels.crs`` to ``crs`` first; rasterisation is
    ``rasterio.features.rasterize(all_touched=False)``, torchgeo's and solaris' rule.

    Args:
        labels: the polygons
            ([`read_building_labels`][geossl.datasets.spacenet.labels.read_building_labels]).
        transform: the image's affine transform.
        crs: the image's CRS.
        shape: ``(height, width)`` of the image.

    Returns:
        ``uint8 [height, width]`` with 0 (background) and 1 (building).
    """
    target = CRS.from_user_input(crs.to_wkt() if isinstance(crs, RasterioCRS) else crs)
    polygons = _reproject(labels.polygons, labels.crs, target)
    if not polygons:
        return np.zeros(shape, dtype=np.uint8)
    mask = rasterize(
        [(p, 1) for p in polygons],
        out_shape=shape,
        transform=transform,
        fill=0,
        all_touched=False,
        dtype="uint8",
    )
    return np.asarray(mask, dtype=np.uint8)
