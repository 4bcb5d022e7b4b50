"""The prefetching block reader: windowed reads of chips on reader threads, in order.

A *block* is one row segment of a raster's chips (at most `_BLOCK_PIXELS` wide) or a few
fMoW images. Reader threads (``workers``) read blocks ahead of the model through a bounded queue
(`_prefetch`), drop the chips that are mostly nodata and normalise the rest
([`normalize_chips`][geossl.embed.chips.normalize_chips]); blocks come out in source and row-major
order.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from geossl.embed.chips import ChipBlock, chip_footprints, normalize_chips, read_chip_block
from geossl.embed.fmow_items import read_fmow_item
from geossl.embed.sources import FMoWSource, RasterSource, Source, open_raster

T = TypeVar("T")

#: Width in pixels of the window read per block (a row segment of chips).
_BLOCK_PIXELS = 2048


#: fMoW images read per block.
_FMOW_BLOCK = 16


def _prefetch(
    tasks: Iterator[Callable[[], T]], workers: int, depth: int
) -> Generator[T, None, None]:
    """Run ``tasks`` on ``workers`` threads, at most ``depth`` ahead; yield results in order."""
    if workers == 0:
        for task in tasks:
            yield task()
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="geossl-embed") as pool:
        futures: deque[Future[T]] = deque()
        try:
            for task in tasks:
                futures.append(pool.submit(task))
                if len(futures) >= depth:
                    yield futures.popleft().result()
            while futures:
                yield futures.popleft().result()
        finally:
            for future in futures:
                future.cancel()


@dataclass(frozen=True, slots=True)
class _ReadSpec:
    """What the reader threads need to know (shared, read-only)."""

    chip_size: int
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_nodata: float
    footprints: bool


def _empty_block(source: int, spec: _ReadSpec, channels: int, considered: int) -> ChipBlock:
    """A block whose chips were all skipped."""
    size = spec.chip_size
    items: dict[str, Any] | None = None
    if spec.footprints:
        items = {"source": [], "crs": [], "times": [], "footprints": []}
        items.update(lon=np.empty(0), lat=np.empty(0))
    return ChipBlock(
        source=source,
        pixels=np.empty((0, channels, size, size), np.float32),
        rows=np.empty(0, np.int64),
        cols=np.empty(0, np.int64),
        windows=np.empty((0, 4), np.int64),
        nodata_fraction=np.empty(0, np.float32),
        num_considered=considered,
        items=items,
    )


def _read_raster_block(
    index: int, source: RasterSource, row: int, col0: int, col1: int, spec: _ReadSpec
) -> ChipBlock:
    from rasterio.errors import RasterioError

    grid = source.grid
    try:
        with open_raster(source.path) as dataset:
            raw, valid = read_chip_block(
                dataset,
                grid,
                row,
                col0,
                col1,
                source.bands,
                dtype=source.dtype,
                all_valid=source.all_valid,
            )
    except RasterioError as err:
        # A damaged file fails mid-run: one line naming it (GDAL's reason is on the cause).
        reason = str(err.__cause__ or err).strip().splitlines() or [type(err).__name__]
        raise ValueError(
            f"{source.path}: cannot read chip row {row} (pixel rows {row * grid.stride} to "
            f"{row * grid.stride + grid.chip_size - 1}): {reason[0]}"
        ) from err
    nodata = 1.0 - valid.mean(axis=(1, 2), dtype=np.float64)
    keep = nodata <= spec.max_nodata
    n = int(keep.sum())
    if n == 0:
        return _empty_block(index, spec, len(source.bands), col1 - col0)
    cols = np.arange(col0, col1, dtype=np.int64)[keep]
    rows = np.full(n, row, dtype=np.int64)
    size = np.full(n, grid.chip_size, dtype=np.int64)
    windows = np.stack([cols * grid.stride, rows * grid.stride, size, size], axis=1)
    pixels = normalize_chips(raw[keep], valid[keep], scale=spec.scale, mean=spec.mean, std=spec.std)
    items: dict[str, Any] | None = None
    if spec.footprints:
        footprints, lon, lat = chip_footprints(source.transform, source.crs, windows)
        path = source.row_source
        items = {
            "source": [path] * n,
            "item_id": [source.item_id] * n,
            "crs": [source.crs_label] * n,
            "times": [source.datetime] * n,
            "lon": lon,
            "lat": lat,
            "footprints": footprints,
        }
    return ChipBlock(
        source=index,
        pixels=pixels,
        rows=rows,
        cols=cols,
        windows=windows,
        nodata_fraction=nodata[keep].astype(np.float32),
        num_considered=col1 - col0,
        items=items,
    )


def _read_fmow_block(
    index: int, source: FMoWSource, images: Sequence[Path], spec: _ReadSpec
) -> ChipBlock:
    invalid: dict[str, int] = {}
    kept = []
    for image in images:
        item = read_fmow_item(image, spec.chip_size, source.bands, spec.scale)
        if isinstance(item, str):
            invalid[item] = invalid.get(item, 0) + 1
        else:
            kept.append((image, item))
    channels = len(source.bands) if source.bands is not None else len(spec.mean)
    if not kept:
        block = _empty_block(index, spec, channels, len(images))
        block.invalid = invalid
        return block
    raw = np.stack([item.pixels for _, item in kept])
    if raw.shape[1] != len(spec.mean):
        raise ValueError(
            f"{kept[0][0]}: the image has {raw.shape[1]} band(s) but the weights take "
            f"{len(spec.mean)}; choose them with --bands"
        )
    n = len(kept)
    return ChipBlock(
        source=index,
        pixels=normalize_chips(raw, None, scale=1.0, mean=spec.mean, std=spec.std),
        rows=np.full(n, -1, dtype=np.int64),
        cols=np.full(n, -1, dtype=np.int64),
        windows=np.array([item.window for _, item in kept], dtype=np.int64),
        nodata_fraction=np.zeros(n, np.float32),
        num_considered=len(images),
        items={
            "source": [str(image) for image, _ in kept],
            "crs": [item.crs for _, item in kept],
            "times": [item.datetime for _, item in kept],
            "lon": np.array([item.lon for _, item in kept]),
            "lat": np.array([item.lat for _, item in kept]),
            "footprints": [item.footprint for _, item in kept],
        },
        invalid=invalid,
    )


def _source_tasks(
    index: int,
    source: Source,
    spec: _ReadSpec,
    start: int = 0,
    stop: int | None = None,
    budget: float = math.inf,
) -> Iterator[tuple[int, Callable[[], ChipBlock]]]:
    """``(items, task)`` per block of a source's chip rows (fMoW: images) ``start:stop``.

    Stops after ``budget`` items (chips or images); a raster's last block may be a part of a row.
    """
    if isinstance(source, FMoWSource):
        images = source.images
        end = len(images) if stop is None else stop
        for first in range(start, end, _FMOW_BLOCK):
            if budget <= 0:
                return
            chunk = images[first : int(min(first + _FMOW_BLOCK, end, first + budget))]
            budget -= len(chunk)
            yield len(chunk), partial(_read_fmow_block, index, source, chunk, spec)
        return
    grid = source.grid
    per_block = max(1, _BLOCK_PIXELS // grid.stride)
    for row in range(start, grid.n_rows if stop is None else stop):
        for col0 in range(0, grid.n_cols, per_block):
            if budget <= 0:
                return
            col1 = int(min(col0 + per_block, grid.n_cols, col0 + budget))
            budget -= col1 - col0
            yield col1 - col0, partial(_read_raster_block, index, source, row, col0, col1, spec)


def _block_tasks(
    sources: Sequence[Source], spec: _ReadSpec, max_chips: int | None
) -> Iterator[Callable[[], ChipBlock]]:
    """One task per block, in source and row-major order, stopping after ``max_chips``."""
    budget = max_chips if max_chips is not None else math.inf
    for index, source in enumerate(sources):
        for items, task in _source_tasks(index, source, spec, budget=budget):
            budget -= items
            yield task
        if budget <= 0:
            return


def _total_items(sources: Sequence[Source], max_chips: int | None) -> int:
    total = sum(s.num_items for s in sources)
    return total if max_chips is None else min(total, max_chips)
