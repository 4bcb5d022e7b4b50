"""geossl.datamodules: Lightning data modules."""

from geossl.datamodules.fmow import FMoWDataModule

__all__ = ["FMoWDataModule"]
