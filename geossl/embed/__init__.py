"""geossl.embed: embeddings of rasters and fMoW folders with a pretrained backbone.

:func:`embed_rasters` (behind ``geossl embed``) cuts each input into chips, embeds them and writes
a GeoParquet (one row per chip) or chip-grid GeoTIFFs (one pixel per chip), plus false-colour PCA
previews. The modules, in the order a chip goes through them: :mod:`~geossl.embed.sources` and
:mod:`~geossl.embed.fmow_items` (the inputs), :mod:`~geossl.embed.plan` (options and output
names), :mod:`~geossl.embed.chips` and :mod:`~geossl.embed.reading` (windowed reads),
:mod:`~geossl.embed.runner` (the model), :mod:`~geossl.embed.sink` and
:mod:`~geossl.embed.writers` (the files), :mod:`~geossl.embed.preview` (PCA and previews),
:mod:`~geossl.embed.report` (what the run did) and :mod:`~geossl.embed.pipeline` (all of it).
"""

from .pipeline import embed_rasters
from .plan import FORMATS, EmbedOptions, Format, OutputPlan, output_paths
from .report import EmbedReport
from .runner import describe_pooling
from .sources import FMoWSource, RasterSource, Source, find_sources

__all__ = [
    "FORMATS",
    "EmbedOptions",
    "EmbedReport",
    "FMoWSource",
    "Format",
    "OutputPlan",
    "RasterSource",
    "Source",
    "describe_pooling",
    "embed_rasters",
    "find_sources",
    "output_paths",
]
