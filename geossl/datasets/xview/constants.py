"""Constants of xView1: file layout, the 60 classes and their contiguous labels, array types.

The 60 type ids that occur as classes (`XVIEW_CLASSES`, the table of xView's
``xview_class_labels.txt``) are mapped in ascending order to the contiguous labels ``0..59``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "XVIEW_CLASSES",
    "XVIEW_CLASS_NAMES",
    "XVIEW_GEOJSON",
    "XVIEW_IMAGES_DIR",
    "XVIEW_NUM_CLASSES",
    "XVIEW_TEST_FRACTION",
    "XVIEW_TYPE_TO_LABEL",
    "ChipMode",
]

FloatArray = npt.NDArray[np.float32]


IntArray = npt.NDArray[np.int64]


Sample = dict[str, Any]


ChipMode = Literal["random", "grid"]


#: File name of the training labels in the dataset root.
XVIEW_GEOJSON = "xView_train.geojson"


#: Folder of the training images in the dataset root.
XVIEW_IMAGES_DIR = "train_images"


#: Test share of the images: ``round(846 * 0.1726) = 146``, the paper's 700 / 146 split.
XVIEW_TEST_FRACTION = 0.1726


#: The 60 xView classes as ``(type_id, name)``, ascending type id; the label is the position.
#: Source: xView's ``xview_class_labels.txt``; the same 60-class map as the xView baseline code and
#: the Ultralytics ``xView.yaml`` conversion (type ids 11-94, unused ids dropped).
XVIEW_CLASSES: tuple[tuple[int, str], ...] = (
    (11, "Fixed-wing Aircraft"),
    (12, "Small Aircraft"),
    (13, "Cargo Plane"),
    (15, "Helicopter"),
    (17, "Passenger Vehicle"),
    (18, "Small Car"),
    (19, "Bus"),
    (20, "Pickup Truck"),
    (21, "Utility Truck"),
    (23, "Truck"),
    (24, "Cargo Truck"),
    (25, "Truck w/Box"),
    (26, "Truck Tractor"),
    (27, "Trailer"),
    (28, "Truck w/Flatbed"),
    (29, "Truck w/Liquid"),
    (32, "Crane Truck"),
    (33, "Railway Vehicle"),
    (34, "Passenger Car"),
    (35, "Cargo Car"),
    (36, "Flat Car"),
    (37, "Tank car"),
    (38, "Locomotive"),
    (40, "Maritime Vessel"),
    (41, "Motorboat"),
    (42, "Sailboat"),
    (44, "Tugboat"),
    (45, "Barge"),
    (47, "Fishing Vessel"),
    (49, "Ferry"),
    (50, "Yacht"),
    (51, "Container Ship"),
    (52, "Oil Tanker"),
    (53, "Engineering Vehicle"),
    (54, "Tower crane"),
    (55, "Container Crane"),
    (56, "Reach Stacker"),
    (57, "Straddle Carrier"),
    (59, "Mobile Crane"),
    (60, "Dump Truck"),
    (61, "Haul Truck"),
    (62, "Scraper/Tractor"),
    (63, "Front loader/Bulldozer"),
    (64, "Excavator"),
    (65, "Cement Mixer"),
    (66, "Ground Grader"),
    (71, "Hut/Tent"),
    (72, "Shed"),
    (73, "Building"),
    (74, "Aircraft Hangar"),
    (76, "Damaged Building"),
    (77, "Facility"),
    (79, "Construction Site"),
    (83, "Vehicle Lot"),
    (84, "Helipad"),
    (86, "Storage Tank"),
    (89, "Shipping container lot"),
    (91, "Shipping Container"),
    (93, "Pylon"),
    (94, "Tower"),
)


XVIEW_NUM_CLASSES = len(XVIEW_CLASSES)


#: Class names in label order.
XVIEW_CLASS_NAMES: tuple[str, ...] = tuple(name for _, name in XVIEW_CLASSES)


#: ``type_id`` -> contiguous label ``0..59``.
XVIEW_TYPE_TO_LABEL: Mapping[int, int] = {tid: i for i, (tid, _) in enumerate(XVIEW_CLASSES)}


#: Scale of raw pixel values to ``[0, 1]``: 8-bit as stored; 16-bit images are taken as
#: WorldView's 11-bit range (values above 2047 saturate).
_DTYPE_SCALE: Mapping[str, float] = {"uint8": 1 / 255, "uint16": 1 / 2047}
