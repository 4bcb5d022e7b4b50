"""Two dates of one patch of a raster time series as geossl's pair sample.

[`RasterTemporalPairs`][geossl.datasets.rasters.pairs.RasterTemporalPairs] turns a pair of queries
of one footprint at two dates (drawn by
[`TemporalGeoPairSampler`][geossl.samplers.TemporalGeoPairSampler]) into geossl's pair sample
(docs/design.md): ``image [2, C, H, W]``, ``time [2]``, ``lat``/``lon`` of the patch centre and its
``geo_label``.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets.utils import GeoSlice

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.geo_clusters import assign_clusters, latlon_to_unit
from geossl.datasets.plotting import format_time, image_figure, rgb_image
from geossl.datasets.rasters.dataset import PatchQuery, TimeSeriesRasters
from geossl.datasets.rasters.integrity import (
    READ_ERRORS,
    UNREADABLE_TILES,
    exclude_files,
    files_of_query,
    read_problem,
)
from geossl.datasets.skips import LoadFailures

__all__ = ["PairQuery", "RasterTemporalPairs"]

#: One footprint at two dates: what :class:`RasterTemporalPairs` reads (view 0, view 1).
PairQuery: TypeAlias = tuple[PatchQuery, PatchQuery]


class RasterTemporalPairs(Dataset[dict[str, Tensor]]):
    """Two dates of one patch of a `TimeSeriesRasters` as geossl's pair sample.

    Indexed by a pair of GeoSlice queries of the same footprint at two dates (from
    [`TemporalGeoPairSampler`][geossl.samplers.TemporalGeoPairSampler]), it returns the keys of
    docs/design.md:

    * ``image``: ``[2, C, H, W]``, uint8 for 8-bit files (the task divides by 255), else float32
      ``clamp(value * scale, 0, 1)``; view 0 is the first query's date, view 1 the second's;
    * ``time``: int64 ``[2]``, unix seconds of each date's start (midnight UTC; Jan 1 for a year);
    * ``index``: int64 ``[2]``, the two dates' ids in ``rasters.dates``;
    * ``location``: int64, the patch position's id
    (`TimeSeriesRasters.location_of`);
    * ``lat``, ``lon``: float32, the patch centre in degrees (EPSG:4326);
    * ``geo_label``: int64, the geo cluster of the centre (nearest of ``centroids`` by cosine
      similarity, [`assign_clusters`][geossl.datasets.geo_clusters.assign_clusters]), -1 without
      centroids;
    * ``label``: int64 -1 (no class);
    * ``bounds``: float64 ``[4]``, ``(xmin, ymin, xmax, ymax)`` in ``rasters.crs``. The CRS itself
      is not in the sample (the default collate cannot stack CRS objects): it is ``rasters.crs``.

    Both views come from the same window of the same pixel grid, so on co-registered stacks the
    two patches are pixel-aligned (what the SCRL term assumes). Not a torchgeo ``GeoDataset``:
    it is indexed by a pair of queries, not by one (docs/design.md, "torchgeo bases"); it has
    torchgeo's [`plot`][geossl.datasets.rasters.pairs.RasterTemporalPairs.plot].

    Args:
        rasters: the time series.
        centroids: geo-cluster centroids, unit vectors ``[K, 3]`` (e.g. from
            [`spherical_kmeans`][geossl.datasets.geo_clusters.spherical_kmeans] of patch centres).
        scale: factor from the files' values to ``[0, 1]`` for non-8-bit files (e.g. ``1e-4`` for
            Sentinel-2 L2A reflectance); default ``1 / (2**bits - 1)`` for integer files and 1 for
            float files. Ignored for uint8.
        max_load_failures: failed reads tolerated per process (see
            [`read`][geossl.datasets.rasters.pairs.RasterTemporalPairs.read]; a view that fails is
            replaced by the pair's other view, both by the patch at another date).

    Raises:
        ValueError: for a non-positive ``scale`` or malformed centroids.

    Example:
        >>> import tempfile
        >>> from geossl.datasets.rasters import TimeSeriesRasters
        >>> from geossl.samplers import TemporalGeoPairSampler
        >>> from geossl.synthetic.rasters import generate_raster_timeseries_sample
        >>> sample = generate_raster_timeseries_sample(tempfile.mkdtemp(), num_dates=5)
        >>> series = TimeSeriesRasters(sample.root, cache=False)
        >>> pairs = RasterTemporalPairs(series)
        >>> query = next(iter(TemporalGeoPairSampler(series, patch_size=32, length=2)))
        >>> pair = pairs[query]
        >>> tuple(pair["image"].shape), pair["image"].dtype  # two dates, 4 bands, 32 px
        ((2, 4, 32, 32), torch.uint8)
    """

    def __init__(
        self,
        rasters: TimeSeriesRasters,
        centroids: npt.ArrayLike | None = None,
        scale: float | None = None,
        max_load_failures: int = 100,
    ) -> None:
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be positive, got {scale}")
        cents = None if centroids is None else np.asarray(centroids, dtype=np.float64)
        if cents is not None and (cents.ndim != 2 or cents.shape[1] != 3 or len(cents) == 0):
            raise ValueError(f"centroids must have shape [K, 3], got {list(cents.shape)}")
        dtype = np.dtype(rasters.file_dtype)
        if scale is None:
            scale = 1.0 / float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0
        self.rasters = rasters
        self.centroids = cents
        self.scale = float(scale)
        #: Reads that failed in this process (each DataLoader worker has its own), by reason.
        self.load_failures = LoadFailures(
            rasters.skipped.root, max_load_failures, "raster reads", reasons=(UNREADABLE_TILES,)
        )

    def read(self, query: PatchQuery) -> Tensor | None:
        """The image of one query, or None when its files fail to read (counted and warned).

        The failing file is left out of this process's later queries
        ([`exclude_files`][geossl.datasets.rasters.integrity.exclude_files]); a query that only
        excluded files covered is None too, without a second warning.

        Raises:
            BadDatasetError: one line naming the file, past ``max_load_failures`` failures.
        """
        try:
            return self.rasters[query]["image"]  # type: ignore[no-any-return]
        except IndexError:  # only excluded files covered it (else a sampler bug: raised)
            if (self.rasters.file_dates < 0).any():
                return None
            raise
        except READ_ERRORS as error:
            files = files_of_query(self.rasters, query)
            path, message = read_problem(error, files)
            exclude_files(self.rasters, files if path not in files else [path])
            self.load_failures.record(path, UNREADABLE_TILES, message, stacklevel=4)
            return None

    def _other_date(self, query: PatchQuery, tried: set[int]) -> tuple[Tensor, int]:
        """The patch at the first other date that reads, for a pair whose two dates failed."""
        for date in range(len(self.rasters.dates)):
            if date not in tried:
                image = self.read((query[0], query[1], self.rasters.date_slice(date)))
                if image is not None:
                    return image, date
        raise BadDatasetError(
            self.rasters.skipped.root, f"no date of the patch {query[:2]} could be read"
        )

    def to_unit(self, image: Tensor) -> Tensor:
        """Raw values on the ``[0, 1]`` scale the model sees (uint8 kept: the task divides by 255).

        Non-8-bit values become ``clamp(value * scale, 0, 1)`` as float32.

        Args:
            image: ``[..., C, H, W]`` read from `rasters`.

        Returns:
            The image on the ``[0, 1]`` scale (uint8 stays uint8).
        """
        if image.dtype == torch.uint8:
            return image
        return (image.float() * self.scale).clamp_(0.0, 1.0)

    def __getitem__(self, pair: tuple[GeoSlice, GeoSlice]) -> dict[str, Tensor]:
        """Read both views of a pair query.

        Args:
            pair: two GeoSlices ``(x, y, t)`` with the same ``x`` and ``y`` and two dates of
                ``rasters.dates`` (the same date twice for a single-date pair: both views are
                then the same image, read once).

        Returns:
            The sample dict described in the class docstring.

        Raises:
            ValueError: when the two queries differ in footprint or a time slice is not a date.
        """
        first, second = (self.rasters._resolve(q) for q in pair)
        if first[:2] != second[:2]:
            raise ValueError(f"the two queries of a pair must share a footprint: {pair}")
        dates = [self.rasters.date_of(q[2]) for q in (first, second)]
        if dates[0] is None or dates[1] is None:
            raise ValueError(f"each query of a pair must select one of rasters.dates: {pair}")
        days = [d for d in dates if d is not None]
        view0 = self.read(first)  # [C, H, W]
        # A single-date pair (TemporalGeoPairSampler(single_date_pairs=True)): one read.
        view1 = view0 if days[0] == days[1] else self.read(second)
        # An unreadable view is replaced by the other one (with its date), as fMoW's decode on the
        # device does; when both fail, by the patch at another date.
        if view0 is None and view1 is None:
            view0, days[0] = self._other_date(first, set(days))
            view1, days[1] = view0, days[0]
        elif view0 is None:
            view0, days[0] = view1, days[1]
        elif view1 is None:
            view1, days[1] = view0, days[0]
        if view0 is None or view1 is None:  # pragma: no cover - replaced above
            raise RuntimeError("a view of the pair was not replaced")
        images = self.to_unit(torch.stack([view0, view1]))  # [2, C, H, W]
        x, y = first[0], first[1]
        cx, cy = (x.start + x.stop) / 2.0, (y.start + y.stop) / 2.0
        lon, lat = self.rasters.to_lonlat([cx], [cy])
        geo_label = -1
        if self.centroids is not None:
            geo_label = int(assign_clusters(latlon_to_unit(lat, lon), self.centroids)[0])
        return {
            "image": images,
            "time": torch.tensor([int(self.rasters.times[d]) for d in days], dtype=torch.int64),
            "index": torch.tensor(days, dtype=torch.int64),
            "location": torch.tensor(self.rasters.location_of(x.start, y.stop), dtype=torch.int64),
            "lat": torch.tensor(float(lat[0]), dtype=torch.float32),
            "lon": torch.tensor(float(lon[0]), dtype=torch.float32),
            "geo_label": torch.tensor(geo_label, dtype=torch.int64),
            "label": torch.tensor(-1, dtype=torch.int64),
            "bounds": torch.tensor([x.start, y.start, x.stop, y.stop], dtype=torch.float64),
        }

    def plot(
        self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw both views side by side, each titled with its date (torchgeo's ``plot``).

        The first three bands are shown as RGB (a single band in grey), scaled to ``[0, 1]``.

        Args:
            sample: a pair sample of this dataset.
            show_titles: write each view's date above it.
            suptitle: an optional figure title.

        Returns:
            The figure: two axes, view 0 then view 1.

        Examples:
            >>> import tempfile
            >>> from geossl.samplers import TemporalGeoPairSampler
            >>> from geossl.synthetic.rasters import generate_raster_timeseries_sample
            >>> root = generate_raster_timeseries_sample(tempfile.mkdtemp(), num_dates=3).root
            >>> series = TimeSeriesRasters(root, cache=False)
            >>> pairs = RasterTemporalPairs(series)
            >>> sampler = TemporalGeoPairSampler(series, patch_size=32, length=1, seed=0)
            >>> len(pairs.plot(pairs[next(iter(sampler))]).axes)
            2
        """
        images, times = sample["image"], sample["time"]
        return image_figure(
            [rgb_image(images[v]) for v in range(2)],
            [f"view {v}: {format_time(times[v])}" for v in range(2)],
            show_titles=show_titles,
            suptitle=suptitle,
        )
