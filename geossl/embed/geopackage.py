"""The GeoPackage writer of embeddings, for GDAL / QGIS builds without the Parquet driver.

Debian's GDAL 3.6 (what QGIS on Debian / Ubuntu uses), pyogrio's and fiona's bundled GDAL have no
Parquet driver; every GDAL has GeoPackage (SQLite). The layer ``embeddings`` has one feature per
chip with the columns of the GeoParquet ([`geossl.embed.writers`][geossl.embed.writers]), written
through pyogrio / GDAL, except ``embedding``: GeoPackage has no list type and SQLite tables stop at
2,000 columns (ResNet-50 embeddings have 2,048), so each embedding is a BLOB of ``D`` little-endian
float32 values (``numpy.frombuffer(blob, "<f4")``). The run description is the dataset metadata
item ``geossl`` (``pyogrio.read_info(path)["dataset_metadata"]``, ``gdalinfo``'s metadata).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from geossl.embed.writers import GEOSSL_METADATA_KEY, ChipRowWriter

__all__ = ["GEOPACKAGE_LAYER", "GeoPackageWriter", "read_embedding_blobs"]

#: Name of the layer of chips.
GEOPACKAGE_LAYER = "embeddings"


def read_embedding_blobs(blobs: Any, dim: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The ``[N, D]`` float32 embeddings of the ``embedding`` BLOBs of a GeoPackage.

    Example:
        >>> blobs = [np.array([1, 2], "<f4").tobytes(), np.array([3, 4], "<f4").tobytes()]
        >>> read_embedding_blobs(blobs, 2).tolist()
        [[1.0, 2.0], [3.0, 4.0]]
    """
    flat = np.frombuffer(b"".join(blobs), dtype="<f4")
    return flat.reshape(-1, dim).astype(np.float32)


class GeoPackageWriter(ChipRowWriter):
    """Write embedding rows to a GeoPackage layer through GDAL, a table at a time.

    Args:
        path: the file to write (written as given; pass a temporary name for atomicity).
        dim: embedding size D.
        metadata: the run description, stored as JSON in the dataset metadata item
            `GEOSSL_METADATA_KEY`.
        row_group_rows: rows per append (see [`ChipRowWriter`][geossl.embed.writers.ChipRowWriter]).

    Example:
        >>> import tempfile, shapely, pyogrio
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "chips.gpkg"
        >>> writer = GeoPackageWriter(path, dim=2, metadata={"chip_size": 32})
        >>> writer.write(source=["a.tif"], source_crs=["EPSG:32618"],
        ...              windows=np.array([[0, 0, 32, 32]]), lon=np.array([10.0]),
        ...              lat=np.array([50.0]), times=[None], nodata_fraction=np.zeros(1),
        ...              embeddings=np.ones((1, 2)), footprints=[shapely.box(10, 50, 11, 51)])
        >>> writer.close()
        >>> info = pyogrio.read_info(path)
        >>> info["driver"], info["features"], info["crs"]
        ('GPKG', 1, 'EPSG:4326')
    """

    #: Whether the layer exists yet (the first table creates it, the next ones append).
    _started = False

    def _write_table(self, table: pa.Table) -> None:
        import pyogrio

        n = table.num_rows
        flat = np.ascontiguousarray(
            table.column("embedding").combine_chunks().values.to_numpy(zero_copy_only=False),
            dtype="<f4",
        )
        # One fixed-size binary value per row over the embeddings' buffer, then plain binary
        # (what GDAL takes for a BLOB field): no per-row Python.
        blobs = pa.Array.from_buffers(
            pa.binary(4 * self.dim), n, [None, pa.py_buffer(flat.tobytes())]
        ).cast(pa.binary())
        table = table.set_column(table.schema.get_field_index("embedding"), "embedding", blobs)
        table = table.replace_schema_metadata(None)
        pyogrio.write_arrow(
            table,
            self.path,
            layer=GEOPACKAGE_LAYER,
            driver="GPKG",
            geometry_name="geometry",
            # Polygons, and MultiPolygons across the antimeridian, in one layer.
            geometry_type="Unknown",
            crs="EPSG:4326",
            append=self._started,
            dataset_metadata=None
            if self._started
            else {GEOSSL_METADATA_KEY: json.dumps(self.metadata)},
        )
        self._started = True

    def close(self) -> None:
        """Write the last rows (an empty layer when there were none) and close the file."""
        self._flush()
        if not self._started:
            self._write_table(self._table())
