"""geossl.embed: embeddings of rasters and fMoW folders with a pretrained backbone.

[`embed_rasters`][geossl.embed.pipeline.embed_rasters] (behind ``geossl embed``) cuts each input
into chips, embeds them and writes a GeoParquet (one row per chip) or chip-grid GeoTIFFs (one pixel
per chip), plus false-colour PCA previews. The modules, in the order a chip goes through them:
[`sources`][geossl.embed.sources], [`fmow_items`][geossl.embed.fmow_items] and
[`stac`][geossl.embed.stac] with [`stac_vrt`][geossl.embed.stac_vrt] (the inputs),
[`plan`][geossl.embed.plan] (options and output names), [`chips`][geossl.embed.chips] and
[`reading`][geossl.embed.reading] (windowed reads), [`runner`][geossl.embed.runner] (the model),
[`sink`][geossl.embed.sink] and [`writers`][geossl.embed.writers] (the files),
[`preview`][geossl.embed.preview] (PCA and previews), [`report`][geossl.embed.report] (what the run
did) and [`pipeline`][geossl.embed.pipeline] (all of it).
"""

from .pipeline import embed_rasters
from .plan import FORMATS, EmbedOptions, Format, OutputPlan, output_paths
from .report import EmbedReport
from .runner import describe_pooling
from .sources import FMoWSource, RasterSource, Source, find_sources
from .stac import stac_rasters

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
    "stac_rasters",
]
