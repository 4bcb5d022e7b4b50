"""geossl.datasets: readers, indexes, sample generators and downloaders of the datasets."""

from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError, InvalidSampleError
from geossl.datasets.fmow import (
    FMoW,
    FMoWImageMeta,
    FMoWTemporalPairs,
    fmow_context_box,
    parse_fmow_json,
    read_fmow_image,
)
from geossl.datasets.fmow_constants import FMOW_CATEGORIES, FMOW_SPLITS
from geossl.datasets.fmow_download import DownloadReport, download_fmow
from geossl.datasets.fmow_index import FMoWIndex, FMoWIndexReport, build_fmow_index
from geossl.datasets.fmow_sample import FMoWSampleSummary, generate_fmow_sample
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit, spherical_kmeans
from geossl.datasets.rasters import RasterTemporalPairs, TimeSeriesRasters, ValidityGrid
from geossl.datasets.rasters_sample import RasterSampleSummary, generate_raster_timeseries_sample

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
    "FMoWSampleSummary",
    "FMoWTemporalPairs",
    "InvalidSampleError",
    "RasterSampleSummary",
    "RasterTemporalPairs",
    "TimeSeriesRasters",
    "ValidityGrid",
    "assign_clusters",
    "build_fmow_index",
    "download_fmow",
    "fmow_context_box",
    "generate_fmow_sample",
    "generate_raster_timeseries_sample",
    "latlon_to_unit",
    "parse_fmow_json",
    "read_fmow_image",
    "spherical_kmeans",
]
