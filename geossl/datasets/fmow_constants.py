"""Constants of the Functional Map of the World (fMoW) dataset.

fMoW (Christie et al., "Functional Map of the World", CVPR 2018) labels satellite images with 62
functional categories. The order of :data:`FMOW_CATEGORIES` is the official index order (label ``i``
is ``FMOW_CATEGORIES[i]``); the ``false_detection`` class of the full release is not a label.
"""

from __future__ import annotations

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

if len(FMOW_CATEGORIES) != 62:  # pragma: no cover - guards against editing mistakes
    raise RuntimeError(f"FMOW_CATEGORIES must have 62 entries, has {len(FMOW_CATEGORIES)}")
