"""Streaming writers of embeddings: GeoParquet (one row per chip) and chip-grid GeoTIFFs.

Both write as the chips arrive, so memory is bounded by one row group (GeoParquet) or one row of
tiles (GeoTIFF), whatever the number of chips.

GeoParquet layout (GeoParquet 1.1.0, the ``geo`` metadata geopandas writes; read by
``geopandas.read_parquet``, ``GeoDataFrame.from_arrow(pyarrow.parquet.read_table(...))``, DuckDB
and GDAL >= 3.8 builds with the Parquet driver):

=================  ====================================  ==========================================
column             type                                  meaning
=================  ====================================  ==========================================
``source``         string                                the input file (an fMoW image for fMoW,
                                                         a STAC item's asset hrefs)
``item_id``        string, nullable                      the STAC item (null for other inputs)
``source_crs``     string, nullable                      the source's CRS: ``EPSG:XXXX`` or WKT
``col_off``        int32                                 pixel window of the chip in the source
``row_off``        int32
``width``          int32
``height``         int32
``lon``            float64                               chip centre, degrees
``lat``            float64
``datetime``       timestamp[us, UTC], nullable          acquisition time when known
``nodata_fraction`` float32                              share of nodata pixels in the chip
``embedding``      fixed_size_list<float32>[D]           the embedding
``geometry``       binary (WKB), EPSG:4326               footprint polygon (lon, lat)
=================  ====================================  ==========================================

The geometry is declared three ways, one per kind of reader: the ``geo`` key of the Parquet
footer (GeoParquet readers: geopandas, GDAL, DuckDB; it has the bbox and the geometry types,
known at close), the same key in the Arrow schema (pyarrow's view of the file; geometry types
"unknown" and no bbox, as the schema is fixed before the first row), and the GeoArrow extension
type ``geoarrow.wkb`` with its CRS on the ``geometry`` field, which is what
``GeoDataFrame.from_arrow`` and other Arrow-native tools look for.

The key ``geossl`` of the file's key-value metadata holds a JSON object describing the run (model,
weights hash, pooling, normalisation, chip size, stride, bands, geossl version).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from affine import Affine

from geossl import __version__

__all__ = [
    "GEOSSL_METADATA_KEY",
    "ChipRowWriter",
    "GeoParquetWriter",
    "GridTiffWriter",
    "embedding_schema",
    "geoparquet_metadata",
    "read_grid_rows",
]

#: Key of the run description in the Parquet key-value metadata and in the GeoTIFF tags.
GEOSSL_METADATA_KEY = "geossl"

#: Target size of a Parquet row group (the writer's buffer).
_ROW_GROUP_BYTES = 64 * 2**20
#: Budget of the GeoTIFF writer's buffer of one row of tiles.
_TILE_ROW_BYTES = 128 * 2**20


def embedding_schema(dim: int) -> pa.Schema:
    """Arrow schema of the GeoParquet table (see the module docstring).

    Args:
        dim: embedding size D.

    Returns:
        The schema, without metadata.
    """
    return pa.schema(
        [
            pa.field("source", pa.string(), nullable=False),
            pa.field("item_id", pa.string()),
            pa.field("source_crs", pa.string()),
            pa.field("col_off", pa.int32(), nullable=False),
            pa.field("row_off", pa.int32(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("lon", pa.float64()),
            pa.field("lat", pa.float64()),
            pa.field("datetime", pa.timestamp("us", tz="UTC")),
            pa.field("nodata_fraction", pa.float32(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("geometry", pa.binary(), metadata=_geoarrow_wkb_metadata()),
        ]
    )


def _geoarrow_wkb_metadata() -> dict[bytes, bytes]:
    """Field metadata of the GeoArrow ``geoarrow.wkb`` extension type, in EPSG:4326.

    ``GeoDataFrame.from_arrow`` finds geometry columns by this type, not by the ``geo`` key.
    """
    return {
        b"ARROW:extension:name": b"geoarrow.wkb",
        b"ARROW:extension:metadata": json.dumps({"crs": _epsg4326_projjson()}).encode(),
    }


def _epsg4326_projjson() -> dict[str, Any]:
    """PROJJSON of EPSG:4326 as geopandas writes it (no ``id`` in datum ensemble members)."""
    from pyproj import CRS

    crs: dict[str, Any] = CRS.from_epsg(4326).to_json_dict()
    ensemble = crs.get("base_crs", crs).get("datum_ensemble")
    if isinstance(ensemble, dict):
        for member in ensemble.get("members", []):
            member.pop("id", None)
    return crs


def geoparquet_metadata(
    geometry_types: Sequence[str], bbox: Sequence[float] | None
) -> dict[str, Any]:
    """The GeoParquet 1.1.0 ``geo`` metadata of the ``geometry`` column.

    Args:
        geometry_types: geometry types present (``"Polygon"``, ``"MultiPolygon"``).
        bbox: ``[xmin, ymin, xmax, ymax]`` of all geometries, None when there are none.

    Returns:
        The JSON-serialisable ``geo`` object.
    """
    column: dict[str, Any] = {
        "encoding": "WKB",
        "crs": _epsg4326_projjson(),
        "geometry_types": sorted(geometry_types),
    }
    if bbox is not None:
        column["bbox"] = [float(v) for v in bbox]
    return {
        "primary_column": "geometry",
        "columns": {"geometry": column},
        "version": "1.1.0",
        "creator": {"library": "geossl", "version": __version__},
    }


class ChipRowWriter:
    """Buffer embedding rows (one per chip) and hand them on a table at a time.

    The one buffering rule of the row formats
    ([`GeoParquetWriter`][geossl.embed.writers.GeoParquetWriter],
    [`GeoPackageWriter`][geossl.embed.geopackage.GeoPackageWriter]): rows are gathered column by
    column and written as an Arrow table of
    [`embedding_schema`][geossl.embed.writers.embedding_schema] every ``row_group_rows`` rows, so
    memory is bounded whatever the number of chips. Subclasses write the table (`_write_table`) and
    finish the file ([`close`][geossl.embed.writers.ChipRowWriter.close]).

    Args:
        path: the file to write (written as given; pass a temporary name for atomicity).
        dim: embedding size D.
        metadata: the run description, stored as JSON under `GEOSSL_METADATA_KEY`.
        row_group_rows: rows per table; default: as many as fit in 64 MB of embeddings
            (between 256 and 8192).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dim: int,
        metadata: dict[str, Any],
        row_group_rows: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        self.metadata = metadata
        self.schema = embedding_schema(dim)
        self.row_group_rows = row_group_rows or int(
            np.clip(_ROW_GROUP_BYTES // (4 * dim), 256, 8192)
        )
        self._columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self._embeddings: list[npt.NDArray[np.float32]] = []
        self._buffered = 0
        self._types: set[str] = set()
        self._bounds = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self.num_rows = 0

    @property
    def bbox(self) -> list[float] | None:
        """``[xmin, ymin, xmax, ymax]`` of the footprints written, None before the first."""
        return self._bounds.tolist() if np.isfinite(self._bounds).all() else None

    @property
    def geometry_types(self) -> list[str]:
        """The footprint geometry types written (``"Polygon"``, ``"MultiPolygon"``)."""
        return sorted(self._types)

    def write(
        self,
        *,
        source: Sequence[str],
        source_crs: Sequence[str | None],
        windows: npt.NDArray[Any],
        lon: npt.NDArray[Any],
        lat: npt.NDArray[Any],
        times: Sequence[datetime | None],
        nodata_fraction: npt.NDArray[Any],
        embeddings: npt.NDArray[Any],
        footprints: Sequence[shapely.Geometry | None],
        item_id: Sequence[str | None] | None = None,
    ) -> None:
        """Buffer rows; a full table is written out.

        Args:
            source: ``[N]`` source paths.
            source_crs: ``[N]`` CRS labels of the sources.
            windows: ``[N, 4]`` pixel windows ``(col_off, row_off, width, height)``.
            lon: ``[N]`` centre longitudes.
            lat: ``[N]`` centre latitudes.
            times: ``[N]`` acquisition times.
            nodata_fraction: ``[N]`` nodata shares.
            embeddings: ``[N, D]`` embeddings.
            footprints: ``[N]`` lon/lat footprints.
            item_id: ``[N]`` STAC item ids; None for rows of no STAC item (null).
        """
        n = len(source)
        if n == 0:
            return
        if embeddings.shape != (n, self.dim):
            raise ValueError(
                f"expected embeddings of shape {(n, self.dim)}, got {embeddings.shape}"
            )
        cols = self._columns
        cols["source"] += list(source)
        cols["item_id"] += list(item_id) if item_id is not None else [None] * n
        cols["source_crs"] += list(source_crs)
        for k, name in enumerate(("col_off", "row_off", "width", "height")):
            cols[name] += windows[:, k].tolist()
        cols["lon"] += np.asarray(lon, dtype=np.float64).tolist()
        cols["lat"] += np.asarray(lat, dtype=np.float64).tolist()
        cols["datetime"] += list(times)
        cols["nodata_fraction"] += np.asarray(nodata_fraction, dtype=np.float32).tolist()
        geoms = np.array(list(footprints), dtype=object)
        cols["geometry"] += list(shapely.to_wkb(geoms))
        present = [g for g in footprints if g is not None]
        if present:
            self._types.update(g.geom_type for g in present)
            bounds = shapely.total_bounds(np.array(present, dtype=object))
            self._bounds[:2] = np.minimum(self._bounds[:2], bounds[:2])
            self._bounds[2:] = np.maximum(self._bounds[2:], bounds[2:])
        self._embeddings.append(np.asarray(embeddings, dtype=np.float32))
        self._buffered += n
        if self._buffered >= self.row_group_rows:
            self._flush()

    def _table(self) -> pa.Table:
        """The buffered rows as a table of `embedding_schema` (empty when none are)."""
        flat = (
            np.concatenate(self._embeddings).reshape(-1)
            if self._embeddings
            else np.zeros(0, dtype=np.float32)
        )
        arrays: list[pa.Array] = []
        for field in self.schema:
            if field.name == "embedding":
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), self.dim))
            else:
                arrays.append(pa.array(self._columns[field.name], type=field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _flush(self) -> None:
        if self._buffered == 0:
            return
        self._write_table(self._table())
        self.num_rows += self._buffered
        self._columns = {name: [] for name in self.schema.names}
        self._embeddings = []
        self._buffered = 0

    def _write_table(self, table: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Write the last rows and finish the file."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close the file without finishing it (after an error)."""


class GeoParquetWriter(ChipRowWriter):
    """Write embedding rows to a GeoParquet file in row groups (see the module docstring).

    Args:
        path: the file to write (written as given; pass a temporary name for atomicity).
        dim: embedding size D.
        metadata: the run description, stored as JSON under `GEOSSL_METADATA_KEY`.
        row_group_rows: rows per row group; default: as many as fit in 64 MB of embeddings
            (between 256 and 8192).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dim: int,
        metadata: dict[str, Any],
        row_group_rows: int | None = None,
    ) -> None:
        super().__init__(path, dim, metadata, row_group_rows)
        # The run description is known now: it goes in the Arrow schema (what pyarrow returns) and
        # the footer. The full "geo" metadata needs the bbox and the geometry types seen, so it is
        # added to the footer at close (geopandas, GDAL and DuckDB read it there); the schema gets
        # it without them (types [] = unknown, GeoParquet 1.1), for readers of the Arrow schema.
        self.schema = self.schema.with_metadata(
            {
                "geo": json.dumps(geoparquet_metadata([], None)),
                GEOSSL_METADATA_KEY: json.dumps(metadata),
            }
        )
        self._writer = pq.ParquetWriter(self.path, self.schema, compression="snappy")

    def _write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        """Write the last rows and the ``geo`` and ``geossl`` metadata, and close the file."""
        self._flush()
        geo = geoparquet_metadata(self.geometry_types, self.bbox)
        self._writer.add_key_value_metadata(
            {
                "geo": json.dumps(geo),
                GEOSSL_METADATA_KEY: json.dumps(self.metadata),
            }
        )
        self._writer.close()

    def abort(self) -> None:
        """Close the file without the final metadata (after an error)."""
        self._writer.close()


def _tile_size(n_cols: int, count: int) -> int:
    """Largest GeoTIFF tile side (256 .. 16) whose row of tiles fits the buffer budget."""
    for tile in (256, 128, 64, 32):
        if tile * n_cols * count * 4 <= _TILE_ROW_BYTES:
            return tile
    return 16


class GridTiffWriter:
    """Write per-chip vectors as a multi-band float32 GeoTIFF at chip resolution.

    Pixel ``(row, col)`` holds chip ``(row, col)``'s vector (band ``b`` = dimension ``b``), NaN
    (the nodata value) for skipped chips. Values arrive in row-major order; the writer keeps one
    row of tiles in memory and writes it whole, so every tile is compressed once.

    Args:
        path: the file to write (written as given; pass a temporary name for atomicity).
        n_rows: chip rows (output height).
        n_cols: chip columns (output width).
        count: bands (embedding dimensions or PCA components).
        crs: the output CRS (the source raster's).
        transform: the chip-resolution transform
            ([`cell_transform`][geossl.embed.chips.ChipGrid.cell_transform]).
        descriptions: one name per band.
        tags: metadata tags (strings).
        compress: GDAL compression (``"deflate"`` with the floating-point predictor by default;
            ``None`` for an uncompressed scratch file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_rows: int,
        n_cols: int,
        count: int,
        crs: Any,
        transform: Affine,
        descriptions: Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
        compress: str | None = "deflate",
    ) -> None:
        import rasterio

        self.n_rows, self.n_cols, self.count = n_rows, n_cols, count
        self.tile = _tile_size(n_cols, count)
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": n_cols,
            "height": n_rows,
            "count": count,
            "dtype": "float32",
            "nodata": float("nan"),
            "crs": crs,
            "transform": transform,
            "tiled": True,
            "blockxsize": self.tile,
            "blockysize": self.tile,
            "interleave": "band",
            "BIGTIFF": "IF_SAFER",
        }
        if compress:
            profile.update(compress=compress, predictor=3)
        self._dataset = rasterio.open(path, "w", **profile)
        if descriptions is not None:
            for band, text in enumerate(descriptions, start=1):
                self._dataset.set_band_description(band, text)
        if tags:
            self._dataset.update_tags(**tags)
        self._row0 = 0
        self._buffer = self._empty()

    def _empty(self) -> npt.NDArray[np.float32]:
        rows = min(self.tile, self.n_rows - self._row0)
        return np.full((self.count, max(rows, 0), self.n_cols), np.nan, dtype=np.float32)

    def _flush(self) -> None:
        from rasterio.windows import Window

        rows = self._buffer.shape[1]
        if rows > 0:
            self._dataset.write(self._buffer, window=Window(0, self._row0, self.n_cols, rows))
        self._row0 += rows
        self._buffer = self._empty()

    def write(
        self, rows: npt.NDArray[Any], cols: npt.NDArray[Any], values: npt.NDArray[Any]
    ) -> None:
        """Set the vectors of chips ``(rows[i], cols[i])``.

        Args:
            rows: ``[N]`` chip rows, non-decreasing across calls.
            cols: ``[N]`` chip columns.
            values: ``[N, count]`` vectors.

        Raises:
            ValueError: if a row comes after a later row was already written.
        """
        if len(rows) == 0:
            return
        if int(np.min(rows)) < self._row0:
            raise ValueError("GridTiffWriter.write: rows must arrive in non-decreasing order")
        order = np.argsort(rows, kind="stable")
        rows, cols, values = rows[order], cols[order], values[order]
        start = 0
        while start < len(rows):
            while int(rows[start]) >= self._row0 + self._buffer.shape[1]:
                self._flush()
            stop = int(np.searchsorted(rows, self._row0 + self._buffer.shape[1], side="left"))
            r = rows[start:stop] - self._row0
            self._buffer[:, r, cols[start:stop]] = np.asarray(values[start:stop]).T
            start = stop

    def close(self) -> None:
        """Write the remaining rows (NaN where nothing was written) and close the file."""
        while self._row0 < self.n_rows:
            self._flush()
        self._dataset.close()

    def abort(self) -> None:
        """Close the file without completing it (after an error)."""
        self._dataset.close()


def read_grid_rows(
    path: str | os.PathLike[str],
) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """Iterate over a chip-grid GeoTIFF a row of tiles at a time.

    Args:
        path: a file written by [`GridTiffWriter`][geossl.embed.writers.GridTiffWriter].

    Yields:
        ``(row0, values)`` with ``values`` of shape ``[count, rows, n_cols]``.
    """
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        step = src.block_shapes[0][0] if src.block_shapes else 256
        for row0 in range(0, src.height, step):
            rows = min(step, src.height - row0)
            yield row0, src.read(window=Window(0, row0, src.width, rows))
