"""geossl.synthetic: seeded generators of small samples in the real on-disk layouts.

Each generator writes a dataset's real file names, folder tree, JSON / CSV / GeoJSON fields, CRS,
transforms and dtypes, with procedural pixels, so that readers, indexes, data modules and the CLI
are tested without the real data. The same seed and arguments give byte-identical files. Every
GeoTIFF goes through the one writer
[`geossl.synthetic.common.write_geotiff`][geossl.synthetic.common.write_geotiff].
"""

from geossl.synthetic.fmow import FMoWSampleSummary, generate_fmow_sample
from geossl.synthetic.fmow_sentinel import (
    FMoWSentinelSampleSummary,
    generate_fmow_sentinel_sample,
)
from geossl.synthetic.rasters import RasterSampleSummary, generate_raster_timeseries_sample
from geossl.synthetic.scenes import generate_scene_sample
from geossl.synthetic.spacenet import SpaceNetSampleSummary, generate_spacenet_sample
from geossl.synthetic.xview import XViewSampleSummary, generate_xview_sample

__all__ = [
    "FMoWSampleSummary",
    "FMoWSentinelSampleSummary",
    "RasterSampleSummary",
    "SpaceNetSampleSummary",
    "XViewSampleSummary",
    "generate_fmow_sample",
    "generate_fmow_sentinel_sample",
    "generate_raster_timeseries_sample",
    "generate_scene_sample",
    "generate_spacenet_sample",
    "generate_xview_sample",
]
