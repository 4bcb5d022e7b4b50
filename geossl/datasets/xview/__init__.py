"""xView1 object detection: labels, image split, chipping protocol, cached chip index, dataset.

xView (Lam et al., "xView: Objects in Context in Overhead Imagery", arXiv:1802.07856, 2018) has
846 labelled WorldView-3 images (3-band uint8 GeoTIFFs, about 0.3 m per pixel, roughly 2,000 to
5,000 pixels a side) with axis-aligned boxes of 60 object classes. On disk::

    root/
    ├── xView_train.geojson        # FeatureCollection, one feature per box
    ├── train_images/NNNN.tif      # the images (the geojson's image_id; 1395.tif is missing)
    └── .geossl-cache/             # written by geossl: parsed labels and chip indexes (npz)

Each feature's ``properties`` has ``bounds_imcoords`` (``"xmin,ymin,xmax,ymax"``, pixels of the
image), ``type_id`` (11 to 94) and ``image_id`` (``"NNNN.tif"``), plus bookkeeping fields that are
not used here.

**Classes.** The 60 type ids that occur as classes (`XVIEW_CLASSES`, the table of xView's
``xview_class_labels.txt``) are mapped in ascending order to the contiguous labels ``0..59``; any
other id (the real labels also hold ids 75 and 82) is dropped and counted.

**Bad labels** are skipped and counted in an
[`XViewReport`][geossl.datasets.xview.labels.XViewReport], never fatal: a feature whose image is not
on disk (the real ``1395.tif``), a malformed feature, an unknown type id, a box that is NaN or has
no area, a box entirely outside its image. A box partly outside is clipped to the image (and
counted).

**Protocol of the GeoSSL paper** (Ayush et al., ICCV 2021, section 5.2.1): the images are split
700 / 146 into train / test
([`split_xview_images`][geossl.datasets.xview.labels.split_xview_images]: a seeded, hash-ranked
split with ``test_fraction = 0.1726`` gives exactly 146 of 846), each training image gives 100
random 416 x 416 crops with less than 25 % overlap (IoU) between any two
([`random_chip_windows`][geossl.datasets.xview.chips.random_chip_windows]), and RetinaNet-ResNet-50
is scored by AP50. Evaluation reads a deterministic grid
([`grid_chip_windows`][geossl.datasets.xview.chips.grid_chip_windows]). A chip keeps the boxes whose
visible fraction inside it is at least ``min_visibility``, clipped to the chip
([`chip_boxes`][geossl.datasets.xview.chips.chip_boxes]).

**Cache.** Parsing the real geojson (hundreds of thousands of features) takes a while, so two
``.npz`` files are written atomically under ``root/.geossl-cache/`` (or ``cache_dir``):

- ``xview-labels-<key>.npz``: the parsed, mapped and cleaned boxes with the image sizes and the
  report; ``<key>`` hashes the geojson's size and modification time and the listing (names, sizes,
  times) of ``train_images/``, so a new geojson or a new image rebuilds it;
- ``xview-chips-<mode>-<key>.npz``: the chip index (image, window, boxes, labels of every chip of
  every image); ``<key>`` hashes the labels key and every chipping parameter (mode, chip size, crops
  per image, maximum overlap, minimum visibility, grid stride, seed), so a changed parameter is
  never served a stale index.

Old cache files are not deleted; remove the folder to reclaim the space. A cache folder that cannot
be written (a read-only dataset) only costs the re-parse: a warning says so.

The package holds one module per job: [`constants`][geossl.datasets.xview.constants] (the class
table, file names), [`labels`][geossl.datasets.xview.labels] (the GeoJSON parse, its cache, the
split), [`chips`][geossl.datasets.xview.chips] (the chip windows and boxes, the chip index) and
[`dataset`][geossl.datasets.xview.dataset] ([`XView`][geossl.datasets.xview.dataset.XView]).
"""

from geossl.datasets.xview.chips import (
    XViewChipParams,
    XViewChips,
    build_xview_chips,
    chip_boxes,
    grid_chip_windows,
    load_xview_chips,
    random_chip_windows,
)
from geossl.datasets.xview.constants import (
    XVIEW_CLASS_NAMES,
    XVIEW_CLASSES,
    XVIEW_GEOJSON,
    XVIEW_IMAGES_DIR,
    XVIEW_NUM_CLASSES,
    XVIEW_TEST_FRACTION,
    XVIEW_TYPE_TO_LABEL,
    ChipMode,
)
from geossl.datasets.xview.dataset import XView, read_xview_chip
from geossl.datasets.xview.labels import (
    XViewLabels,
    XViewReport,
    load_xview_labels,
    parse_xview_features,
    read_xview_geojson,
    split_xview_images,
)

__all__ = [
    "XVIEW_CLASSES",
    "XVIEW_CLASS_NAMES",
    "XVIEW_GEOJSON",
    "XVIEW_IMAGES_DIR",
    "XVIEW_NUM_CLASSES",
    "XVIEW_TEST_FRACTION",
    "XVIEW_TYPE_TO_LABEL",
    "ChipMode",
    "XView",
    "XViewChipParams",
    "XViewChips",
    "XViewLabels",
    "XViewReport",
    "build_xview_chips",
    "chip_boxes",
    "grid_chip_windows",
    "load_xview_chips",
    "load_xview_labels",
    "parse_xview_features",
    "random_chip_windows",
    "read_xview_chip",
    "read_xview_geojson",
    "split_xview_images",
]
