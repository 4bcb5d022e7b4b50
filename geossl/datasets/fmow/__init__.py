"""The Functional Map of the World (fMoW) family: readers, index, downloader and decoder.

fMoW (Christie et al., "Functional Map of the World", CVPR 2018) has 1,047,691 satellite images of
62 functional categories, several acquisitions per location. The package holds one module per job:

* [`constants`][geossl.datasets.fmow.constants]: categories, splits, bands and the one product
table;
* [`metadata`][geossl.datasets.fmow.metadata]: the per-image JSON
([`parse_fmow_json`][geossl.datasets.fmow.metadata.parse_fmow_json]);
* [`io`][geossl.datasets.fmow.io]: the context crop and the fixed-size image read;
* [`dataset`][geossl.datasets.fmow.dataset]: [`FMoW`][geossl.datasets.fmow.dataset.FMoW],
[`FMoWLocations`][geossl.datasets.fmow.dataset.FMoWLocations];
* [`pairs`][geossl.datasets.fmow.pairs]:
[`FMoWTemporalPairs`][geossl.datasets.fmow.pairs.FMoWTemporalPairs];
* [`index`][geossl.datasets.fmow.index], [`scan`][geossl.datasets.fmow.scan],
  [`scan_sentinel`][geossl.datasets.fmow.scan_sentinel], [`report`][geossl.datasets.fmow.report]:
  the cached Parquet index and its build;
* [`sentinel`][geossl.datasets.fmow.sentinel]: fMoW-Sentinel's metadata CSVs;
* [`manifest`][geossl.datasets.fmow.manifest], [`download`][geossl.datasets.fmow.download]: the
downloader;
* [`encoded`][geossl.datasets.fmow.encoded]: undecoded JPEGs decoded on the device.
"""

from geossl.datasets.errors import InvalidSampleError
from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_SPLITS, MS_SCALE
from geossl.datasets.fmow.dataset import FMoW, FMoWLocations
from geossl.datasets.fmow.download import DownloadReport, FMoWDownloadError, download_fmow
from geossl.datasets.fmow.index import FMoWIndex, build_fmow_index
from geossl.datasets.fmow.io import fmow_context_box, read_fmow_image
from geossl.datasets.fmow.metadata import FMoWImageMeta, fmow_meta_from_dict, parse_fmow_json
from geossl.datasets.fmow.pairs import FMoWTemporalPairs
from geossl.datasets.fmow.report import FMoWIndexReport

__all__ = [
    "FMOW_CATEGORIES",
    "FMOW_SPLITS",
    "MS_SCALE",
    "DownloadReport",
    "FMoW",
    "FMoWDownloadError",
    "FMoWImageMeta",
    "FMoWIndex",
    "FMoWIndexReport",
    "FMoWLocations",
    "FMoWTemporalPairs",
    "InvalidSampleError",
    "build_fmow_index",
    "download_fmow",
    "fmow_context_box",
    "fmow_meta_from_dict",
    "parse_fmow_json",
    "read_fmow_image",
]
