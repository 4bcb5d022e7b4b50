"""geossl.datamodules: Lightning data modules."""

from geossl.datamodules.fmow import FMoWDataModule
from geossl.datamodules.fmow_classification import FMoWClassificationDataModule
from geossl.datamodules.rasters import RasterTimeSeriesDataModule
from geossl.datamodules.scenes import ScenesDataModule
from geossl.datamodules.spacenet import SpaceNetDataModule
from geossl.datamodules.xview import XViewDataModule

__all__ = [
    "FMoWClassificationDataModule",
    "FMoWDataModule",
    "RasterTimeSeriesDataModule",
    "ScenesDataModule",
    "SpaceNetDataModule",
    "XViewDataModule",
]
