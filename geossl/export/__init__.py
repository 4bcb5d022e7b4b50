"""geossl.export: pretrained weights for torchgeo / timm users."""

from .weights import ExportedWeights, LoadedBackbone, WeightsMeta, export_weights, load_backbone

__all__ = [
    "ExportedWeights",
    "LoadedBackbone",
    "WeightsMeta",
    "export_weights",
    "load_backbone",
]
