"""geossl.transforms: batched on-device augmentation."""

from .augmentation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    GeoSSLAugmentation,
    RandomBandJitter,
    ViewParams,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "GeoSSLAugmentation", "RandomBandJitter", "ViewParams"]
