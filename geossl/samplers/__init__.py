"""geossl.samplers: index samplers for the datasets."""

from geossl.samplers.shuffle import EpochShuffleSampler
from geossl.samplers.temporal import TemporalPairSampler
from geossl.samplers.temporal_geo import TemporalGeoGridSampler, TemporalGeoPairSampler

__all__ = [
    "EpochShuffleSampler",
    "TemporalGeoGridSampler",
    "TemporalGeoPairSampler",
    "TemporalPairSampler",
]
