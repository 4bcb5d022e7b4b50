"""Your own co-located GeoTIFF time series, read per date, and its temporal pairs.

* :mod:`~geossl.datasets.rasters.files`: the files' dates, checks and band products;
* :mod:`~geossl.datasets.rasters.reading`: the windowed reads and mosaics;
* :mod:`~geossl.datasets.rasters.validity`: where each date has data (:class:`ValidityGrid`);
* :mod:`~geossl.datasets.rasters.dataset`: :class:`TimeSeriesRasters`, a torchgeo
  ``RasterDataset`` with a per-date index;
* :mod:`~geossl.datasets.rasters.pairs`: :class:`RasterTemporalPairs`, two dates of one patch as
  geossl's pair sample.
"""

from geossl.datasets.rasters.dataset import PatchQuery, TimeSeriesRasters
from geossl.datasets.rasters.files import (
    DATE_TAGS,
    DEFAULT_BAND_FILENAME_REGEX,
    DEFAULT_FILENAME_REGEX,
)
from geossl.datasets.rasters.pairs import PairQuery, RasterTemporalPairs
from geossl.datasets.rasters.validity import ValidityGrid

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
