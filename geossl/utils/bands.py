"""Band names and scales that datasets, data modules and weights all speak of.

They live here, below both `geossl.datasets` and `geossl.weights`, so that the fMoW
product table (`geossl.datasets.fmow.constants.FMOW_PRODUCTS`) can name its RGB bands and
the weights readers can describe RGB weights without either importing the other.
"""

__all__ = ["RGB_BANDS", "UINT8_SCALE"]

#: Band names of an RGB image (fMoW-rgb JPEGs, torchgeo's GASSL weights, timm's ImageNet weights).
RGB_BANDS: tuple[str, ...] = ("red", "green", "blue")

#: Scale from 8-bit pixel values to ``[0, 1]``.
UINT8_SCALE = 1.0 / 255.0
