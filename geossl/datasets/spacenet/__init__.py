"""SpaceNet building footprints: image tiles with GeoJSON polygons as ``image`` / ``mask`` samples.

torchgeo 0.8.1 reads the SpaceNet-1/2 tarball layouts (`torchgeo.datasets.SpaceNet1`,
``SpaceNet2``, ...). What it lacks, and this package adds:

- [`SpaceNetTiles`][geossl.datasets.spacenet.tiles.SpaceNetTiles]: any folder of image GeoTIFFs with
  one GeoJSON of building polygons per tile (the SpaceNet-4 layout, a solaris sample, a user's own
  tiles), or an explicit list of ``(image, label)`` pairs. Polygons in any CRS are reprojected to
  the image's CRS and rasterised with ``rasterio.features.rasterize(all_touched=False)`` (a pixel is
  a building when its centre is inside a polygon: torchgeo's rule) into a 0/1 ``mask``.
- [`SpaceNetChips`][geossl.datasets.spacenet.chips.SpaceNetChips]: torchgeo's SpaceNet samples (raw
  digital numbers as float, ``mask`` long) as geossl samples: ``image`` scaled to ``[0, 1]``, padded
  or cropped to a fixed size so that batches stack, and the mask of a resampled chip rasterised on
  the right grid (a torchgeo defect, see the class).
- [`band_statistics`][geossl.datasets.spacenet.stats.band_statistics]: per-band mean / std of the
  ``[0, 1]`` images, the normalisation a band set without pretrained statistics (a pan band) needs
  (``model.mean`` / ``model.std``).

Scaling to ``[0, 1]`` ([`default_scale`][geossl.datasets.spacenet.constants.default_scale]): ``image
= clip(dn * scale, 0, 1)`` with ``scale`` ``1/255`` for uint8 (SpaceNet-1 ``3band``), ``1/2047`` for
uint16 (WorldView-2/3 deliver 11-bit digital numbers: every SpaceNet-1..4 uint16 product; the rare
brighter pixels, e.g. 0.1 % of the SpaceNet-4 Atlanta pan tile above 2047 with a maximum of 6615,
saturate at 1) and 1 for floats. A fixed scale, not a per-image percentile stretch, keeps radiometry
comparable between tiles and between training and test; the per-band normalisation comes after it,
in the model.

The package holds one module per job: [`constants`][geossl.datasets.spacenet.constants] (the
constants, the scaling), [`labels`][geossl.datasets.spacenet.labels] (GeoJSON reading, reprojection,
rasterisation), [`tiles`][geossl.datasets.spacenet.tiles]
([`SpaceNetTiles`][geossl.datasets.spacenet.tiles.SpaceNetTiles]),
[`chips`][geossl.datasets.spacenet.chips]
([`SpaceNetChips`][geossl.datasets.spacenet.chips.SpaceNetChips] and the size helpers) and
[`stats`][geossl.datasets.spacenet.stats]
([`band_statistics`][geossl.datasets.spacenet.stats.band_statistics]).
"""

from geossl.datasets.spacenet.chips import SpaceNetChips, fit_to_size, padded_size
from geossl.datasets.spacenet.constants import (
    GEOJSON_DEFAULT_CRS,
    IGNORE_INDEX,
    TILE_ID_PATTERN,
    UINT16_SCALE,
    default_scale,
)
from geossl.datasets.spacenet.labels import (
    BuildingLabels,
    rasterize_buildings,
    read_building_labels,
)
from geossl.datasets.spacenet.stats import band_statistics
from geossl.datasets.spacenet.tiles import SpaceNetTiles

__all__ = [
    "GEOJSON_DEFAULT_CRS",
    "IGNORE_INDEX",
    "TILE_ID_PATTERN",
    "UINT16_SCALE",
    "BuildingLabels",
    "SpaceNetChips",
    "SpaceNetTiles",
    "band_statistics",
    "default_scale",
    "fit_to_size",
    "padded_size",
    "rasterize_buildings",
    "read_building_labels",
]
