"""geossl.datasets: readers, indexes, sample generators and downloaders of the datasets."""

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
from geossl.datasets.fmow_sample import FMoWSampleSummary, generate_fmow_sample
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit, spherical_kmeans
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters, ValidityGrid
from geossl.datasets.rasters_sample import RasterSampleSummary, generate_raster_timeseries_sample
from geossl.datasets.scenes import LabelledScenes, read_scene_labels
from geossl.datasets.scenes_sample import generate_scene_sample
from geossl.datasets.spacenet import SpaceNetChips, SpaceNetTiles
from geossl.datasets.spacenet_sample import SpaceNetSampleSummary, generate_spacenet_sample
from geossl.datasets.xview import XView, XViewChipParams
from geossl.datasets.xview_sample import XViewSampleSummary, generate_xview_sample

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
    "FMoWSampleSummary",
    "FMoWTemporalPairs",
    "InvalidSampleError",
    "LabelledScenes",
    "RasterSampleSummary",
    "RasterTemporalPairs",
    "SpaceNetChips",
    "SpaceNetSampleSummary",
    "SpaceNetTiles",
    "TimeSeriesRasters",
    "ValidityGrid",
    "XView",
    "XViewChipParams",
    "XViewSampleSummary",
    "assign_clusters",
    "build_fmow_index",
    "download_fmow",
    "fmow_context_box",
    "generate_fmow_sample",
    "generate_raster_timeseries_sample",
    "generate_scene_sample",
    "generate_spacenet_sample",
    "generate_xview_sample",
    "latlon_to_unit",
    "parse_fmow_json",
    "read_fmow_image",
    "read_scene_labels",
    "spherical_kmeans",
]
