"""geossl.export: embeddings of rasters for GIS tools (weights: :mod:`geossl.weights`)."""

from .embed import EmbedReport, embed_rasters

__all__ = ["EmbedReport", "embed_rasters"]
