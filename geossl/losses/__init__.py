"""geossl.losses: small loss modules that take embeddings and return a scalar."""

from .geo import GeoLocationLoss
from .moco import MoCoLoss

__all__ = ["GeoLocationLoss", "MoCoLoss"]
