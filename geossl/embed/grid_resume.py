"""Resume and shard chip-grid GeoTIFF runs: the work unit is one input raster.

With ``--format geotiff`` each raster gives its own GeoTIFF, so the unit of work is the file:
shard ``I/N`` takes the rasters at positions ``I, I + N, ...`` of the run's list (the order
``find_sources`` gives), and a rerun skips every raster whose GeoTIFF is there with the same run
fingerprint (weights, normalisation, chip grid, bands, nodata threshold, ``--pca``; see
[`run_fingerprint`][geossl.embed.dataset.run_fingerprint]) and the same input fingerprint (the
raster's size and modification time), both stored in the GeoTIFF's ``geossl`` tag. A GeoTIFF made
with other settings, or from a raster that changed since, is refused unless ``--overwrite``.

``--pca`` fits one PCA on every embedding of the run, so a run with it neither skips rasters nor
takes a shard. Sharded runs write no previews (their colours would come from one shard's PCA).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geossl.embed.dataset import WHOLE, run_fingerprint, source_fingerprint
from geossl.embed.plan import EmbedOptions, OutputPlan, output_paths
from geossl.embed.report import EmbedReport
from geossl.embed.sources import RasterSource, Source
from geossl.embed.writers import GEOSSL_METADATA_KEY

__all__ = ["unfinished_grids"]


def _saved_fingerprints(path: Path) -> tuple[str | None, str | None]:
    """``(run, input)`` fingerprints in a GeoTIFF's ``geossl`` tag; None where absent."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as dataset:
            info = json.loads(dataset.tags().get(GEOSSL_METADATA_KEY, "{}"))
    except (RasterioError, ValueError):
        return None, None
    return info.get("run_fingerprint"), info.get("input_fingerprint")


def unfinished_grids(
    output: Path,
    sources: Sequence[Source],
    options: EmbedOptions,
    metadata: dict[str, Any],
    report: EmbedReport,
) -> tuple[list[Source], OutputPlan]:
    """This shard's rasters whose GeoTIFF is missing or to be replaced, and their files.

    Sets ``metadata["run_fingerprint"]`` (written into every GeoTIFF's tag) and the report's
    ``units`` / ``units_done_before``.

    Args:
        output: the GeoTIFFs' folder.
        sources: the run's rasters.
        options: the run's options (``shard``, ``overwrite``, ``pca``, ``preview``).
        metadata: the run's metadata.
        report: the run's report.

    Returns:
        The rasters to embed and the plan of their files.

    Raises:
        ValueError: ``--pca`` with ``--shard``.
        FileExistsError: a GeoTIFF made with other settings or from a changed raster, without
            ``overwrite``.
    """
    shard = options.shard or WHOLE
    if options.pca is not None and shard.count > 1:
        raise ValueError("--pca fits one PCA on the whole run: it cannot be sharded (drop --shard)")
    metadata.update(pca=options.pca, max_chips=options.max_chips)
    metadata["run_fingerprint"] = run_fingerprint(metadata)
    owned = [s for i, s in enumerate(sources) if shard.owns(i)]
    preview = options.preview and shard.count == 1
    plan = output_paths(output, "geotiff", owned, preview=preview)
    todo: list[Source] = []
    for source, path in zip(owned, plan.outputs, strict=True):
        if path.exists() and options.pca is None and isinstance(source, RasterSource):
            saved = _saved_fingerprints(path)
            if saved == (metadata["run_fingerprint"], source_fingerprint(source)):
                continue
            if not options.overwrite:
                raise FileExistsError(
                    f"{path} exists, made with other settings or from an older {source.path.name}"
                    "; pass --overwrite to replace it"
                )
        todo.append(source)
    report.units, report.units_done_before = len(owned), len(owned) - len(todo)
    return todo, output_paths(output, "geotiff", todo, preview=preview)
