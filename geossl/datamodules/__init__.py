"""geossl.datamodules: Lightning data modules."""

from geossl.datamodules.fmow import FMoWDataModule
from geossl.datamodules.rasters import RasterTimeSeriesDataModule

__all__ = ["FMoWDataModule", "RasterTimeSeriesDataModule"]
