"""Route embedded blocks to the row writer (GeoParquet, GeoPackage) or the chip-grid GeoTIFFs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geossl.embed.chips import ChipBlock
from geossl.embed.dataset import source_fingerprint
from geossl.embed.geopackage import GeoPackageWriter
from geossl.embed.preview import PCA
from geossl.embed.sources import RasterSource, Source
from geossl.embed.writers import (
    GEOSSL_METADATA_KEY,
    ChipRowWriter,
    GeoParquetWriter,
    GridTiffWriter,
)


def run_bands(
    metadata: Mapping[str, Any], sources: Sequence[Source]
) -> list[int] | dict[str, list[int]] | None:
    """The 1-based bands the run fed the model, as every output format records them.

    ``--bands`` when given; else the bands each source resolved to (every band but alpha of a
    raster, every band of an fMoW product): one list when the sources agree, else a list per
    source name. GeoTIFF tags record their own source's list.

    Example:
        >>> from geossl.embed.sources import FMoWSource
        >>> fmow = FMoWSource(Path("fmow"), "fmow", (), "rgb", None)
        >>> run_bands({"bands": None, "normalisation": {"mean": [0.5] * 3}}, [fmow])
        [1, 2, 3]
    """
    if metadata.get("bands") is not None:
        return list(metadata["bands"])
    mean = (metadata.get("normalisation") or {}).get("mean")
    if mean is None:
        return None
    every = list(range(1, len(mean) + 1))
    per_source = {s.name: list(s.bands) if s.bands is not None else every for s in sources}
    distinct = {tuple(bands) for bands in per_source.values()}
    if len(distinct) <= 1:
        return list(distinct.pop()) if distinct else every
    return per_source


class _Sink:
    """Route embedded blocks to the row writer or to one GeoTIFF writer per raster.

    Blocks arrive in source order; a GeoTIFF is completed (NaN where no chip was embedded) when the
    first block of a later source arrives, or at `close`.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        grids: Sequence[Path],
        dim: int,
        metadata: dict[str, Any],
        *,
        rows: Path | None,
        compress: bool,
        row_format: str = "geoparquet",
    ) -> None:
        self.sources = sources
        self.grids = grids
        self.dim = dim
        metadata = {**metadata, "bands": run_bands(metadata, sources)}
        self.metadata = metadata
        self.compress = compress
        writer = GeoPackageWriter if row_format == "gpkg" else GeoParquetWriter
        #: The one-row-per-chip writer (GeoParquet or GeoPackage), None for chip-grid GeoTIFFs.
        self.rows: ChipRowWriter | None = writer(rows, dim, metadata) if rows is not None else None
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
        if embeddings is None or (self.rows is not None and block.items is None):
            raise ValueError("internal error: a block without embeddings or row data")
        if self.rows is not None and block.items is not None:
            items = block.items
            self.rows.write(
                source=items["source"],
                source_crs=items["crs"],
                windows=block.windows,
                lon=items["lon"],
                lat=items["lat"],
                times=items["times"],
                nodata_fraction=block.nodata_fraction,
                embeddings=embeddings,
                footprints=items["footprints"],
                item_id=items.get("item_id"),  # STAC items only
            )
            return
        self._advance(block.source)
        if self.writer is not None:
            self.writer.write(block.rows, block.cols, embeddings)

    def close(self) -> None:
        """Complete every output."""
        if self.rows is not None:
            self.rows.close()
            self.rows = None
        self._advance(len(self.grids))

    def abort(self) -> None:
        """Close the open files after an error (their temporary names are removed by the caller)."""
        if self.rows is not None:
            self.rows.abort()
        if self.writer is not None:
            self.writer.abort()


def _tiff_tags(
    metadata: Mapping[str, Any], source: RasterSource, pca: PCA | None = None
) -> dict[str, str]:
    """GeoTIFF tags: the run's metadata, the source and (with ``--pca``) the variance kept."""
    info: dict[str, Any] = {
        **metadata,
        "source": source.row_source,
        "bands": list(source.bands),
        **({"item_id": source.item_id} if source.item_id is not None else {}),
        # What a rerun compares to skip this raster (geossl.embed.grid_resume).
        "input_fingerprint": source_fingerprint(source),
    }
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
