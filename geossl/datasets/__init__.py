"""geossl.datasets: readers, indexes and downloaders of the datasets.

The seeded sample generators live in `geossl.synthetic`.
"""

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError, InvalidSampleError
from geossl.datasets.fmow import (
    FMOW_CATEGORIES,
    FMOW_SPLITS,
    DownloadReport,
    FMoW,
    FMoWImageMeta,
    FMoWIndex,
    FMoWIndexReport,
    FMoWLocations,
    FMoWTemporalPairs,
    build_fmow_index,
    download_fmow,
    fmow_context_box,
    parse_fmow_json,
    read_fmow_image,
)
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit, spherical_kmeans
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters, ValidityGrid
from geossl.datasets.scenes import LabelledScenes, read_scene_labels
from geossl.datasets.spacenet import SpaceNetChips, SpaceNetTiles
from geossl.datasets.xview import XView, XViewChipParams

__all__ = [
    "FMOW_CATEGORIES",
    "FMOW_SPLITS",
    "BadDatasetError",
    "DatasetNotFoundError",
    "DownloadReport",
    "FMoW",
    "FMoWImageMeta",
    "FMoWIndex",
    "FMoWIndexReport",
    "FMoWLocations",
    "FMoWTemporalPairs",
    "InvalidSampleError",
    "LabelledScenes",
    "RasterTemporalPairs",
    "SpaceNetChips",
    "SpaceNetTiles",
    "TimeSeriesRasters",
    "ValidityGrid",
    "XView",
    "XViewChipParams",
    "assign_clusters",
    "build_fmow_index",
    "download_fmow",
    "fmow_context_box",
    "latlon_to_unit",
    "parse_fmow_json",
    "read_fmow_image",
    "read_scene_labels",
    "spherical_kmeans",
]
