"""What an embedding run is asked to do (`EmbedOptions`) and the files it writes.

The options are one frozen value, checked when it is made, so
[`embed_rasters`][geossl.embed.embed_rasters] takes the inputs, the output, the model with its
normalisation and this one object. [`output_paths`][geossl.embed.plan.output_paths] names every file
of a run before anything is read, so existing outputs are refused upfront.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from geossl.embed.dataset import UNIT_CHIPS, Shard
from geossl.embed.sources import Source
from geossl.utils.checks import check_fraction

if TYPE_CHECKING:
    import torch

__all__ = ["FORMATS", "ROW_FORMATS", "EmbedOptions", "Format", "OutputPlan", "output_paths"]

#: An output format of :func:`~geossl.embed.embed_rasters`.
Format = Literal["geoparquet", "gpkg", "geotiff"]

#: Output formats of :func:`~geossl.embed.embed_rasters`.
FORMATS: tuple[str, ...] = ("geoparquet", "gpkg", "geotiff")

#: The formats of one file with one row (feature) per chip: GeoParquet, and GeoPackage for GDAL
#: builds without the Parquet driver.
ROW_FORMATS: tuple[str, ...] = ("geoparquet", "gpkg")


@dataclass(frozen=True, slots=True)
class EmbedOptions:
    """How to cut, embed and write the inputs: everything but the model and its normalisation.

    Every field maps to one ``geossl embed`` flag (``fmt`` is ``--format``, ``preview`` is the
    opposite of ``--no-preview``); the defaults are the CLI's, except ``chip_size`` (the CLI
    takes the weights' image size) and ``device`` (the CLI resolves ``auto``).

    Attributes:
        chip_size: chip side in pixels (the model's input size).
        stride: step between chips in pixels; None means ``chip_size`` (no overlap).
        bands: 1-based band indexes to feed the model, ``C`` of them; None means every band but
            alpha (which must then be ``C`` bands).
        fmt: ``"geoparquet"``, ``"gpkg"`` (GeoPackage) or ``"geotiff"``.
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
        progress: show a progress bar.
        shard: the share of the work units this process embeds (a GeoParquet dataset output;
            [`geossl.embed.dataset`][geossl.embed.dataset]); None: all of them.
        unit_chips: chips (fMoW: images) per work unit of a dataset output, one part each (a
            raster unit is at least one chip row).
        cog: GeoTIFF only: write cloud-optimised GeoTIFFs (tiled, with overviews).

    Raises:
        ValueError: for an invalid value (the message names the option).

    Example:
        >>> options = EmbedOptions(chip_size=32, fmt="geotiff", pca=3)
        >>> options.chip_stride
        32
        >>> EmbedOptions(fmt="zarr")
        Traceback (most recent call last):
        ...
        ValueError: unknown format 'zarr'; choose one of ['geoparquet', 'gpkg', 'geotiff']
    """

    chip_size: int = 224
    stride: int | None = None
    bands: tuple[int, ...] | None = None
    fmt: Format = "geoparquet"
    pca: int | None = None
    batch_size: int = 64
    device: str | torch.device = "cpu"
    max_nodata: float = 0.5
    workers: int = 2
    overwrite: bool = False
    preview: bool = True
    max_chips: int | None = None
    fmow_product: str | None = None
    progress: bool = True
    shard: Shard | None = None
    unit_chips: int = UNIT_CHIPS
    cog: bool = False

    def __post_init__(self) -> None:
        """Store ``bands`` as a tuple and check every value."""
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(self.bands))
        _check_options(self)

    @property
    def chip_stride(self) -> int:
        """The step between chips in pixels (``stride``, or ``chip_size`` when unset)."""
        return self.chip_size if self.stride is None else self.stride


def _check_options(options: EmbedOptions) -> None:
    """Raise ValueError for an invalid field of ``options``."""
    if options.fmt not in FORMATS:
        raise ValueError(f"unknown format {options.fmt!r}; choose one of {list(FORMATS)}")
    for name, value, low in (
        ("chip_size", options.chip_size, 1),
        ("stride", options.chip_stride, 1),
        ("batch_size", options.batch_size, 1),
        ("workers", options.workers, 0),
        ("unit_chips", options.unit_chips, 1),
    ):
        if value < low:
            flag = "--" + name.replace("_", "-")  # the CLI's spelling; the Python field in brackets
            raise ValueError(f"{flag} ({name}) must be at least {low}, got {value}")
    check_fraction("max_nodata", options.max_nodata)
    if options.pca is not None and (options.fmt != "geotiff" or options.pca < 1):
        raise ValueError("--pca takes a positive number of components and needs --format geotiff")
    if options.cog and options.fmt != "geotiff":
        raise ValueError("--cog writes cloud-optimised GeoTIFFs: it needs --format geotiff")
    if options.max_chips is not None and options.max_chips < 1:
        raise ValueError(f"max_chips must be at least 1, got {options.max_chips}")


def _check_arguments(mean: Sequence[float], std: Sequence[float], scale: float) -> None:
    """Raise ValueError for an invalid normalisation given to ``embed_rasters``."""
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean and std need one value per band, got {len(mean)} and {len(std)}")
    if min(std) <= 0 or not scale > 0:
        raise ValueError(f"std and scale must be positive, got std={list(std)}, scale={scale}")


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

    * ``geoparquet``, ``gpkg``: ``output`` itself; previews in
      ``{output without suffix}_preview/``, named after each source (``{name}.png``,
      ``{name}.tif``).
    * ``geotiff``: ``output`` is a folder with ``{name}.tif`` per raster; previews in
      ``output/preview/``.

    Args:
        output: the ``--output`` path.
        fmt: one of `FORMATS`.
        sources: the run's sources (their unique ``name``).
        preview: whether previews are written.

    Returns:
        The plan.
    """
    out = Path(output)
    if fmt in ROW_FORMATS:
        outputs = [out for _ in sources]
        folder = out.with_name(f"{out.stem if out.suffix else out.name}_preview")
    else:
        outputs = [out / f"{s.name}.tif" for s in sources]
        folder = out / "preview"
    previews = (
        [(folder / f"{s.name}.png", folder / f"{s.name}.tif") for s in sources] if preview else []
    )
    return OutputPlan(outputs, previews)


#: The file suffixes each one-file format writes (``--output`` must end with one of them).
ROW_SUFFIXES = {"geoparquet": (".parquet", ".geoparquet"), "gpkg": (".gpkg",)}


def _source_files(sources: Sequence[Source]) -> dict[Path, Path]:
    """Every input file of the run, resolved, mapped to the path as found."""
    files: dict[Path, Path] = {}
    for source in sources:
        paths = getattr(source, "images", None) or (getattr(source, "path", None),)
        files.update({Path(p).resolve(): Path(p) for p in paths if p is not None})
    return files


def _check_outputs(
    output: Path, fmt: str, plan: OutputPlan, overwrite: bool, sources: Sequence[Source] = ()
) -> None:
    """Refuse an output of the wrong kind, one that is an input, or an existing one.

    An existing output is replaced only with ``overwrite``; an input never is, even then (a
    folder given as both input and output would otherwise lose its rasters to the embeddings).
    """
    if fmt in ROW_FORMATS and output.is_dir():
        raise FileExistsError(f"{output} is a folder; --format {fmt} writes one file")
    suffixes = ROW_SUFFIXES.get(fmt)
    if suffixes is not None and output.suffix.lower() not in suffixes:
        raise ValueError(f"--output {output}: --format {fmt} writes a {' or '.join(suffixes)} file")
    inputs = _source_files(sources)
    for path in dict.fromkeys([*plan.outputs, *(p for pair in plan.previews for p in pair)]):
        if path.resolve() in inputs:
            raise ValueError(
                f"--output {output}: it would overwrite the input {inputs[path.resolve()]}; "
                "write the embeddings elsewhere"
            )
    if fmt == "geotiff" and output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} is a file; --format geotiff writes a folder of GeoTIFFs")
    if overwrite:
        return
    for path in dict.fromkeys([*plan.outputs, *(p for pair in plan.previews for p in pair)]):
        if path.exists():
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
