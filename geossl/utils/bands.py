"""Band names and scales that datasets, data modules and weights all speak of.

They live here, below both `geossl.datasets` and `geossl.weights`, so that the fMoW
product table (`geossl.datasets.fmow.constants.FMOW_PRODUCTS`) can name its RGB bands and
the weights readers can describe RGB weights without either importing the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RGB_BANDS", "UINT8_SCALE", "model_bands"]

#: Band names of an RGB image (fMoW-rgb JPEGs, torchgeo's GASSL weights, timm's ImageNet weights).
RGB_BANDS: tuple[str, ...] = ("red", "green", "blue")

#: Scale from 8-bit pixel values to ``[0, 1]``.
UINT8_SCALE = 1.0 / 255.0


def model_bands(colorinterp: Sequence[Any], bands: Sequence[int] | None = None) -> tuple[int, ...]:
    """The 1-based bands of a raster that a model reads: the rule of pretraining and embedding.

    The bands named by the user, else every band whose colour interpretation is not alpha: as in
    GIS software, an alpha band (a 4-band uint8 GeoTIFF tagged RGBA) is a mask, not data. The
    readers use it as the mask (GDAL's per-dataset alpha mask).

    Args:
        colorinterp: each band's colour interpretation (rasterio's ``dataset.colorinterp``:
            ``ColorInterp`` members, or their names).
        bands: 1-based band indexes named by the user (``data.bands``, ``--bands``), or None.

    Returns:
        The 1-based band indexes.

    Example:
        >>> from rasterio.enums import ColorInterp as C
        >>> model_bands([C.red, C.green, C.blue, C.alpha])
        (1, 2, 3)
        >>> model_bands([C.red, C.green, C.blue, C.alpha], bands=[1, 2, 3, 4])
        (1, 2, 3, 4)
        >>> model_bands([C.gray, C.undefined, C.undefined, C.undefined])
        (1, 2, 3, 4)
    """
    if bands is not None:
        return tuple(int(b) for b in bands)
    return tuple(i + 1 for i, c in enumerate(colorinterp) if getattr(c, "name", c) != "alpha")
