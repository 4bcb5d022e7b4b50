"""geossl.transforms: batched on-device augmentation."""

from .augmentation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    GeoSSLAugmentation,
    ViewParams,
)
from .boxes import ScrlBoxes, box_iou_batched, sample_scrl_boxes
from .photometric import RandomBandJitter

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "GeoSSLAugmentation",
    "RandomBandJitter",
    "ScrlBoxes",
    "ViewParams",
    "box_iou_batched",
    "sample_scrl_boxes",
]
