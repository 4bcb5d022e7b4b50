r"""Your own co-located GeoTIFF time series: a torchgeo ``RasterDataset`` with a per-date index.

Geography-aware pretraining (Ayush et al., ICCV 2021) needs *temporal positives*, two acquisitions
of the same place, and *geo labels*, a cluster of where the image is. fMoW provides both per
image; for a stack of rasters over the same places (Sentinel-2, Landsat, NAIP, ...) they come from
the files themselves:

* [`TimeSeriesRasters`][geossl.datasets.rasters.dataset.TimeSeriesRasters] indexes GeoTIFFs by
  footprint and **acquisition date** (from the file name, else from the GeoTIFF tags), warps them to
  one CRS (the first file's unless given) and reads one date at a time:
  ``dataset[(x, y, rasters.date_slice(d))]`` mosaics the files of date ``d`` only. Bands may also
  come **one file per band** at different resolutions (Sentinel-2's ``..._B02.tif`` at 10 m,
  ``..._B05.tif`` at 20 m, ``..._B01.tif`` at 60 m; ``band_names``): the band files of one product
  are read as one raster, every band resampled onto one pixel grid;
* [`RasterTemporalPairs`][geossl.datasets.rasters.pairs.RasterTemporalPairs] turns a pair of queries
  of one footprint at two dates (drawn by
  [`TemporalGeoPairSampler`][geossl.samplers.TemporalGeoPairSampler]) into geossl's pair sample
  (docs/design.md): ``image [2, C, H, W]``, ``time [2]``, ``lat``/``lon`` of the patch centre and
  its ``geo_label``.

Both views are read on the same pixel grid (the patch bounds are multiples of the dataset's
resolution from the first file's origin), so on co-registered stacks they are pixel-aligned, which
the SCRL term assumes (both views share one canvas).

The package holds one module per job:

* [`files`][geossl.datasets.rasters.files]: the files' dates, checks and band products;
* [`date_index`][geossl.datasets.rasters.date_index]: the per-date index and the files of one date;
* [`reading`][geossl.datasets.rasters.reading]: the windowed reads and mosaics;
* [`validity`][geossl.datasets.rasters.validity]: where each date has data
([`ValidityGrid`][geossl.datasets.rasters.validity.ValidityGrid]);
* [`dataset`][geossl.datasets.rasters.dataset]:
  [`TimeSeriesRasters`][geossl.datasets.rasters.dataset.TimeSeriesRasters], a torchgeo
  ``RasterDataset`` with a per-date index;
* [`pairs`][geossl.datasets.rasters.pairs]:
  [`RasterTemporalPairs`][geossl.datasets.rasters.pairs.RasterTemporalPairs], two dates of one patch
  as geossl's pair sample.

torchgeo 0.8.1 ``RasterDataset`` defects worked around by
[`TimeSeriesRasters`][geossl.datasets.rasters.dataset.TimeSeriesRasters] (see the methods that
override them):

* files whose name does not match ``filename_regex`` are skipped silently, and a file without a
  date gets ``(Timestamp.min, Timestamp.max)``, i.e. it matches every query: here the regex only
  reads dates, a file without one falls back to its tags or fails naming the file;
* unreadable files are skipped silently; a file without a CRS is indexed silently as if it were in
  the dataset's CRS; ``bands`` must be names of ``all_bands`` (no 1-based indexes) and are never
  checked against the files: here each of these is a one-line error naming the file;
* ``_load_warp_file`` wraps a file in a ``WarpedVRT`` whenever ``calculate_default_transform``
  differs from the file's transform in the last bit (it does for the EPSG:4326 Landsat stack of the
  tests: 10 of 108 reads of 64 px windows on the file's own grid came back shifted, at 5 ms per
  read); the VRT uses nearest resampling whatever `resampling` says.
  Here a file is warped only when its CRS differs from the dataset's or it is not north-up, and
  with `resampling`;
* every query goes through ``rasterio.merge`` and the GeoDataFrame (``bounds``, ``cx``), a few ms of
  Python per read: a query inside one file is a direct windowed read here (an integer window when
  the patch is on the file's grid, or off it by a fraction of a pixel with nearest resampling),
  identical to merge's result;
* ``_cached_load_warp_file`` is an ``lru_cache`` on the method: shared by every instance, keyed on
  ``self`` (the datasets are never freed) and its open handles are inherited by forked DataLoader
  workers. Here ``_merge_files`` opens files through a cache that is per instance and per process,
  and dropped when pickled;
* a query selects the files whose date interval *overlaps* the query's, so a file dated by a bare
  year also answers every day of that year: a query whose time slice is exactly one of
  `dates` selects the files of that date only.
"""

from geossl.datasets.rasters.dataset import PatchQuery, TimeSeriesRasters
from geossl.datasets.rasters.files import (
    DATE_TAGS,
    DEFAULT_BAND_FILENAME_REGEX,
    DEFAULT_FILENAME_REGEX,
)
from geossl.datasets.rasters.pairs import PairQuery, RasterTemporalPairs
from geossl.datasets.rasters.validity import ValidityGrid

__all__ = [
    "DATE_TAGS",
    "DEFAULT_BAND_FILENAME_REGEX",
    "DEFAULT_FILENAME_REGEX",
    "PairQuery",
    "PatchQuery",
    "RasterTemporalPairs",
    "TimeSeriesRasters",
    "ValidityGrid",
]
