"""geossl.samplers: index samplers for the datasets."""

from geossl.samplers.temporal import TemporalPairSampler

__all__ = ["TemporalPairSampler"]
