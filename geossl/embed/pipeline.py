"""Embed rasters and fMoW folders with a pretrained backbone: GeoParquet or chip-grid GeoTIFFs.

[`embed_rasters`][geossl.embed.pipeline.embed_rasters] is the library entry point behind ``geossl
embed``. It takes the model and its normalisation explicitly, so any timm-style backbone that maps
``[B, C, H, W]`` to pooled features ``[B, D]`` works; the CLI loads both from a weights file with
[`geossl.weights.load_backbone`][geossl.weights.load_backbone]. Everything else is one
[`EmbedOptions`][geossl.embed.plan.EmbedOptions].

The pipeline streams: reader threads (``workers``) do windowed reads of one row segment of chips
at a time ([`geossl.embed.reading`][geossl.embed.reading]), drop the chips that are mostly nodata,
normalise the rest and hand them over through a bounded queue; the main thread batches chips across
blocks, runs the model under `torch.inference_mode` (bf16 autocast on CUDA, fp32 on CPU,
[`geossl.embed.runner`][geossl.embed.runner]) and passes the embeddings to a streaming writer
([`geossl.embed.sink`][geossl.embed.sink], [`geossl.embed.writers`][geossl.embed.writers]). Memory
is bounded by the queue, one batch and one writer buffer, whatever the raster size.

Every output file is written under a temporary name and renamed when the whole run succeeded
([`geossl.utils.io.atomic_output`][geossl.utils.io.atomic_output]): an interrupted run leaves no
half-written file.

Example:
    [`embed_rasters`][geossl.embed.pipeline.embed_rasters] on a 64 x 64 RGB GeoTIFF cut into 16
    chips of 16 x 16 pixels, embedded by a stand-in backbone (the mean of each band, so ``D = 3``):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import rasterio
    >>> from rasterio.transform import from_origin
    >>> from torch import nn
    >>> from geossl.embed import EmbedOptions, embed_rasters
    >>> folder = tempfile.TemporaryDirectory()
    >>> raster = Path(folder.name) / "scene.tif"
    >>> pixels = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    >>> profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3,
    ...            "dtype": "uint8", "crs": "EPSG:32631",
    ...            "transform": from_origin(500_000, 5_000_000, 10, 10)}
    >>> with rasterio.open(raster, "w", **profile) as dst:
    ...     dst.write(pixels)
    >>> model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> report = embed_rasters(
    ...     model, [raster], Path(folder.name) / "scene.parquet",
    ...     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], scale=1 / 255,
    ...     options=EmbedOptions(chip_size=16, progress=False),
    ... )
    >>> report.num_embedded, report.embedding_dim
    (16, 3)
    >>> report.outputs[0].name, len(report.outputs)
    ('scene.parquet', 1)
    >>> folder.cleanup()
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geossl import __version__
from geossl.embed.cog import convert_to_cog
from geossl.embed.dataset import is_dataset_output
from geossl.embed.dataset_run import check_dataset_output, embed_dataset
from geossl.embed.grid_resume import unfinished_grids
from geossl.embed.plan import (
    ROW_FORMATS,
    EmbedOptions,
    OutputPlan,
    _check_arguments,
    _check_outputs,
    output_paths,
)
from geossl.embed.preview import (
    PCAAccumulator,
    _reduce_grid,
    _scores_from_grid,
    _scores_from_rows,
    _write_previews,
)
from geossl.embed.reading import _block_tasks, _prefetch, _ReadSpec, _total_items
from geossl.embed.report import EmbedReport
from geossl.embed.runner import _embed_blocks, _Model, _probe_dim, describe_pooling
from geossl.embed.sink import _Sink, _tiff_tags
from geossl.embed.sources import FMoWSource, RasterSource, Source, find_sources
from geossl.utils.io import atomic_output

__all__ = ["embed_rasters"]


def embed_rasters(
    model: nn.Module,
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float,
    options: EmbedOptions | None = None,
    model_info: Mapping[str, Any] | None = None,
) -> EmbedReport:
    r"""Embed rasters (chip by chip) and fMoW folders (image by image) with a backbone.

    Each chip is read at native resolution (``options.chip_size`` pixels, no resampling), scaled,
    normalised like the pretraining data,

    $$
    x_b = \frac{\mathrm{clip}(v_b \cdot \mathrm{scale}, 0, 1) - \mathrm{mean}_b}{\mathrm{std}_b},
    $$

    and passed through ``model``; the pooled output is the embedding. Nodata pixels (the raster's
    nodata value, alpha band or mask, NaN, and pixels past the raster's edge) are set to 0 after
    normalisation; a chip with more than ``options.max_nodata`` of them is skipped and counted.

    Outputs (see [`output_paths`][geossl.embed.plan.output_paths] for the names):

    * ``geoparquet``: one row per chip (fMoW: per image): footprint in EPSG:4326, source, its CRS,
      window, centre, time, embedding ([`geossl.embed.writers`][geossl.embed.writers]); ``gpkg``:
      the same rows as a GeoPackage layer ([`geossl.embed.geopackage`][geossl.embed.geopackage]);
    * ``geotiff``: per raster, a float32 GeoTIFF with one pixel per chip and one band per
      embedding dimension (or per principal component with ``options.pca``), in the raster's CRS;
    * ``geoparquet`` into a folder (no suffix): a dataset of parts, one per work unit, sharded
      (``options.shard``) and resumable ([`geossl.embed.dataset`][geossl.embed.dataset]).

    Each also writes a false-colour preview per source ([`preview`][geossl.embed.preview]).

    Args:
        model: a backbone mapping ``[B, C, chip_size, chip_size]`` to ``[B, D]`` (e.g. a timm
            model with ``num_classes=0``); it is put in eval mode and moved to ``options.device``.
        inputs: raster files (GeoTIFF, COG, VRT), folders of them (recursive), fMoW folders.
        output: the GeoParquet (or GeoPackage) file, the dataset folder or the GeoTIFFs' folder.
        mean: per-band mean of the normalisation, ``C`` values in ``[0, 1]`` units; ``C`` is the
            number of bands the model takes.
        std: per-band standard deviation, ``C`` values.
        scale: factor from raw pixel values to ``[0, 1]`` (``1/255`` for 8-bit imagery).
        options: chip grid, bands, format, batching, device, ... (default ``EmbedOptions()``).
        model_info: provenance for the metadata (weights path and hash, backbone, method...).

    Returns:
        The [`EmbedReport`][geossl.embed.report.EmbedReport].

    Raises:
        ValueError: for invalid arguments or inputs (the message names the file).
        FileNotFoundError: for a missing input or a folder without rasters.
        FileExistsError: if an output exists and ``options.overwrite`` is False (the module
            docstring, [`geossl.embed.pipeline`][geossl.embed.pipeline], has a worked example).
    """
    start, options = time.perf_counter(), EmbedOptions() if options is None else options
    _check_arguments(mean, std, scale)
    # Warning helpers are called from here, not deeper: their stacklevel=3 names our caller.
    sources = _checked_sources(inputs, options, len(mean), scale)
    out = Path(output)
    plan = _checked_plan(out, options, sources)

    runner = _Model(model, torch.device(options.device))
    dim = _checked_dim(runner, len(mean), options)
    normalised = _normalisation(mean, std, scale)
    metadata = _run_metadata(model, options, runner.device, dim, normalised, model_info)
    report = EmbedReport(num_sources=len(sources), embedding_dim=dim)
    spec = _read_spec(options, mean, std, scale)
    if plan is None:  # a GeoParquet dataset folder: parts per work unit, resumable, sharded
        embed_dataset(out, sources, options, metadata, report, runner, spec)
        report.total_seconds = time.perf_counter() - start
        return report
    if options.fmt == "geotiff":  # a GeoTIFF per raster: this shard's, unless already made
        sources, plan = unfinished_grids(out, sources, options, metadata, report)
    if sources:
        _embed_files(_Run(options, sources, plan, metadata, report), runner, spec, out)
    _finish_report(report, plan, start)
    return report


def _embed_files(run: _Run, runner: _Model, spec: _ReadSpec, out: Path) -> None:
    """Embed into one GeoParquet / GeoPackage or a GeoTIFF per raster, and the previews."""
    (out.parent if run.options.fmt in ROW_FORMATS else out).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        _open_outputs(stack, run)
        accumulator = _embed_pass(stack, run, runner, spec)
        _write_pca_and_previews(stack, run, accumulator)
        if run.options.cog:  # the temporary names, renamed when the stack closes
            for path in run.plan.outputs:
                convert_to_cog(run.temps[path])


def _normalisation(mean: Sequence[float], std: Sequence[float], scale: float) -> dict[str, Any]:
    """The normalisation as written into the metadata: formula, scale, mean and std."""
    return {
        "formula": "(clip(value * scale, 0, 1) - mean) / std",
        "scale": scale,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
    }


def _read_spec(
    options: EmbedOptions, mean: Sequence[float], std: Sequence[float], scale: float
) -> _ReadSpec:
    """What the reader threads need to read, mask and normalise a chip."""
    return _ReadSpec(
        chip_size=options.chip_size,
        scale=float(scale),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        max_nodata=options.max_nodata,
        footprints=options.fmt in ROW_FORMATS,
    )


def _finish_report(report: EmbedReport, plan: OutputPlan, start: float) -> None:
    """Record the files written, their size and the run's total time in ``report``."""
    outputs = list(dict.fromkeys(plan.outputs))
    report.outputs = outputs
    report.output_bytes = sum(p.stat().st_size for p in outputs if p.exists())
    report.total_seconds = time.perf_counter() - start


@dataclass(slots=True)
class _Run:
    """One run's sources, files and counts, shared by its steps.

    Attributes:
        options: the run's options.
        sources: the sources, in input order.
        plan: the final names of the files written.
        metadata: the provenance written into every output.
        report: the counts so far.
        temps: each output's temporary name (renamed to the final one when the run succeeds).
        grids: GeoTIFF only: per raster, the full-dimension chip grid (the output itself, or a
            scratch file when ``--pca`` reduces it).
    """

    options: EmbedOptions
    sources: list[Source]
    plan: OutputPlan
    metadata: dict[str, Any]
    report: EmbedReport
    temps: dict[Path, Path] = field(default_factory=dict)
    grids: list[Path] = field(default_factory=list)

    @property
    def rasters(self) -> list[RasterSource]:
        """The raster sources (all of them with ``--format geotiff``)."""
        return [s for s in self.sources if isinstance(s, RasterSource)]

    @property
    def rows(self) -> Path | None:
        """The temporary name of the GeoParquet / GeoPackage, None for GeoTIFF outputs."""
        return self.temps[self.plan.outputs[0]] if self.options.fmt in ROW_FORMATS else None


def _checked_sources(
    inputs: Sequence[str | os.PathLike[str]], options: EmbedOptions, channels: int, scale: float
) -> list[Source]:
    """Find the sources; refuse fMoW for GeoTIFF outputs; warn of a scale that saturates."""
    sources = find_sources(
        inputs,
        in_chans=channels,
        bands=options.bands,
        chip_size=options.chip_size,
        stride=options.chip_stride,
        fmow_product=options.fmow_product,
    )
    rasters = [s for s in sources if isinstance(s, RasterSource)]
    if options.fmt == "geotiff" and len(rasters) < len(sources):
        fmow = next(s for s in sources if isinstance(s, FMoWSource))
        raise ValueError(
            f"{fmow.root}: fMoW folders give one embedding per image, not a raster; "
            "use --format geoparquet or gpkg"
        )
    for source in rasters:
        kind = np.dtype(source.dtype)
        if kind.kind in "iu" and kind.itemsize > 1 and scale * 255.0 > 0.99:
            # 8-bit weights on 16-bit data: everything above 255 would saturate at 1.
            warnings.warn(
                f"{source.path}: {source.dtype} data with scale {scale:.6g}: values above "
                f"{1 / scale:.0f} saturate; pass the scale of this sensor (--scale)",
                UserWarning,
                stacklevel=3,  # the caller of embed_rasters
            )
    return sources


def _run_metadata(
    model: nn.Module,
    options: EmbedOptions,
    device: torch.device,
    dim: int,
    normalisation: dict[str, Any],
    model_info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The provenance written into every output (GeoParquet schema, GeoTIFF tags)."""
    return {
        "geossl_version": __version__,
        "model": dict(model_info or {}),
        "pooling": describe_pooling(model),
        "normalisation": normalisation,
        "chip_size": options.chip_size,
        "stride": options.chip_stride,
        "bands": list(options.bands) if options.bands is not None else None,
        "max_nodata": options.max_nodata,
        "embedding_dim": dim,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _open_outputs(stack: ExitStack, run: _Run) -> None:
    """Give every output a temporary name, and ``--pca`` a scratch folder for the full grids."""
    outputs = list(dict.fromkeys(run.plan.outputs))
    scratch = Path(
        stack.enter_context(
            tempfile.TemporaryDirectory(prefix=".geossl-embed-", dir=outputs[0].parent)
        )
    )
    # GDAL's GeoPackage driver wants its suffix on the temporary name too.
    keep_suffix = run.options.fmt == "gpkg"
    run.temps = {
        path: stack.enter_context(atomic_output(path, keep_suffix=keep_suffix)) for path in outputs
    }
    if run.options.fmt == "geotiff":
        run.grids = [
            scratch / f"{s.name}.tif" if run.options.pca is not None else run.temps[path]
            for s, path in zip(run.rasters, run.plan.outputs, strict=True)
        ]


def _embed_pass(stack: ExitStack, run: _Run, runner: _Model, spec: _ReadSpec) -> PCAAccumulator:
    """Read, embed and write every chip; return the PCA sums of the embeddings."""
    options, report = run.options, run.report
    bar = stack.enter_context(
        tqdm(
            total=_total_items(run.sources, options.max_chips),
            desc="Embedding",
            unit="chip",
            disable=not options.progress,
            dynamic_ncols=True,
        )
    )
    dim = report.embedding_dim
    sink = _Sink(
        run.sources,
        run.grids,
        dim,
        run.metadata,
        rows=run.rows,
        compress=options.pca is None,
        row_format=options.fmt,
    )
    accumulator = PCAAccumulator()
    embed_start = time.perf_counter()
    try:
        tasks = _block_tasks(run.sources, spec, options.max_chips)
        blocks = stack.enter_context(
            closing(_prefetch(tasks, options.workers, 2 * options.workers + 2))
        )
        for block in _embed_blocks(blocks, runner, options.batch_size, dim):
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
    _check_something_embedded(report, options, run.sources)
    return accumulator


def _checked_plan(out: Path, options: EmbedOptions, sources: Sequence[Source]) -> OutputPlan | None:
    """The files of a one-file or GeoTIFF run, checked; None for a dataset folder (checked)."""
    if is_dataset_output(out, options.fmt):
        check_dataset_output(out, sources, options)
        return None
    if options.shard is not None and options.shard.count > 1 and options.fmt != "geotiff":
        raise ValueError(
            f"--output {out}: --shard writes a GeoParquet dataset (or GeoTIFFs); give --output "
            "a folder (no .parquet suffix) with --format geoparquet"
        )
    plan = output_paths(out, options.fmt, sources, preview=options.preview)
    # GeoTIFFs: an existing one is skipped or refused per raster, once the settings are known.
    resumable = options.fmt == "geotiff" and options.pca is None
    _check_outputs(out, options.fmt, plan, options.overwrite or resumable, sources)
    return plan


def _checked_dim(runner: _Model, num_bands: int, options: EmbedOptions) -> int:
    """The embedding size D, checked against ``--pca`` (more components than D are not there)."""
    dim = _probe_dim(runner, num_bands, options.chip_size)
    if options.pca is not None and options.pca > dim:
        raise ValueError(f"--pca {options.pca}: the embeddings have only {dim} dimensions")
    return dim


def _check_something_embedded(
    report: EmbedReport, options: EmbedOptions, sources: Sequence[Source]
) -> None:
    """Refuse to write an empty output: every chip was nodata (or every fMoW image invalid)."""
    if report.num_embedded > 0:
        return
    paths = [s.path if isinstance(s, RasterSource) else s.root for s in sources]
    names = ", ".join(map(str, paths[:3])) + (", ..." if len(paths) > 3 else "")
    invalid = sum(report.skipped_invalid.values())
    why = (
        f"{invalid:,} invalid fMoW images"
        if invalid
        else f"all {report.num_chips:,} chips have more than {options.max_nodata:.0%} nodata "
        "(--max-nodata)"
    )
    raise ValueError(f"nothing to embed in {names}: {why}; no output written")


def _write_pca_and_previews(stack: ExitStack, run: _Run, accumulator: PCAAccumulator) -> None:
    """Fit the run-wide PCA; write the ``--pca`` GeoTIFFs and the previews."""
    pca, plan, report = run.options.pca, run.plan, run.report
    fitted = accumulator.fit(max(pca or 0, 3))
    if pca is not None and fitted is not None:
        reduced = fitted.head(pca)
        for i, source in enumerate(run.rasters):  # geotiff: every source is a raster
            tags = _tiff_tags(run.metadata, source, reduced)
            _reduce_grid(run.grids[i], run.temps[plan.outputs[i]], source, reduced, tags)
    elif pca is not None:
        raise ValueError(f"--pca needs at least 2 embedded chips, got {report.num_embedded}")
    if plan.previews and fitted is not None:
        if run.rows is not None:
            scores = _scores_from_rows(run.rows, run.sources, fitted, run.options.fmt)
        else:
            pairs = zip(run.grids, run.rasters, strict=True)
            scores = [_scores_from_grid(grid, source, fitted) for grid, source in pairs]
        report.previews = _write_previews(stack, run.sources, plan, scores, fitted, run.metadata)
    elif plan.previews:
        warnings.warn(
            f"no preview: fewer than 2 chips were embedded ({report.num_embedded})",
            UserWarning,
            stacklevel=3,  # the caller of embed_rasters
        )
