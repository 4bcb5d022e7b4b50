"""Embed rasters and fMoW folders with a pretrained backbone: GeoParquet or chip-grid GeoTIFFs.

:func:`embed_rasters` is the library entry point behind ``geossl embed``. It takes the model and its
normalisation explicitly, so any timm-style backbone that maps ``[B, C, H, W]`` to pooled features
``[B, D]`` works; the CLI loads both from a weights file with
:func:`geossl.weights.load_backbone`.

The pipeline streams: reader threads (``workers``) do windowed reads of one row segment of chips
at a time (:func:`~geossl.export.chips.read_chip_block`), drop the chips that are mostly nodata,
normalise the rest and hand them over through a bounded queue; the main thread batches chips
across blocks, runs the model under :func:`torch.inference_mode` (bf16 autocast on CUDA, fp32 on
CPU) and passes the embeddings to a streaming writer (:mod:`geossl.export.writers`). Memory is
bounded by the queue, one batch and one writer buffer, whatever the raster size.

Every output file is written under a temporary name and renamed when the whole run succeeded
(:func:`geossl.utils.io.atomic_output`): an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from geossl import __version__
from geossl.export.chips import ChipBlock, chip_footprints, normalise_chips, read_chip_block
from geossl.export.preview import PCA, PCAAccumulator, scatter_canvas, stretch_to_uint8
from geossl.export.preview import write_preview as _write_preview
from geossl.export.sources import (
    FMoWSource,
    RasterSource,
    Source,
    find_sources,
    open_raster,
    read_fmow_item,
)
from geossl.export.writers import (
    GEOSSL_METADATA_KEY,
    GeoParquetWriter,
    GridTiffWriter,
    read_grid_rows,
)
from geossl.utils.io import atomic_output

__all__ = [
    "FORMATS",
    "EmbedReport",
    "describe_pooling",
    "embed_rasters",
    "output_paths",
]

T = TypeVar("T")
Format = Literal["geoparquet", "geotiff"]

#: Output formats of :func:`embed_rasters`.
FORMATS: tuple[str, ...] = ("geoparquet", "geotiff")

#: Width in pixels of the window read per block (a row segment of chips).
_BLOCK_PIXELS = 2048
#: fMoW images read per block.
_FMOW_BLOCK = 16
#: Percentiles of the PCA scores mapped to 0 and 255 in the previews.
_STRETCH = (2.0, 98.0)


@dataclass
class EmbedReport:
    """What an embedding run did.

    Attributes:
        outputs: the embedding files written (one GeoParquet, or one GeoTIFF per raster).
        previews: the preview files written (PNG and GeoTIFF per raster or fMoW folder).
        num_sources: rasters and fMoW folders embedded.
        num_chips: chips of the grids (fMoW: images) considered.
        num_embedded: chips embedded (rows of the GeoParquet, valid pixels of the GeoTIFFs).
        num_skipped_nodata: chips skipped because more than ``max_nodata`` of them was nodata.
        skipped_invalid: fMoW images skipped, by reason (bad JSON, no footprint, unreadable...).
        embedding_dim: size D of the embeddings.
        seconds: wall-clock time of the embedding pass (reading, model, writing).
        total_seconds: wall-clock time of the whole run (checks, PCA, previews included).
        output_bytes: total size of ``outputs``.
    """

    outputs: list[Path] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)
    num_sources: int = 0
    num_chips: int = 0
    num_embedded: int = 0
    num_skipped_nodata: int = 0
    skipped_invalid: dict[str, int] = field(default_factory=dict)
    embedding_dim: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0
    output_bytes: int = 0

    def add_block(self, block: ChipBlock) -> None:
        """Count the chips of an embedded block."""
        invalid = sum(block.invalid.values())
        self.num_chips += block.num_considered
        self.num_embedded += block.num_kept
        self.num_skipped_nodata += block.num_considered - block.num_kept - invalid
        for reason, count in block.invalid.items():
            self.skipped_invalid[reason] = self.skipped_invalid.get(reason, 0) + count

    @property
    def chips_per_s(self) -> float:
        """Chips embedded per second of the embedding pass."""
        return self.num_embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One paragraph for people: counts, rate, where the files are."""
        skipped = f"{self.num_skipped_nodata:,} skipped (mostly nodata)"
        invalid = sum(self.skipped_invalid.values())
        if invalid:
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped_invalid.items()))
            skipped += f", {invalid:,} invalid fMoW images ({reasons})"
        where = str(self.outputs[0]) if len(self.outputs) == 1 else f"{len(self.outputs)} files"
        if len(self.outputs) > 1:
            where += f" in {self.outputs[0].parent}"
        lines = [
            f"embedded {self.num_embedded:,} of {self.num_chips:,} chips from "
            f"{self.num_sources:,} source(s) ({skipped}) in {self.seconds:.1f} s: "
            f"{self.chips_per_s:,.1f} chips/s",
            f"wrote {where} ({_human_bytes(self.output_bytes)}, D={self.embedding_dim})",
        ]
        if self.previews:
            lines.append(f"previews: {self.previews[0].parent}")
        return "\n".join(lines)


def _human_bytes(size: int) -> str:
    """``size`` in B, kB, MB or GB (powers of 1000)."""
    if size < 1000:
        return f"{size} B"
    exponent = min(int(math.log10(size) // 3), 3)
    return f"{size / 1000**exponent:,.1f} {('B', 'kB', 'MB', 'GB')[exponent]}"


def describe_pooling(model: nn.Module) -> str:
    """How a timm backbone pools its feature map (for the output's metadata).

    Args:
        model: the backbone.

    Returns:
        timm's pool type (``"avg"`` for ResNets, ``"token"``/``"avg"`` for ViTs), or
        ``"model output"`` when the model does not say.
    """
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str) and pool:
        return pool
    kind = getattr(pool, "pool_type", None)
    return str(kind) if kind else "model output"


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """The files a run writes.

    Attributes:
        outputs: per source, its embeddings file (the same GeoParquet for every source).
        previews: per source, its ``(png, geotiff)`` preview pair.
    """

    outputs: list[Path]
    previews: list[tuple[Path, Path]]


def output_paths(
    output: str | os.PathLike[str], fmt: str, sources: Sequence[Source], *, preview: bool = True
) -> OutputPlan:
    """Where a run writes its files.

    * ``geoparquet``: ``output`` itself; previews in ``{output without suffix}_preview/``, named
      after each source (``{name}.png``, ``{name}.tif``).
    * ``geotiff``: ``output`` is a folder with ``{name}.tif`` per raster; previews in
      ``output/preview/``.

    Args:
        output: the ``--output`` path.
        fmt: ``"geoparquet"`` or ``"geotiff"``.
        sources: the run's sources (their unique ``name``).
        preview: whether previews are written.

    Returns:
        The plan.
    """
    out = Path(output)
    if fmt == "geoparquet":
        outputs = [out for _ in sources]
        folder = out.with_name(f"{out.stem if out.suffix else out.name}_preview")
    else:
        outputs = [out / f"{s.name}.tif" for s in sources]
        folder = out / "preview"
    previews = (
        [(folder / f"{s.name}.png", folder / f"{s.name}.tif") for s in sources] if preview else []
    )
    return OutputPlan(outputs, previews)


def _check_outputs(output: Path, fmt: str, plan: OutputPlan, overwrite: bool) -> None:
    if fmt == "geoparquet" and output.is_dir():
        raise FileExistsError(f"{output} is a folder; --format geoparquet writes one file")
    if fmt == "geotiff" and output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} is a file; --format geotiff writes a folder of GeoTIFFs")
    if overwrite:
        return
    for path in dict.fromkeys([*plan.outputs, *(p for pair in plan.previews for p in pair)]):
        if path.exists():
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


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
    pixels = normalise_chips(raw[keep], valid[keep], scale=spec.scale, mean=spec.mean, std=spec.std)
    items: dict[str, Any] | None = None
    if spec.footprints:
        footprints, lon, lat = chip_footprints(source.transform, source.crs, windows)
        path = str(source.path)
        items = {
            "source": [path] * n,
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
        pixels=normalise_chips(raw, None, scale=1.0, mean=spec.mean, std=spec.std),
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


def _block_tasks(
    sources: Sequence[Source], spec: _ReadSpec, max_chips: int | None
) -> Iterator[Callable[[], ChipBlock]]:
    """One task per block, in source and row-major order, stopping after ``max_chips``."""
    budget = max_chips if max_chips is not None else math.inf
    for index, source in enumerate(sources):
        if isinstance(source, FMoWSource):
            images = source.images
            for start in range(0, len(images), _FMOW_BLOCK):
                if budget <= 0:
                    return
                chunk = images[start : start + int(min(_FMOW_BLOCK, budget))]
                budget -= len(chunk)
                yield partial(_read_fmow_block, index, source, chunk, spec)
            continue
        grid = source.grid
        per_block = max(1, _BLOCK_PIXELS // grid.stride)
        for row in range(grid.n_rows):
            for col0 in range(0, grid.n_cols, per_block):
                if budget <= 0:
                    return
                col1 = int(min(col0 + per_block, grid.n_cols, col0 + budget))
                budget -= col1 - col0
                yield partial(_read_raster_block, index, source, row, col0, col1, spec)


def _total_items(sources: Sequence[Source], max_chips: int | None) -> int:
    total = sum(s.num_items for s in sources)
    return total if max_chips is None else min(total, max_chips)


class _Model:
    """The backbone on its device: ``[N, C, H, W]`` float32 numpy in, ``[N, D]`` float32 out."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.device = device

    def __call__(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = self.model(x)
            else:
                out = self.model(x)
            if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"the model must return pooled features [B, D] (a timm model with "
                    f"num_classes=0); got {shape} for a batch of {len(x)}"
                )
            result: npt.NDArray[np.float32] = out.float().cpu().numpy()
        return result


@dataclass(slots=True)
class _Pending:
    block: ChipBlock
    next: int = 0  # next chip to put in a batch
    filled: int = 0  # chips embedded


def _embed_blocks(
    blocks: Iterator[ChipBlock], run: _Model, batch_size: int, dim: int
) -> Iterator[ChipBlock]:
    """Batch the kept chips of consecutive blocks; yield each block, embedded, in order."""
    pending: deque[_Pending] = deque()
    waiting = 0  # chips read but not yet embedded

    def run_batch() -> None:
        nonlocal waiting
        parts: list[tuple[_Pending, int, int]] = []
        size = 0
        for entry in pending:
            left = entry.block.num_kept - entry.next
            if left <= 0:
                continue
            take = min(left, batch_size - size)
            parts.append((entry, entry.next, entry.next + take))
            entry.next += take
            size += take
            if size == batch_size:
                break
        pixels = np.concatenate([p.block.pixels[a:b] for p, a, b in parts])
        out = run(pixels)
        offset = 0
        for entry, a, b in parts:
            embeddings = entry.block.embeddings
            if embeddings is not None:
                embeddings[a:b] = out[offset : offset + b - a]
            entry.filled += b - a
            offset += b - a
        waiting -= size

    def ready() -> Iterator[ChipBlock]:
        while pending and pending[0].filled == pending[0].block.num_kept:
            block = pending.popleft().block
            block.pixels = block.pixels[:0]  # free the pixels early
            yield block

    for block in blocks:
        block.embeddings = np.empty((block.num_kept, dim), np.float32)
        pending.append(_Pending(block))
        waiting += block.num_kept
        while waiting >= batch_size:
            run_batch()
        yield from ready()
    while waiting > 0:
        run_batch()
    yield from ready()


def _probe_dim(run: _Model, channels: int, chip_size: int) -> int:
    """Embedding size D from one forward pass on zeros (also checks the output's shape)."""
    out = run(np.zeros((1, channels, chip_size, chip_size), np.float32))
    return int(out.shape[1])


def _write_previews(
    stack: ExitStack,
    sources: Sequence[Source],
    plan: OutputPlan,
    scores: list[Any],
    pca: PCA,
    metadata: Mapping[str, Any],
) -> list[Path]:
    """Stretch the PCA scores with run-wide percentiles and write each source's preview."""
    finite = [
        s.reshape(-1, 3) if isinstance(src, RasterSource) else s[2]
        for src, s in zip(sources, scores, strict=True)
    ]
    values = np.concatenate(finite) if finite else np.empty((0, 3), np.float32)
    values = values[np.isfinite(values).all(axis=1)]
    if len(values):
        low, high = np.percentile(values, _STRETCH, axis=0)
    else:
        low, high = np.zeros(3), np.ones(3)
    tags = {
        GEOSSL_METADATA_KEY: json.dumps(
            {
                **metadata,
                "preview": {
                    "components": [1, 2, 3],
                    "explained_variance_ratio": pca.explained_variance_ratio[:3].tolist(),
                    "stretch_percentiles": list(_STRETCH),
                    "pca_samples": pca.num_samples,
                },
            }
        )
    }
    written: list[Path] = []
    for source, score, (png, tif) in zip(sources, scores, plan.previews, strict=True):
        if isinstance(source, RasterSource):
            valid = np.isfinite(score).all(axis=-1)
            rgb = stretch_to_uint8(score, low, high).transpose(2, 0, 1)
            crs: Any = source.crs
            transform = source.grid.cell_transform(source.transform)
        else:
            lon, lat, vals = score
            rgb, valid, transform = scatter_canvas(lon, lat, stretch_to_uint8(vals, low, high))
            crs = "EPSG:4326"
        png.parent.mkdir(parents=True, exist_ok=True)
        png_tmp = stack.enter_context(atomic_output(png))
        tif_tmp = stack.enter_context(atomic_output(tif))
        _write_preview(
            rgb, valid, png=png_tmp, geotiff=tif_tmp, crs=crs, transform=transform, tags=tags
        )
        written += [png, tif]
    return written


def _scores_from_parquet(path: Path, sources: Sequence[Source], pca: PCA) -> list[Any]:
    """PCA scores of every row of the GeoParquet, placed per source."""
    import pyarrow.parquet as pq

    index: dict[str, int] = {}
    scores: list[Any] = []
    fmow: dict[int, list[npt.NDArray[Any]]] = {}
    for i, source in enumerate(sources):
        if isinstance(source, RasterSource):
            index[str(source.path)] = i
            scores.append(np.full((source.grid.n_rows, source.grid.n_cols, 3), np.nan, np.float32))
        else:
            index.update({str(image): i for image in source.images})
            scores.append(None)
            fmow[i] = []
    columns = ["source", "col_off", "row_off", "lon", "lat", "embedding"]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=columns):
        names = batch.column(0).to_pylist()
        emb = batch.column(5).flatten().to_numpy().reshape(len(batch), -1)
        projected = pca.transform(emb)[:, :3]
        col_off = batch.column(1).to_numpy()
        row_off = batch.column(2).to_numpy()
        lon = batch.column(3).to_numpy(zero_copy_only=False)
        lat = batch.column(4).to_numpy(zero_copy_only=False)
        owners = np.array([index[name] for name in names])
        for i in np.unique(owners):
            sel = owners == i
            source = sources[i]
            if isinstance(source, RasterSource):
                stride = source.grid.stride
                scores[i][row_off[sel] // stride, col_off[sel] // stride] = projected[sel]
            else:
                fmow[i].append(np.column_stack([lon[sel], lat[sel], projected[sel]]))
    for i, parts in fmow.items():
        table = np.concatenate(parts) if parts else np.empty((0, 5))
        scores[i] = (table[:, 0], table[:, 1], table[:, 2:5].astype(np.float32))
    return scores


def _scores_from_grid(path: Path, source: RasterSource, pca: PCA) -> npt.NDArray[np.float32]:
    """PCA scores of a chip-grid GeoTIFF (full embeddings), ``[n_rows, n_cols, 3]``."""
    grid = source.grid
    scores = np.full((grid.n_rows, grid.n_cols, 3), np.nan, np.float32)
    for row0, values in read_grid_rows(path):
        count, rows, cols = values.shape
        flat = values.reshape(count, -1).T
        ok = np.isfinite(flat).all(axis=1)
        out = np.full((len(flat), 3), np.nan, np.float32)
        if ok.any():
            out[ok] = pca.transform(flat[ok])[:, :3]
        scores[row0 : row0 + rows] = out.reshape(rows, cols, 3)
    return scores


def _reduce_grid(
    src: Path, dst: Path, source: RasterSource, pca: PCA, tags: dict[str, str]
) -> None:
    """Write the PCA scores of a full chip-grid GeoTIFF as a new one."""
    k = len(pca.components)
    grid = source.grid
    writer = GridTiffWriter(
        dst,
        n_rows=grid.n_rows,
        n_cols=grid.n_cols,
        count=k,
        crs=source.crs,
        transform=grid.cell_transform(source.transform),
        descriptions=[f"pc_{i + 1}" for i in range(k)],
        tags=tags,
    )
    try:
        for row0, values in read_grid_rows(src):
            count, _, cols = values.shape
            flat = values.reshape(count, -1).T
            ok = np.isfinite(flat).all(axis=1)
            rr, cc = np.divmod(np.flatnonzero(ok), cols)
            writer.write(rr + row0, cc, pca.transform(flat[ok]))
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _check_arguments(
    *,
    fmt: str,
    chip_size: int,
    stride: int,
    batch_size: int,
    workers: int,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float,
    max_nodata: float,
    pca: int | None,
    max_chips: int | None,
) -> None:
    """Raise ValueError for an invalid argument of :func:`embed_rasters`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    for name, value, low in (
        ("chip_size", chip_size, 1),
        ("stride", stride, 1),
        ("batch_size", batch_size, 1),
        ("workers", workers, 0),
    ):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean and std need one value per band, got {len(mean)} and {len(std)}")
    if min(std) <= 0 or not scale > 0:
        raise ValueError(f"std and scale must be positive, got std={list(std)}, scale={scale}")
    if not 0.0 <= max_nodata <= 1.0:
        raise ValueError(f"max_nodata must be in [0, 1], got {max_nodata}")
    if pca is not None and (fmt != "geotiff" or pca < 1):
        raise ValueError("--pca takes a positive number of components and needs --format geotiff")
    if max_chips is not None and max_chips < 1:
        raise ValueError(f"max_chips must be at least 1, got {max_chips}")


class _Sink:
    """Route embedded blocks to the GeoParquet writer or to one GeoTIFF writer per raster.

    Blocks arrive in source order; a GeoTIFF is completed (NaN where no chip was embedded) when the
    first block of a later source arrives, or at :meth:`close`.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        grids: Sequence[Path],
        dim: int,
        metadata: dict[str, Any],
        *,
        parquet: Path | None,
        compress: bool,
    ) -> None:
        self.sources = sources
        self.grids = grids
        self.dim = dim
        self.metadata = metadata
        self.compress = compress
        self.parquet = GeoParquetWriter(parquet, dim, metadata) if parquet is not None else None
        self.writer: GridTiffWriter | None = None
        self.current = -1

    def _advance(self, to: int) -> None:
        """Complete the GeoTIFF of the current source and of the sources up to ``to``."""
        while self.current < to:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            self.current += 1
            if self.current >= len(self.grids):
                continue
            source = self.sources[self.current]
            if not isinstance(source, RasterSource):  # pragma: no cover - rejected upfront
                raise TypeError(f"{source.name}: only rasters have a chip grid")
            self.writer = GridTiffWriter(
                self.grids[self.current],
                n_rows=source.grid.n_rows,
                n_cols=source.grid.n_cols,
                count=self.dim,
                crs=source.crs,
                transform=source.grid.cell_transform(source.transform),
                descriptions=[f"embedding_{d}" for d in range(self.dim)],
                tags=_tiff_tags(self.metadata, source),
                compress="deflate" if self.compress else None,
            )

    def write(self, block: ChipBlock) -> None:
        """Write the embedded chips of ``block``."""
        embeddings = block.embeddings
        if embeddings is None or (self.parquet is not None and block.items is None):
            raise ValueError("internal error: a block without embeddings or row data")
        if self.parquet is not None and block.items is not None:
            items = block.items
            self.parquet.write(
                source=items["source"],
                crs=items["crs"],
                windows=block.windows,
                lon=items["lon"],
                lat=items["lat"],
                times=items["times"],
                nodata_fraction=block.nodata_fraction,
                embeddings=embeddings,
                footprints=items["footprints"],
            )
            return
        self._advance(block.source)
        if self.writer is not None:
            self.writer.write(block.rows, block.cols, embeddings)

    def close(self) -> None:
        """Complete every output."""
        if self.parquet is not None:
            self.parquet.close()
            self.parquet = None
        self._advance(len(self.grids))

    def abort(self) -> None:
        """Close the open files after an error (their temporary names are removed by the caller)."""
        if self.parquet is not None:
            self.parquet.abort()
        if self.writer is not None:
            self.writer.abort()


def embed_rasters(
    model: nn.Module,
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float,
    chip_size: int = 224,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    fmt: str = "geoparquet",
    pca: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    max_nodata: float = 0.5,
    workers: int = 2,
    overwrite: bool = False,
    preview: bool = True,
    max_chips: int | None = None,
    fmow_product: str | None = None,
    model_info: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> EmbedReport:
    r"""Embed rasters (chip by chip) and fMoW folders (image by image) with a backbone.

    Each chip is read at native resolution (``chip_size`` pixels, no resampling), scaled,
    normalised like the pretraining data,

    .. math::

        x_b = \frac{\mathrm{clip}(v_b \cdot \mathrm{scale}, 0, 1) - \mathrm{mean}_b}
                    {\mathrm{std}_b},

    and passed through ``model``; the pooled output is the embedding. Nodata pixels (the raster's
    nodata value, alpha band or mask, NaN, and pixels past the raster's edge) are set to 0 after
    normalisation; a chip with more than ``max_nodata`` of them is skipped and counted.

    Outputs (see :func:`output_paths` for the names):

    * ``geoparquet``: one row per chip (fMoW: per image) with the footprint polygon in EPSG:4326,
      the source, its CRS, the pixel window, the centre lon/lat, the acquisition time and the
      embedding (:mod:`geossl.export.writers`);
    * ``geotiff``: per raster, a float32 GeoTIFF with one pixel per chip and one band per
      embedding dimension (or per principal component with ``pca``), in the raster's CRS.

    Both also write a false-colour preview per source (:mod:`geossl.export.preview`).

    Args:
        model: a backbone mapping ``[B, C, chip_size, chip_size]`` to ``[B, D]`` (e.g. a timm
            model with ``num_classes=0``); it is put in eval mode and moved to ``device``.
        inputs: raster files (GeoTIFF, COG, VRT), folders of them (recursive), fMoW folders.
        output: the GeoParquet file, or the folder of GeoTIFFs.
        mean: per-band mean of the normalisation, ``C`` values in ``[0, 1]`` units; ``C`` is the
            number of bands the model takes.
        std: per-band standard deviation, ``C`` values.
        scale: factor from raw pixel values to ``[0, 1]`` (``1/255`` for 8-bit imagery).
        chip_size: chip side in pixels (the model's input size).
        stride: step between chips in pixels; default ``chip_size`` (no overlap).
        bands: 1-based band indexes to feed the model, ``C`` of them; default every band but
            alpha (which must then be ``C`` bands).
        fmt: ``"geoparquet"`` or ``"geotiff"``.
        pca: GeoTIFF only: write the first ``pca`` principal components (fitted on all the run's
            embeddings) instead of the ``D`` dimensions.
        batch_size: chips per forward pass.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        max_nodata: skip chips with a larger share of nodata pixels (0 keeps only complete chips,
            1 keeps all).
        workers: reader threads (0 reads in the main thread).
        overwrite: replace existing output files (else raise FileExistsError).
        preview: write the false-colour previews.
        max_chips: stop after this many chips (fMoW: images) in input order; for quick looks and
            benchmarks.
        fmow_product: fMoW image product (``rgb``, ``msrgb``, ``ms``); default from the bands.
        model_info: provenance for the metadata (weights path and hash, backbone, method...).
        progress: show a progress bar.

    Returns:
        The :class:`EmbedReport`.

    Raises:
        ValueError: for invalid arguments or inputs (the message names the file).
        FileNotFoundError: for a missing input or a folder without rasters.
        FileExistsError: if an output exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    stride = chip_size if stride is None else stride
    _check_arguments(
        fmt=fmt,
        chip_size=chip_size,
        stride=stride,
        batch_size=batch_size,
        workers=workers,
        mean=mean,
        std=std,
        scale=scale,
        max_nodata=max_nodata,
        pca=pca,
        max_chips=max_chips,
    )
    channels = len(mean)
    sources = find_sources(
        inputs,
        in_chans=channels,
        bands=bands,
        chip_size=chip_size,
        stride=stride,
        fmow_product=fmow_product,
    )
    rasters = [s for s in sources if isinstance(s, RasterSource)]
    if fmt == "geotiff" and len(rasters) < len(sources):
        fmow = next(s for s in sources if isinstance(s, FMoWSource))
        raise ValueError(
            f"{fmow.root}: fMoW folders give one embedding per image, not a raster; "
            "use --format geoparquet"
        )
    for source in rasters:
        kind = np.dtype(source.dtype)
        if kind.kind in "iu" and kind.itemsize > 1 and scale * 255.0 > 0.99:
            # 8-bit weights on 16-bit data: everything above 255 would saturate at 1.
            warnings.warn(
                f"{source.path}: {source.dtype} data with scale {scale:.6g}: values above "
                f"{1 / scale:.0f} saturate; pass the scale of this sensor (--scale)",
                UserWarning,
                stacklevel=2,
            )
    out = Path(output)
    plan = output_paths(out, fmt, sources, preview=preview)
    _check_outputs(out, fmt, plan, overwrite)

    torch_device = torch.device(device)
    run = _Model(model, torch_device)
    dim = _probe_dim(run, channels, chip_size)
    metadata: dict[str, Any] = {
        "geossl_version": __version__,
        "model": dict(model_info or {}),
        "pooling": describe_pooling(model),
        "normalisation": {
            "formula": "(clip(value * scale, 0, 1) - mean) / std",
            "scale": scale,
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
        },
        "chip_size": chip_size,
        "stride": stride,
        "bands": list(bands) if bands is not None else None,
        "max_nodata": max_nodata,
        "embedding_dim": dim,
        "precision": "bf16" if torch_device.type == "cuda" else "fp32",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    report = EmbedReport(num_sources=len(sources), embedding_dim=dim)
    spec = _ReadSpec(
        chip_size=chip_size,
        scale=float(scale),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        max_nodata=max_nodata,
        footprints=fmt == "geoparquet",
    )
    outputs = list(dict.fromkeys(plan.outputs))
    if fmt == "geoparquet":
        out.parent.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    accumulator = PCAAccumulator()

    with ExitStack() as stack:
        scratch = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix=".geossl-embed-", dir=outputs[0].parent)
            )
        )
        temps = {path: stack.enter_context(atomic_output(path)) for path in outputs}
        # Full-dimension grids: the output itself, or a scratch file when --pca reduces it.
        grids = [
            scratch / f"{s.name}.tif" if pca is not None else temps[plan.outputs[i]]
            for i, s in enumerate(rasters)
            if fmt == "geotiff"
        ]
        parquet = temps[out] if fmt == "geoparquet" else None
        bar = stack.enter_context(
            tqdm(
                total=_total_items(sources, max_chips),
                desc="Embedding",
                unit="chip",
                disable=not progress,
                dynamic_ncols=True,
            )
        )
        sink = _Sink(sources, grids, dim, metadata, parquet=parquet, compress=pca is None)
        embed_start = time.perf_counter()
        try:
            blocks = stack.enter_context(
                closing(_prefetch(_block_tasks(sources, spec, max_chips), workers, 2 * workers + 2))
            )
            for block in _embed_blocks(blocks, run, batch_size, dim):
                report.add_block(block)
                if block.embeddings is not None:
                    accumulator.update(block.embeddings)
                sink.write(block)
                bar.update(block.num_considered)
                bar.set_postfix(skipped=report.num_skipped_nodata, refresh=False)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        report.seconds = time.perf_counter() - embed_start
        bar.close()

        fitted = accumulator.fit(max(pca or 0, 3))
        if pca is not None and fitted is not None:
            reduced = fitted.head(pca)
            for i, source in enumerate(rasters):  # geotiff: every source is a raster
                tags = _tiff_tags(metadata, source, reduced)
                _reduce_grid(grids[i], temps[plan.outputs[i]], source, reduced, tags)
        elif pca is not None:
            raise ValueError(f"--pca needs at least 2 embedded chips, got {report.num_embedded}")
        if plan.previews and fitted is not None:
            if fmt == "geoparquet":
                scores = _scores_from_parquet(temps[out], sources, fitted)
            else:
                scores = [_scores_from_grid(grids[i], s, fitted) for i, s in enumerate(rasters)]
            report.previews = _write_previews(stack, sources, plan, scores, fitted, metadata)
        elif plan.previews:
            warnings.warn(
                f"no preview: fewer than 2 chips were embedded ({report.num_embedded})",
                UserWarning,
                stacklevel=2,
            )
    report.outputs = outputs
    report.output_bytes = sum(p.stat().st_size for p in outputs if p.exists())
    report.total_seconds = time.perf_counter() - start
    return report


def _tiff_tags(
    metadata: Mapping[str, Any], source: RasterSource, pca: PCA | None = None
) -> dict[str, str]:
    """GeoTIFF tags: the run's metadata, the source and (with ``--pca``) the variance kept."""
    info: dict[str, Any] = {**metadata, "source": str(source.path), "bands": list(source.bands)}
    if pca is not None:
        info["pca"] = {
            "components": len(pca.components),
            "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
            "pca_samples": pca.num_samples,
        }
    tags = {GEOSSL_METADATA_KEY: json.dumps(info)}
    if source.datetime is not None:
        tags["ACQUISITIONDATETIME"] = source.datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
    return tags
