"""Constants of the Functional Map of the World (fMoW) dataset.

fMoW (Christie et al., "Functional Map of the World", CVPR 2018) labels satellite images with 62
functional categories. The order of `FMOW_CATEGORIES` is the official index order (label ``i``
is ``FMOW_CATEGORIES[i]``); the ``false_detection`` class of the full release is not a label.

`FMOW_PRODUCTS` is the one table of the image products (``rgb``, ``msrgb``, ``ms``,
``sentinel``): extensions, band count and names, scales and whether they are JPEGs. The older
names (`PRODUCTS`, `PRODUCT_BANDS`, `JPEG_PRODUCTS`, `MS_NUM_BANDS`,
[`product_scale`][geossl.datasets.fmow.constants.product_scale]) derive from it, and so do what a
model sees of a product ([`product_band_names`][geossl.datasets.fmow.constants.product_band_names],
[`product_input_scale`][geossl.datasets.fmow.constants.product_input_scale]), which both the fMoW
data module and the reader of old checkpoints
([`geossl.weights.checkpoint`][geossl.weights.checkpoint]) use.

Examples:
    >>> FMOW_PRODUCTS["ms"].num_bands, PRODUCTS["rgb"]
    (8, ('.jpg', '.tif'))
    >>> JPEG_PRODUCTS, product_scale("sentinel")
    (('rgb', 'msrgb'), 0.0001)
    >>> product_band_names("ms", [5, 3, 2]), product_input_scale("sentinel")
    (('red', 'green', 'blue'), 0.0001)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

# geossl.utils.bands, not geossl.weights.meta: datasets sit below weights (no import cycle).
from geossl.utils.bands import RGB_BANDS, UINT8_SCALE

#: The 62 fMoW categories in official index order.
FMOW_CATEGORIES: tuple[str, ...] = (
    "airport",
    "airport_hangar",
    "airport_terminal",
    "amusement_park",
    "aquaculture",
    "archaeological_site",
    "barn",
    "border_checkpoint",
    "burial_site",
    "car_dealership",
    "construction_site",
    "crop_field",
    "dam",
    "debris_or_rubble",
    "educational_institution",
    "electric_substation",
    "factory_or_powerplant",
    "fire_station",
    "flooded_road",
    "fountain",
    "gas_station",
    "golf_course",
    "ground_transportation_station",
    "helipad",
    "hospital",
    "impoverished_settlement",
    "interchange",
    "lake_or_pond",
    "lighthouse",
    "military_facility",
    "multi-unit_residential",
    "nuclear_powerplant",
    "office_building",
    "oil_or_gas_facility",
    "park",
    "parking_lot_or_garage",
    "place_of_worship",
    "police_station",
    "port",
    "prison",
    "race_track",
    "railway_bridge",
    "recreational_facility",
    "road_bridge",
    "runway",
    "shipyard",
    "shopping_mall",
    "single-unit_residential",
    "smokestack",
    "solar_farm",
    "space_facility",
    "stadium",
    "storage_tank",
    "surface_mine",
    "swimming_pool",
    "toll_booth",
    "tower",
    "tunnel_opening",
    "waste_disposal",
    "water_treatment_facility",
    "wind_farm",
    "zoo",
)

#: The fMoW splits: ``train`` and ``val`` are stored by category; ``test`` and ``seq`` by anonymous
#: 7-digit id, with ``{split}_gt_mapping.json`` mapping them back to ``{split}_gt/{category}/...``.
FMOW_SPLITS: tuple[str, ...] = ("train", "val", "test", "seq")

#: Splits whose images are stored under anonymous ids (with a ``{split}_gt_mapping.json``).
FMOW_ANONYMOUS_SPLITS: tuple[str, ...] = ("test", "seq")

#: The 8 bands of a WorldView-2/3 multispectral (``_ms.tif``) image, in band order.
FMOW_MS_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "yellow",
    "red",
    "red_edge",
    "nir1",
    "nir2",
)

#: Approximate band centre wavelengths in micrometres, as in the per-image JSON files.
FMOW_APPROXIMATE_WAVELENGTHS: tuple[float, ...] = (
    0.425,
    0.480,
    0.545,
    0.605,
    0.660,
    0.725,
    0.8325,
    0.950,
)

#: The 13 Sentinel-2 bands of an fMoW-Sentinel image, in band order (increasing wavelength).
FMOW_SENTINEL_BANDS: tuple[str, ...] = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)

#: fMoW-Sentinel stores Sentinel-2 reflectance times 10,000 (uint16): this factor maps it to [0, 1].
FMOW_SENTINEL_SCALE = 1e-4

#: The metadata CSV of each fMoW-Sentinel split (the test split's is ``test_gt.csv``).
FMOW_SENTINEL_CSV: dict[str, str] = {"train": "train.csv", "val": "val.csv", "test": "test_gt.csv"}

#: Default scale of fMoW-full GeoTIFFs that are not 8-bit (WorldView stores 11-bit values).
MS_SCALE = 1.0 / 2047.0

Product = Literal["rgb", "msrgb", "ms", "sentinel"]


@dataclass(frozen=True, slots=True)
class FMoWProduct:
    """One fMoW image product: how its images are stored and read.

    Attributes:
        name: the product's name, the ``{product}`` of ``{stem}_{product}.{ext}``.
        extensions: image extensions, in order of preference.
        num_bands: bands of its images.
        scale: raw-to-[0, 1] factor passed to the reader; ``None``: the reader's default by dtype
            (1/255 for uint8, `MS_SCALE` otherwise).
        jpeg: stored as JPEG (fMoW-rgb), so ``decode_on_device`` can decode it with nvJPEG.
        band_names: names of its bands, in band order.
        input_scale: raw-to-[0, 1] factor of the model's input (the ``scale`` of a checkpoint's
            input block): 1/255 for the JPEGs, `MS_SCALE` for the 11-bit ``ms`` GeoTIFFs,
            `FMOW_SENTINEL_SCALE` for Sentinel reflectance.
    """

    name: Product
    extensions: tuple[str, ...]
    num_bands: int
    scale: float | None
    jpeg: bool
    band_names: tuple[str, ...]
    input_scale: float


#: The fMoW image products. ``rgb`` is a JPEG in fMoW-rgb and a GeoTIFF in fMoW-full; ``ms`` is the
#: 8-band WorldView-2/3 ``_ms.tif`` of fMoW-full (4-band sensors need ``bands``); ``sentinel`` is
#: fMoW-Sentinel (:mod:`geossl.datasets.fmow.sentinel`), with metadata CSVs instead of JSONs. The
#: JSON of the others is always ``{stem}_{product}.json``.
FMOW_PRODUCTS: Mapping[str, FMoWProduct] = {
    "rgb": FMoWProduct(
        "rgb", (".jpg", ".tif"), 3, None, jpeg=True, band_names=RGB_BANDS, input_scale=UINT8_SCALE
    ),
    "msrgb": FMoWProduct(
        "msrgb", (".jpg",), 3, None, jpeg=True, band_names=RGB_BANDS, input_scale=UINT8_SCALE
    ),
    "ms": FMoWProduct(
        "ms",
        (".tif",),
        len(FMOW_MS_BANDS),
        None,
        jpeg=False,
        band_names=FMOW_MS_BANDS,
        input_scale=MS_SCALE,
    ),
    "sentinel": FMoWProduct(
        "sentinel",
        (".tif",),
        len(FMOW_SENTINEL_BANDS),
        FMOW_SENTINEL_SCALE,
        jpeg=False,
        band_names=FMOW_SENTINEL_BANDS,
        input_scale=FMOW_SENTINEL_SCALE,
    ),
}

#: Image extensions of each product, in order of preference (from :data:`FMOW_PRODUCTS`).
PRODUCTS: dict[str, tuple[str, ...]] = {n: p.extensions for n, p in FMOW_PRODUCTS.items()}

#: Bands of each product's images (from :data:`FMOW_PRODUCTS`).
PRODUCT_BANDS: dict[str, int] = {n: p.num_bands for n, p in FMOW_PRODUCTS.items()}

#: Products stored as JPEG (fMoW-rgb), which ``decode_on_device`` can decode with nvJPEG.
JPEG_PRODUCTS: tuple[str, ...] = tuple(n for n, p in FMOW_PRODUCTS.items() if p.jpeg)

#: Bands of an fMoW-full multispectral image (WorldView-2/3; 4-band sensors need ``bands``).
MS_NUM_BANDS = FMOW_PRODUCTS["ms"].num_bands


def product_scale(product: str) -> float | None:
    """Raw-to-[0, 1] factor of a product's GeoTIFFs (None: the reader's default by dtype)."""
    entry = FMOW_PRODUCTS.get(product)
    return None if entry is None else entry.scale


def product_band_names(product: str, bands: Sequence[int] | None = None) -> tuple[str, ...] | None:
    """Names of the bands a model sees of a product, in input order.

    Args:
        product: the product's name (a key of `FMOW_PRODUCTS`).
        bands: the 1-based bands picked from its images (None or empty: all of them).

    Returns:
        The names, or None for a product that is not in `FMOW_PRODUCTS`.
    """
    entry = FMOW_PRODUCTS.get(product)
    if entry is None:
        return None
    if not bands:
        return entry.band_names
    return tuple(entry.band_names[b - 1] for b in bands)


def product_in_chans(product: str, bands: Sequence[int] | None = None) -> int:
    """Bands a model sees of a product: ``len(bands)``, else all of them.

    Example:
        >>> product_in_chans("ms"), product_in_chans("ms", [5, 3, 2]), product_in_chans("rgb")
        (8, 3, 3)
    """
    return len(bands) if bands is not None else PRODUCT_BANDS[product]


def product_input_scale(product: str) -> float | None:
    """Raw-to-[0, 1] factor of a product's model input (None: not in `FMOW_PRODUCTS`)."""
    entry = FMOW_PRODUCTS.get(product)
    return None if entry is None else entry.input_scale


#: Bumped whenever the columns or their meaning change; part of the cache key.
INDEX_FORMAT_VERSION = 1


#: Columns of the index table and their Arrow types, in order (see docs/design.md).
INDEX_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("path", pa.string()),
    ("split", pa.string()),
    ("category", pa.string()),
    ("label", pa.int16()),
    ("location", pa.string()),
    ("location_id", pa.int32()),
    ("t", pa.int16()),
    ("timestamp", pa.int64()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("gsd", pa.float32()),
    ("cloud_cover", pa.float32()),
    ("img_width", pa.int32()),
    ("img_height", pa.int32()),
    ("box_x", pa.int32()),
    ("box_y", pa.int32()),
    ("box_w", pa.int32()),
    ("box_h", pa.int32()),
    ("crop_x0", pa.int32()),
    ("crop_y0", pa.int32()),
    ("crop_x1", pa.int32()),
    ("crop_y1", pa.int32()),
    ("country_code", pa.string()),
    ("geo_label", pa.int16()),
)

if len(FMOW_CATEGORIES) != 62:  # pragma: no cover - guards against editing mistakes
    raise RuntimeError(f"FMOW_CATEGORIES must have 62 entries, has {len(FMOW_CATEGORIES)}")
