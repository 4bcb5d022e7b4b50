"""geossl.models: backbones (timm), heads, the MoCo key queue and pretrained weights."""

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
from .weights import (
    GeoSSLWeights,
    LocalWeights,
    WeightsMeta,
    read_weights,
    resnet18,
    resnet50,
)

__all__ = [
    "GeoLocationHead",
    "GeoSSLWeights",
    "KeyQueue",
    "LocalWeights",
    "SCRLPredictionHead",
    "SCRLProjectionHead",
    "WeightsMeta",
    "check_backbone_name",
    "create_backbone",
    "forward_feature_map",
    "get_num_features",
    "pool_feature_map",
    "read_weights",
    "resnet18",
    "resnet50",
    "roi_features",
]
