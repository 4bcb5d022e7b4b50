"""SpaceNet constants and the fixed scaling of raw digital numbers to ``[0, 1]``.

Scaling ([`default_scale`][geossl.datasets.spacenet.constants.default_scale]): ``image = clip(dn *
    scale, 0, 1)`` with ``scale`` ``1/255`` for
uint8 (SpaceNet-1 ``3band``), ``1/2047`` for uint16 (WorldView-2/3 deliver 11-bit digital numbers:
every SpaceNet-1..4 uint16 product; the rare brighter pixels, e.g. 0.1 % of the SpaceNet-4 Atlanta
pan tile above 2047 with a maximum of 6615, saturate at 1) and 1 for floats. A fixed scale, not a
per-image percentile stretch, keeps radiometry comparable between tiles and between training and
test; the per-band normalisation comes after it, in the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "GEOJSON_DEFAULT_CRS",
    "IGNORE_INDEX",
    "TILE_ID_PATTERN",
    "UINT16_SCALE",
    "default_scale",
]

#: Mask value of padded pixels: ignored by the loss and the metrics (``model.ignore_index``).
IGNORE_INDEX = 255

#: Default tile id of a file name stem: ``img{N}`` (SpaceNet-1..3) or ``{easting}_{northing}``
#: (SpaceNet-4), at the end of the stem.
TILE_ID_PATTERN = r"(img\d+|\d+_\d+)$"

#: Scale of 11-bit digital numbers (WorldView-2/3 uint16 products) to ``[0, 1]``.
UINT16_SCALE = 1.0 / 2047.0

#: CRS of a GeoJSON file without a ``crs`` member (RFC 7946: WGS 84 longitude / latitude).
GEOJSON_DEFAULT_CRS = "OGC:CRS84"


def default_scale(dtype: str | np.dtype[Any]) -> float:
    """Scale of raw pixel values to ``[0, 1]`` for a raster data type (see the module doc).

    Args:
        dtype: the raster's data type (``"uint8"``, ``"uint16"``, ``"float32"``, ...).

    Returns:
        ``1/255`` for uint8, ``1/2047`` for (u)int16 (11-bit WorldView digital numbers), ``1`` for
        floating point.

    Raises:
        ValueError: for other integer types (give ``scale`` explicitly).
    """
    kind = np.dtype(dtype)
    if kind == np.uint8:
        return 1.0 / 255.0
    if kind in (np.uint16, np.int16):
        return UINT16_SCALE
    if np.issubdtype(kind, np.floating):
        return 1.0
    raise ValueError(f"no default scale to [0, 1] for {kind.name} pixels; give scale explicitly")
