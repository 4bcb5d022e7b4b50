"""Stack the assets of one STAC item into one raster: a GDAL VRT of their bands, in order.

[`stack_vrt`][geossl.embed.stac_vrt.stack_vrt] writes the XML of a ``<VRTDataset>`` with one
``<VRTRasterBand>`` per band of each asset (an asset of ``k`` bands gives ``k`` bands, in its
order), every band a ``<ComplexSource>`` placed by the asset's geotransform on the grid of the
finest asset (the first of the finest when several share the smallest pixel). Coarser assets are
resampled by nearest neighbour (GDAL's VRT resampling), so no value is invented; the assets must
share one CRS and have north-up geotransforms. Each band keeps its asset's nodata value and colour
interpretation (an alpha band stays alpha, so GDAL's dataset mask still uses it), and an asset
with an internal mask band (no nodata value, no alpha) lends it to the stack.

The VRT carries the item in its metadata: the acquisition time as ``ACQUISITIONDATETIME`` (which
[`raster_datetime`][geossl.embed.sources.raster_datetime] reads, so the item's datetime is the
rows' ``datetime``) and, in the domain `STAC_METADATA_DOMAIN`, the item id and the assets' hrefs
([`stac_tags`][geossl.embed.stac_vrt.stac_tags]).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from affine import Affine

__all__ = ["STAC_METADATA_DOMAIN", "AssetLayer", "read_layer", "stac_tags", "stack_vrt"]

#: The GDAL metadata domain of the VRT that names the item: ``ITEM_ID`` and ``SOURCE`` (the hrefs).
STAC_METADATA_DOMAIN = "GEOSSL_STAC"

#: numpy dtype name -> GDAL data type name (the VRT's ``dataType``).
_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True, slots=True)
class AssetLayer:
    """The header of one asset's raster: what the VRT needs to place its bands.

    Attributes:
        name: the asset's key in the item.
        path: the GDAL path of the asset (``/vsicurl/...``, ``/vsis3/...`` or a local path).
        crs: the CRS as WKT.
        transform: the pixel-to-map transform.
        width: width in pixels.
        height: height in pixels.
        dtypes: per band, the numpy dtype name.
        nodata: per band, the nodata value (None for none).
        colorinterp: per band, GDAL's colour interpretation name (``Gray``, ``Red``, ``Alpha``...).
        has_mask: the asset has an internal mask band (per-dataset, neither nodata nor alpha).
    """

    name: str
    path: str
    crs: str
    transform: Affine
    width: int
    height: int
    dtypes: tuple[str, ...]
    nodata: tuple[float | None, ...]
    colorinterp: tuple[str, ...]
    has_mask: bool = False

    @property
    def pixel_area(self) -> float:
        """The area of one pixel in CRS units (the finest asset gives the stack's grid)."""
        return abs(self.transform.a * self.transform.e)


def read_layer(name: str, path: str) -> AssetLayer:
    """Read the header of an asset's raster.

    Args:
        name: the asset's key.
        path: its GDAL path.

    Returns:
        The layer.

    Raises:
        rasterio.errors.RasterioError: if GDAL cannot open it.
        ValueError: for a raster without CRS or with a rotated geotransform.

    Example:
        >>> import tempfile, numpy as np, rasterio
        >>> from rasterio.transform import from_origin
        >>> path = tempfile.mkdtemp() + "/b04.tif"
        >>> with rasterio.open(path, "w", driver="GTiff", width=4, height=2, count=1,
        ...                    dtype="uint16", crs="EPSG:32631", nodata=0,
        ...                    transform=from_origin(500_000, 5_000_000, 10, 10)) as dst:
        ...     dst.write(np.ones((1, 2, 4), np.uint16))
        >>> layer = read_layer("red", path)
        >>> layer.dtypes, layer.nodata, (layer.width, layer.height)
        (('uint16',), (0.0,), (4, 2))
    """
    import rasterio
    from rasterio.enums import MaskFlags

    with rasterio.open(path) as dataset:
        if dataset.crs is None:
            raise ValueError("the raster has no CRS")
        transform = dataset.transform
        if transform.b != 0 or transform.d != 0:
            raise ValueError("the raster's geotransform is rotated; only north-up assets stack")
        flags = dataset.mask_flag_enums
        return AssetLayer(
            name=name,
            path=path,
            crs=str(dataset.crs.to_wkt()),
            transform=transform,
            width=dataset.width,
            height=dataset.height,
            dtypes=tuple(dataset.dtypes),
            nodata=tuple(dataset.nodatavals),
            colorinterp=tuple(c.name.capitalize() for c in dataset.colorinterp),
            has_mask=MaskFlags.per_dataset in flags[0]
            and MaskFlags.alpha not in flags[0]
            and MaskFlags.nodata not in flags[0],
        )


def _number(value: float) -> str:
    """A float as GDAL's XML reads it (``nan`` for NaN)."""
    return "nan" if math.isnan(value) else repr(float(value))


def _rects(layer: AssetLayer, grid: AssetLayer) -> tuple[dict[str, str], dict[str, str]]:
    """The ``SrcRect`` and ``DstRect`` of ``layer`` placed on the pixel grid of ``grid``."""
    src, dst = layer.transform, grid.transform
    source = {"xOff": "0", "yOff": "0", "xSize": str(layer.width), "ySize": str(layer.height)}
    target = {
        "xOff": _number((src.c - dst.c) / dst.a),
        "yOff": _number((src.f - dst.f) / dst.e),
        "xSize": _number(layer.width * src.a / dst.a),
        "ySize": _number(layer.height * src.e / dst.e),
    }
    return source, target


def _source(parent: ET.Element, tag: str, layer: AssetLayer, band: str, grid: AssetLayer) -> None:
    """Add a ``<SimpleSource>`` / ``<ComplexSource>`` reading ``band`` of ``layer``."""
    element = ET.SubElement(parent, tag, resampling="nearest")
    ET.SubElement(element, "SourceFilename", relativeToVRT="0").text = layer.path
    ET.SubElement(element, "SourceBand").text = band
    source, target = _rects(layer, grid)
    ET.SubElement(element, "SrcRect", source)
    ET.SubElement(element, "DstRect", target)


def _metadata(root: ET.Element, tags: Mapping[str, str], domain: str | None = None) -> None:
    element = ET.SubElement(root, "Metadata", {"domain": domain} if domain else {})
    for key, value in tags.items():
        ET.SubElement(element, "MDI", key=key).text = value


def stack_vrt(
    layers: Sequence[AssetLayer], *, tags: Mapping[str, str], stac: Mapping[str, str]
) -> str:
    """The XML of a VRT stacking the bands of ``layers``, in order, on the finest grid.

    Args:
        layers: the assets, in the order their bands are stacked.
        tags: metadata of the default domain (``ACQUISITIONDATETIME``).
        stac: metadata of the `STAC_METADATA_DOMAIN` domain (``ITEM_ID``, ``SOURCE``).

    Returns:
        The ``<VRTDataset>`` XML.

    Raises:
        ValueError: if the layers are in different CRSs or none is given.

    Example:
        >>> from rasterio.crs import CRS
        >>> wkt = CRS.from_epsg(32631).to_wkt()
        >>> def layer(name, size):
        ...     return AssetLayer(name, f"/data/{name}.tif", wkt,
        ...                       Affine(size, 0, 500_000, 0, -size, 5_000_000),
        ...                       int(40 / size), int(40 / size), ("uint16",), (0.0,), ("Gray",))
        >>> xml = stack_vrt([layer("b04", 10), layer("b11", 20)], tags={}, stac={"ITEM_ID": "x"})
        >>> xml.count("<VRTRasterBand"), 'rasterXSize="4"' in xml, 'xSize="4.0"' in xml
        (2, True, True)
    """
    if not layers:
        raise ValueError("no asset to stack")
    first = layers[0]
    for layer in layers[1:]:
        if layer.crs != first.crs:
            raise ValueError(
                f"assets {first.name!r} and {layer.name!r} are in different CRSs; "
                "only assets on one CRS stack"
            )
    grid = min(layers, key=lambda layer: layer.pixel_area)  # the first of the finest
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = grid.crs
    t = grid.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        _number(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e)
    )
    _metadata(root, tags)
    _metadata(root, stac, STAC_METADATA_DOMAIN)
    masked = next((layer for layer in layers if layer.has_mask), None)
    if masked is not None:
        mask = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
        _source(mask, "SimpleSource", masked, "mask,1", grid)
    number = 0
    for layer in layers:
        for k, dtype in enumerate(layer.dtypes):
            number += 1
            band = ET.SubElement(
                root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(number)
            )
            nodata = layer.nodata[k]
            if nodata is not None:
                ET.SubElement(band, "NoDataValue").text = _number(nodata)
            ET.SubElement(band, "ColorInterp").text = layer.colorinterp[k]
            described = layer.name if len(layer.dtypes) == 1 else f"{layer.name}:{k + 1}"
            ET.SubElement(band, "Description").text = described
            _source(band, "ComplexSource", layer, str(k + 1), grid)
            if nodata is not None:
                # Source nodata pixels stay nodata (not resampled into their neighbours).
                ET.SubElement(band[-1], "NODATA").text = _number(nodata)
    return ET.tostring(root, encoding="unicode")


def stac_tags(dataset: Any) -> dict[str, str]:
    """The STAC item a raster stands for (a VRT of [`stack_vrt`][geossl.embed.stac_vrt.stack_vrt]).

    Args:
        dataset: an open rasterio dataset.

    Returns:
        ``{"ITEM_ID": ..., "SOURCE": ...}``, or ``{}`` for a raster that is no STAC item.
    """
    try:
        tags: dict[str, str] = dataset.tags(ns=STAC_METADATA_DOMAIN)
    except Exception:  # GDAL raises for unknown domains on some drivers
        return {}
    return tags
