"""geossl.losses: small loss modules that take embeddings and return a scalar."""

from .co2 import CO2Loss
from .geo import GeoLocationLoss
from .moco import MoCoLoss
from .scrl import SCRLLoss

__all__ = ["CO2Loss", "GeoLocationLoss", "MoCoLoss", "SCRLLoss"]
