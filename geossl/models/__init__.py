"""geossl.models: backbones (timm), heads and the MoCo key queue."""

from .backbones import (
    check_backbone_name,
    create_backbone,
    forward_feature_map,
    get_num_features,
    pool_feature_map,
)
from .heads import GeoLocationHead
from .queue import KeyQueue

__all__ = [
    "GeoLocationHead",
    "KeyQueue",
    "check_backbone_name",
    "create_backbone",
    "forward_feature_map",
    "get_num_features",
    "pool_feature_map",
]
