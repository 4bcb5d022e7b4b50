"""geossl.models: backbones (timm), heads, the MoCo key queue (weights: geossl.weights)."""

from .backbones import (
    check_backbone_name,
    create_backbone,
    forward_feature_map,
    get_num_features,
    pool_feature_map,
)
from .heads import GeoLocationHead
from .queue import KeyQueue
from .scrl import SCRLPredictionHead, SCRLProjectionHead, roi_features

__all__ = [
    "GeoLocationHead",
    "KeyQueue",
    "SCRLPredictionHead",
    "SCRLProjectionHead",
    "check_backbone_name",
    "create_backbone",
    "forward_feature_map",
    "get_num_features",
    "pool_feature_map",
    "roi_features",
]
