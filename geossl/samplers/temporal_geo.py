"""Temporal positive pairs from a raster time series: one patch at two acquisition dates.

[`TemporalGeoPairSampler`][geossl.samplers.temporal_geo.TemporalGeoPairSampler] is the raster
counterpart of [`TemporalPairSampler`][geossl.samplers.TemporalPairSampler]: it draws a patch
location uniformly over the area the files cover (not per file, so a place covered by ten
overlapping files is not drawn ten times as often), then two different dates that both cover the
patch, and yields the two GeoSlice queries for
[`RasterTemporalPairs`][geossl.datasets.rasters.RasterTemporalPairs].
[`TemporalGeoGridSampler`][geossl.samplers.temporal_geo.TemporalGeoGridSampler] is its deterministic
variant for evaluation.

The rule for a patch at a date (shared by both samplers, documented on
[`TemporalGeoPairSampler`][geossl.samplers.temporal_geo.TemporalGeoPairSampler]): the date's files
cover the patch's footprint, and at most ``max_nodata_fraction`` of the patch is nodata at that
date, measured on a [`ValidityGrid`][geossl.datasets.rasters.ValidityGrid] with ``cells_per_patch``
cells along each side of a patch (64 points per patch by default) computed once from decimated reads
of the files' masks.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import shapely
import torch
from torch.utils.data import Sampler

from geossl.datasets.rasters import PairQuery, TimeSeriesRasters
from geossl.samplers.sharding import check_replicas, shard_indices, sharded_len
from geossl.utils.checks import check_at_least, check_fraction

__all__ = ["TemporalGeoGridSampler", "TemporalGeoPairSampler"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_CHUNK_POINTS = 1 << 24  # D * M * K * K grid lookups per block (bounds memory)
_TRIAL_DRAWS = 8192  # candidates drawn at construction to check that valid pairs exist
_MAX_DRAWS_PER_PAIR = 2000  # give up on an epoch after this many candidates per missing pair


class _PatchRule:
    """Patch geometry on the dataset's pixel grid and the dates valid for each patch."""

    def __init__(
        self,
        dataset: TimeSeriesRasters,
        patch_size: int,
        max_nodata_fraction: float,
        cells_per_patch: int,
    ) -> None:
        check_at_least("patch_size", patch_size, 1)
        check_fraction("max_nodata_fraction", max_nodata_fraction)
        check_at_least("cells_per_patch", cells_per_patch, 1)
        xres, yres = (float(r) for r in dataset.res)
        self.dataset = dataset
        self.patch_size = patch_size
        self.cells_per_patch = cells_per_patch
        self.max_nodata_fraction = max_nodata_fraction
        self.xres, self.yres = xres, yres
        self.width, self.height = patch_size * xres, patch_size * yres
        self.origin = dataset.origin
        self.num_dates = len(dataset.dates)
        self.footprints = dataset.footprints()
        for footprint in self.footprints:
            shapely.prepare(footprint)
        bounds = dataset.file_bounds
        self.file_bounds = [bounds[dataset.file_dates == d] for d in range(self.num_dates)]
        self.grid = dataset.validity((self.width / cells_per_patch, self.height / cells_per_patch))

    def describe(self) -> str:
        """The dataset, the patch and the rule, for error messages (one line)."""
        paths = self.dataset.paths
        if isinstance(paths, str | os.PathLike):
            where = os.fspath(paths)
        else:
            where = ", ".join(os.fspath(p) for p in paths)
        return (
            f"{self.patch_size} px patch with at most {self.max_nodata_fraction:.0%} nodata in "
            f"{where} ({len(self.dataset)} files, {self.num_dates} dates)"
        )

    def snap(self, cx: FloatArray, cy: FloatArray) -> FloatArray:
        """Patches centred near ``(cx, cy)``, corners on the pixel grid: ``[M, 4]`` bounds."""
        ox, oy = self.origin
        half_w = self.patch_size // 2 * self.xres
        half_h = self.patch_size // 2 * self.yres
        xmin = ox + np.round((cx - half_w - ox) / self.xres) * self.xres
        ymax = oy - np.round((oy - (cy + half_h)) / self.yres) * self.yres
        return np.stack([xmin, ymax - self.height, xmin + self.width, ymax], axis=1)

    def _valid_fraction(self, boxes: FloatArray) -> FloatArray:
        """Fraction of each patch's grid points with data at each date: ``[D, M]``."""
        g = self.grid
        _, grid_h, grid_w = g.valid.shape
        xmin, ymin, xmax, ymax = boxes.T
        c0 = np.ceil((xmin - g.left) / g.cell_x - 0.5)
        c1 = np.floor((xmax - g.left) / g.cell_x - 0.5)
        r0 = np.ceil((g.top - ymax) / g.cell_y - 0.5)
        r1 = np.floor((g.top - ymin) / g.cell_y - 0.5)
        # No cell centre inside the patch (cells larger than patches): the cell of its centre.
        cc = np.floor(((xmin + xmax) / 2 - g.left) / g.cell_x)
        rc = np.floor((g.top - (ymin + ymax) / 2) / g.cell_y)
        c0, c1 = np.where(c1 < c0, cc, c0), np.where(c1 < c0, cc, c1)
        r0, r1 = np.where(r1 < r0, rc, r0), np.where(r1 < r0, rc, r1)
        ncol, nrow = (c1 - c0 + 1).astype(np.int64), (r1 - r0 + 1).astype(np.int64)
        k = int(max(ncol.max(), nrow.max()))
        offsets = np.arange(k)
        cols = c0.astype(np.int64)[:, None] + offsets  # [M, K]
        rows = r0.astype(np.int64)[:, None] + offsets  # [M, K]
        col_use = offsets < ncol[:, None]
        row_use = offsets < nrow[:, None]
        col_in = col_use & (cols >= 0) & (cols < grid_w)
        row_in = row_use & (rows >= 0) & (rows < grid_h)
        cols = cols.clip(0, grid_w - 1)
        rows = rows.clip(0, grid_h - 1)
        counted = (row_use[:, :, None] & col_use[:, None, :]).sum(axis=(1, 2))  # [M]
        inside = row_in[:, :, None] & col_in[:, None, :]  # [M, K, K] (outside the grid: nodata)
        values = g.valid[:, rows[:, :, None], cols[:, None, :]] & inside  # [D, M, K, K]
        fraction: FloatArray = values.sum(axis=(2, 3)) / counted  # [D, M]
        return fraction

    def valid_dates(self, boxes: FloatArray) -> BoolArray:
        """Dates at which each patch is usable (covered, little nodata): bool ``[M, D]``."""
        m = len(boxes)
        valid = np.zeros((self.num_dates, m), dtype=bool)
        if m == 0:
            return valid.T
        k = self.cells_per_patch + 2  # grid points per patch side, at most (block size)
        step = max(1, _CHUNK_POINTS // (self.num_dates * k * k))
        for start in range(0, m, step):
            block = boxes[start : start + step]
            fraction = self._valid_fraction(block)
            valid[:, start : start + len(block)] = 1.0 - fraction <= self.max_nodata_fraction + 1e-9
        # Footprint coverage, exact, on the candidates that pass the grid test: inside one file
        # (cheap comparisons), else inside the union of the date's files (shapely, at tile seams).
        eps_x, eps_y = 1e-3 * self.xres, 1e-3 * self.yres
        shrunk = boxes + np.array([eps_x, eps_y, -eps_x, -eps_y])
        for d in range(self.num_dates):
            todo = np.flatnonzero(valid[d])
            if len(todo) == 0:
                continue
            b = shrunk[todo, None, :]  # [T, 1, 4]
            f = self.file_bounds[d][None]  # [1, F, 4]
            inside = (
                (f[..., 0] <= b[..., 0])
                & (f[..., 1] <= b[..., 1])
                & (f[..., 2] >= b[..., 2])
                & (f[..., 3] >= b[..., 3])
            ).any(axis=1)  # [T]
            covered = inside
            rest = np.flatnonzero(~inside)
            if len(rest) and len(self.file_bounds[d]) > 1:
                r = shrunk[todo[rest]]
                geoms = shapely.box(r[:, 0], r[:, 1], r[:, 2], r[:, 3])
                covered[rest] = shapely.covers(self.footprints[d], geoms)
            valid[d, todo] = covered
        return valid.T

    def queries(self, box: FloatArray, dates: tuple[int, int]) -> PairQuery:
        """The two GeoSlices of a patch at two dates."""
        bounds = [float(v) for v in box]
        return (self.dataset.query(bounds, dates[0]), self.dataset.query(bounds, dates[1]))


class TemporalGeoPairSampler(Sampler[PairQuery]):
    """Yield pairs of GeoSlice queries: one patch at two different acquisition dates.

    Each pair is drawn as follows:

    1. a patch centre uniformly over the area where at least two dates have data: a cell of the
       validity grid among those valid at two or more dates (all cells have the same area), then
       a uniform point in it; the patch (``patch_size`` pixels at the dataset's resolution) is
       snapped to the dataset's pixel grid (corners on multiples of ``res`` from the first file's
       origin), so that reads need no resampling on co-registered data and both views share one
       pixel window;
    2. the dates valid for that patch: the date's files **fully cover** the patch's footprint, and
       at most ``max_nodata_fraction`` of the patch is nodata there, estimated on the
       [`ValidityGrid`][geossl.datasets.rasters.ValidityGrid] (``cells_per_patch`` x
       ``cells_per_patch`` points per patch; a point is nodata where no file of the date covers it
       or the file's mask of the first selected band is 0);
    3. the patch is rejected (and another drawn) unless two dates are valid; otherwise two
       different valid dates are picked uniformly, in random order (view 0, view 1).

    Patches are thus uniform over the valid patch positions, whatever the number of files per
    place. A dataset with fewer than two dates, or where no patch passes the rule (e.g.
    non-overlapping files), fails at construction with one line starting ``no valid pair:``.

    **Places seen at one date only** (``single_date_pairs=True``, off by default): a collection of
    separate patches (BigEarthNet: each patch is its own place, at one date) has no temporal pair
    at all. With this option step 1 draws over the area where *one* date has data, and a patch
    with a single valid date gives the pair ``(d, d)``: both views are the same image, so the
    temporal-positive term reduces to MoCo-v2's two augmentations of one image for that pair
    (patches with two or more valid dates still get two different dates). The share of such pairs
    among the trial draws is `single_date_rate`.

    Randomness and sharding follow [`TemporalPairSampler`][geossl.samplers.TemporalPairSampler]:
    epoch ``e`` uses ``torch.Generator().manual_seed(seed + e)`` unless a ``generator`` is given
    (then every draw comes from it), the epoch advances after each ``__iter__`` and
    [`set_epoch`][geossl.samplers.temporal_geo.TemporalGeoPairSampler.set_epoch] sets it; with
    ``num_replicas > 1`` every replica draws the same ``length`` pairs and keeps its shard (under
    Lightning leave ``num_replicas=1``: its ``DistributedSamplerWrapper`` shards the pairs).

    Args:
        dataset: the time series.
        patch_size: patch side in pixels at the dataset's resolution.
        length: pairs per epoch (before sharding).
        max_nodata_fraction: largest nodata share of a patch at each of its two dates.
        seed: base seed (``seed + epoch``).
        generator: optional generator to draw from instead.
        cells_per_patch: validity-grid cells along a patch side (the nodata estimate's resolution).
        drop_last: with ``num_replicas > 1``: drop the tail that does not divide evenly (else pad
            by repeating the first pairs).
        num_replicas: shard the pairs over this many processes (default 1: no sharding).
        rank: this process's shard in ``0..num_replicas-1``.
        single_date_pairs: pair a patch with a single valid date with itself (see above) instead
            of rejecting it.

    Raises:
        ValueError: for invalid arguments, fewer than two dates, or when no patch has two valid
            dates ("no valid pair: ..."; with ``single_date_pairs``: one valid date).

    Example:
        >>> import tempfile
        >>> from geossl.datasets.rasters import TimeSeriesRasters
        >>> from geossl.synthetic.rasters import generate_raster_timeseries_sample
        >>> sample = generate_raster_timeseries_sample(tempfile.mkdtemp(), num_dates=5)
        >>> series = TimeSeriesRasters(sample.root, cache=False)
        >>> sampler = TemporalGeoPairSampler(series, patch_size=32, length=4, seed=0)
        >>> view_0, view_1 = next(iter(sampler))  # one patch, two dates
        >>> view_0[:2] == view_1[:2], view_0[2] != view_1[2]
        (True, True)
        >>> patch = series[view_0]
        >>> tuple(patch["image"].shape)
        (4, 32, 32)
    """

    def __init__(
        self,
        dataset: TimeSeriesRasters,
        patch_size: int,
        length: int,
        max_nodata_fraction: float = 0.1,
        seed: int = 0,
        generator: torch.Generator | None = None,
        cells_per_patch: int = 8,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        single_date_pairs: bool = False,
    ) -> None:
        check_at_least("length", length, 1)
        check_replicas(num_replicas, rank)
        rule = _PatchRule(dataset, patch_size, max_nodata_fraction, cells_per_patch)
        hint = "; single_date_pairs=True pairs a place seen at one date with itself"
        if rule.num_dates < 2 and not single_date_pairs:
            raise ValueError(
                f"no valid pair: temporal pairs need two acquisition dates, found {rule.num_dates} "
                f"for a {rule.describe()}{hint}"
            )
        g = rule.grid
        #: Fewest valid dates of a patch that gives a pair (1 with ``single_date_pairs``).
        self.min_dates = 1 if single_date_pairs else 2
        self.single_date_pairs = single_date_pairs
        self._cells: IntArray = np.flatnonzero(g.valid.sum(axis=0) >= self.min_dates).astype(
            np.int64
        )
        if len(self._cells) == 0:
            what = "at any date" if single_date_pairs else "at two acquisition dates"
            raise ValueError(
                f"no valid pair: no place has data {what} for a {rule.describe()}"
                f"{'' if single_date_pairs else hint}"
            )
        self.rule = rule
        self.dataset = dataset
        self.length = length
        self.seed = seed
        self.generator = generator
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        # A trial draw: fail now (not in the middle of training) when no patch is ever valid.
        trial = torch.Generator().manual_seed(seed)
        boxes, trial_dates, tried = self._candidates(_TRIAL_DRAWS, trial)
        #: Share of the trial candidates that gave a pair (drives the size of later draws).
        self.acceptance_rate = len(boxes) / tried
        #: Share of the trial pairs whose two views are one date (0 without single_date_pairs).
        self.single_date_rate = (
            float(np.mean(trial_dates[:, 0] == trial_dates[:, 1])) if len(boxes) else 0.0
        )
        if len(boxes) == 0:
            what = "a valid acquisition date" if single_date_pairs else "two acquisition dates"
            raise ValueError(
                f"no valid pair: none of {tried} random patches has {what} that "
                f"cover it for a {rule.describe()}; lower patch_size or raise max_nodata_fraction"
            )

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used by the next ``__iter__`` (seed + epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of pairs one iteration yields (on this replica)."""
        return sharded_len(self.length, self.num_replicas, self.drop_last)

    def _candidates(
        self, count: int, generator: torch.Generator
    ) -> tuple[FloatArray, IntArray, int]:
        """Draw ``count`` candidates; return the accepted ``(boxes, dates)`` and ``count``."""
        g = self.rule.grid
        width = g.valid.shape[2]
        pick = torch.randint(len(self._cells), (count,), generator=generator).numpy()
        uv = torch.rand((count, 2), generator=generator, dtype=torch.float64).numpy()
        scores = torch.rand((count, self.rule.num_dates), generator=generator, dtype=torch.float64)
        cells = self._cells[pick]
        cx = g.left + (cells % width + uv[:, 0]) * g.cell_x
        cy = g.top - (cells // width + uv[:, 1]) * g.cell_y
        boxes = self.rule.snap(cx, cy)
        valid = self.rule.valid_dates(boxes)  # [M, D]
        counts = valid.sum(axis=1)  # [M]
        keep = counts >= self.min_dates
        ranked = np.where(valid, scores.numpy(), -1.0)[keep]
        if ranked.shape[1] == 1:  # a single date in the dataset (single_date_pairs)
            ranked = np.concatenate([ranked, np.full_like(ranked, -1.0)], axis=1)
        dates = np.argsort(-ranked, axis=1, kind="stable")[:, :2].astype(np.int64)
        single = counts[keep] == 1  # only with single_date_pairs: the date with itself
        dates[single, 1] = dates[single, 0]
        return boxes[keep], dates, count

    def draw(self, count: int, generator: torch.Generator) -> tuple[FloatArray, IntArray]:
        """Draw ``count`` pairs (unsharded).

        Args:
            count: number of pairs.
            generator: the source of randomness.

        Returns:
            ``(boxes, dates)``: float64 ``[count, 4]`` patch bounds ``(xmin, ymin, xmax, ymax)`` in
            the dataset's CRS and int64 ``[count, 2]`` date ids (view 0, view 1), distinct per row
            (equal for a single-date pair with ``single_date_pairs``).

        Raises:
            RuntimeError: when the draws stop giving pairs (cannot happen after a successful
                construction, kept as a guard against an endless loop).
        """
        boxes: list[FloatArray] = []
        dates: list[IntArray] = []
        have, tried, rate = 0, 0, max(self.acceptance_rate, 1e-3)
        while have < count:
            size = int(min(max((count - have) / rate * 1.2, 256), 1 << 16))
            b, d, n = self._candidates(size, generator)
            boxes.append(b)
            dates.append(d)
            have, tried = have + len(b), tried + n
            rate = max(have / tried, 1e-3)
            if tried > _MAX_DRAWS_PER_PAIR * count + _TRIAL_DRAWS and have < count:
                raise RuntimeError(
                    f"only {have} of {count} pairs after {tried} draws for a {self.rule.describe()}"
                )
        return np.concatenate(boxes)[:count], np.concatenate(dates)[:count]

    def __iter__(self) -> Iterator[PairQuery]:
        """Yield this epoch's pairs of queries ``(view 0, view 1)`` and advance the epoch."""
        if self.generator is not None:
            generator = self.generator
        else:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        boxes, dates = self.draw(self.length, generator)
        order = shard_indices(len(boxes), self.num_replicas, self.rank, self.drop_last).tolist()
        for i in order:
            yield self.rule.queries(boxes[i], (int(dates[i, 0]), int(dates[i, 1])))


class TemporalGeoGridSampler(Sampler[PairQuery]):
    """Deterministic pairs for evaluation: every grid patch at each pair of consecutive dates.

    Patches tile the dataset's bounds on its pixel grid, row by row from the top-left, every
    ``stride`` pixels (default ``patch_size``: non-overlapping). For each patch, the dates that
    pass the rule of [`TemporalGeoPairSampler`][geossl.samplers.temporal_geo.TemporalGeoPairSampler]
    (coverage and ``max_nodata_fraction``), sorted ``d_1 < ... < d_n``, give the pairs ``(d_1, d_2),
    ..., (d_{n-1}, d_n)``: every valid date of every patch appears, with its neighbours in time.

    Args:
        dataset: the time series.
        patch_size: patch side in pixels.
        stride: pixels between patch corners (default ``patch_size``).
        max_nodata_fraction: largest nodata share of a patch at a date.
        cells_per_patch: validity-grid cells along a patch side.
        drop_last: with ``num_replicas > 1``: drop the uneven tail (else pad by wrapping).
        num_replicas: shard the pairs over this many processes.
        rank: this process's shard.

    Raises:
        ValueError: for invalid arguments.

    Example:
        >>> import tempfile
        >>> from geossl.datasets.rasters import TimeSeriesRasters
        >>> from geossl.synthetic.rasters import generate_raster_timeseries_sample
        >>> sample = generate_raster_timeseries_sample(tempfile.mkdtemp(), num_dates=5)
        >>> series = TimeSeriesRasters(sample.root, cache=False)
        >>> grid = TemporalGeoGridSampler(series, patch_size=32)
        >>> len(grid), len(grid) == len(list(grid))  # the same pairs at every pass
        (30, True)
    """

    def __init__(
        self,
        dataset: TimeSeriesRasters,
        patch_size: int,
        stride: int | None = None,
        max_nodata_fraction: float = 0.1,
        cells_per_patch: int = 8,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        stride = patch_size if stride is None else stride
        check_at_least("stride", stride, 1)
        check_replicas(num_replicas, rank)
        rule = _PatchRule(dataset, patch_size, max_nodata_fraction, cells_per_patch)
        left, bottom, right, top = dataset.extent
        ox, oy = rule.origin
        first_col = math.ceil((left - ox) / rule.xres - 1e-6)
        first_row = math.ceil((oy - top) / rule.yres - 1e-6)
        last_col = math.floor((right - ox) / rule.xres + 1e-6) - patch_size
        last_row = math.floor((oy - bottom) / rule.yres + 1e-6) - patch_size
        cols = np.arange(first_col, last_col + 1, stride)
        rows = np.arange(first_row, last_row + 1, stride)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        xmin = ox + cc.ravel() * rule.xres
        ymax = oy - rr.ravel() * rule.yres
        boxes = np.stack([xmin, ymax - rule.height, xmin + rule.width, ymax], axis=1)
        valid = rule.valid_dates(boxes)  # [M, D]
        patch_ids: list[int] = []
        pairs: list[tuple[int, int]] = []
        for m in np.flatnonzero(valid.sum(axis=1) >= 2):
            good = np.flatnonzero(valid[m])
            for a, b in itertools.pairwise(good):
                patch_ids.append(int(m))
                pairs.append((int(a), int(b)))
        self.rule = rule
        self.dataset = dataset
        #: All patch bounds of the grid, float64 ``[M, 4]`` (valid or not).
        self.boxes: FloatArray = boxes
        #: Dates valid at each grid patch, bool ``[M, D]``.
        self.valid: BoolArray = valid
        self._patch_ids = patch_ids
        self._pairs = pairs
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        """No effect (the pairs do not depend on the epoch); for Lightning's sake."""

    def __len__(self) -> int:
        """Number of pairs one iteration yields (on this replica)."""
        return sharded_len(len(self._pairs), self.num_replicas, self.drop_last)

    def __iter__(self) -> Iterator[PairQuery]:
        """Yield the pairs in grid order (row-major, then date order)."""
        order = shard_indices(
            len(self._pairs), self.num_replicas, self.rank, self.drop_last
        ).tolist()
        for i in order:
            yield self.rule.queries(self.boxes[self._patch_ids[i]], self._pairs[i])
