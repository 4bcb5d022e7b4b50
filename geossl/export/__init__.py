"""geossl.export: pretrained weights for torchgeo / timm users (and, next to it, embeddings)."""

from .embed import EmbedReport, embed_rasters
from .weights import ExportedWeights, LoadedBackbone, WeightsMeta, export_weights, load_backbone

__all__ = [
    "EmbedReport",
    "ExportedWeights",
    "LoadedBackbone",
    "WeightsMeta",
    "embed_rasters",
    "export_weights",
    "load_backbone",
]
