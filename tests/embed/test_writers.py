"""The streaming GeoParquet and chip-grid GeoTIFF writers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from affine import Affine

from geossl.embed.writers import (
    GEOSSL_METADATA_KEY,
    GeoParquetWriter,
    GridTiffWriter,
    embedding_schema,
    read_grid_rows,
)


def _write_rows(writer: GeoParquetWriter, start: int, n: int, dim: int) -> None:
    boxes = [shapely.box(i, 0, i + 1, 1) for i in range(start, start + n)]
    writer.write(
        source=[f"s{i % 2}.tif" for i in range(start, start + n)],
        source_crs=["EPSG:32618"] * n,
        windows=np.array([[i, 0, 4, 4] for i in range(start, start + n)]),
        lon=np.arange(start, start + n) + 0.5,
        lat=np.full(n, 0.5),
        times=[
            datetime(2020, 1, 1, tzinfo=UTC) if i % 2 else None for i in range(start, start + n)
        ],
        nodata_fraction=np.zeros(n),
        embeddings=np.arange(start * dim, (start + n) * dim, dtype=np.float32).reshape(n, dim),
        footprints=boxes,
    )


def test_geoparquet_writer_row_groups_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    writer = GeoParquetWriter(path, 3, {"backbone": "resnet18"}, row_group_rows=4)
    _write_rows(writer, 0, 3, 3)
    _write_rows(writer, 3, 3, 3)  # crosses a row group
    _write_rows(writer, 6, 1, 3)
    writer.close()
    assert writer.num_rows == 7
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 2
    assert parquet.schema_arrow.field("embedding").type == pa.list_(pa.float32(), 3)
    assert parquet.schema_arrow.field("datetime").type == pa.timestamp("us", tz="UTC")
    # The run description is in the Arrow schema and the footer; "geo" is in the footer.
    assert json.loads(parquet.schema_arrow.metadata[b"geossl"]) == {"backbone": "resnet18"}
    footer = parquet.metadata.metadata
    assert json.loads(footer[GEOSSL_METADATA_KEY.encode()]) == {"backbone": "resnet18"}
    geo = json.loads(footer[b"geo"])
    assert geo["version"] == "1.1.0"
    assert geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
    assert geo["columns"]["geometry"]["bbox"] == [0.0, 0.0, 7.0, 1.0]
    frame = gpd.read_parquet(path)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == 7
    assert frame.geometry.iloc[6].equals(shapely.box(6, 0, 7, 1))
    assert np.stack(frame["embedding"].to_numpy()).tolist()[6] == [18.0, 19.0, 20.0]
    assert frame["datetime"].isna().tolist() == [True, False] * 3 + [True]
    assert frame["col_off"].tolist() == list(range(7))


def test_geoparquet_writer_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    writer = GeoParquetWriter(path, 5, {})
    writer.close()
    frame = gpd.read_parquet(path)
    assert len(frame) == 0
    assert frame.crs.to_epsg() == 4326
    assert "bbox" not in json.loads(pq.read_metadata(path).metadata[b"geo"])["columns"]["geometry"]


def test_geoparquet_writer_checks_shapes(tmp_path: Path) -> None:
    writer = GeoParquetWriter(tmp_path / "x.parquet", 4, {})
    with pytest.raises(ValueError, match="expected embeddings of shape"):
        _write_rows(writer, 0, 2, 3)
    writer.abort()


def test_schema_columns() -> None:
    assert embedding_schema(8).names == [
        "source",
        "item_id",
        "source_crs",
        "col_off",
        "row_off",
        "width",
        "height",
        "lon",
        "lat",
        "datetime",
        "nodata_fraction",
        "embedding",
        "geometry",
    ]


def test_grid_tiff_writer(tmp_path: Path) -> None:
    path = tmp_path / "g.tmp"
    transform = Affine(160.0, 0.0, 500000.0, 0.0, -320.0, 4400000.0)
    writer = GridTiffWriter(
        path,
        n_rows=300,  # two rows of 256-pixel tiles
        n_cols=3,
        count=2,
        crs="EPSG:32618",
        transform=transform,
        descriptions=["a", "b"],
        tags={"geossl": "{}"},
    )
    writer.write(np.array([0, 0]), np.array([2, 0]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    writer.write(np.array([299, 260]), np.array([1, 1]), np.array([[5.0, 6.0], [7.0, 8.0]]))
    with pytest.raises(ValueError, match="non-decreasing"):
        writer.write(np.array([10]), np.array([0]), np.array([[0.0, 0.0]]))
    writer.close()
    with rasterio.open(path) as src:
        assert src.driver == "GTiff"
        assert (src.count, src.height, src.width) == (2, 300, 3)
        assert src.dtypes == ("float32", "float32")
        assert np.isnan(src.nodata)
        assert src.descriptions == ("a", "b")
        assert src.transform == transform
        assert src.crs.to_epsg() == 32618
        assert src.profile["compress"] == "deflate"
        assert src.block_shapes[0] == (256, 256)
        data = src.read()
    assert data[:, 0, 2].tolist() == [1.0, 2.0]
    assert data[:, 0, 0].tolist() == [3.0, 4.0]
    assert data[:, 299, 1].tolist() == [5.0, 6.0]
    assert data[:, 260, 1].tolist() == [7.0, 8.0]
    assert np.isnan(data).sum() == 2 * (900 - 4)
    rows = list(read_grid_rows(path))
    assert [row0 for row0, _ in rows] == [0, 256]
    assert sum(values.shape[1] for _, values in rows) == 300


def test_geoparquet_is_read_by_every_reader(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "e.parquet"
    writer = GeoParquetWriter(path, 3, {"backbone": "resnet18"}, row_group_rows=4)
    _write_rows(writer, 0, 5, 3)
    writer.close()
    expected = [shapely.box(i, 0, i + 1, 1) for i in range(5)]
    # geopandas' GeoParquet reader (the footer's "geo" object).
    frame = gpd.read_parquet(path)
    # Arrow-native readers: the table pyarrow returns, without the footer's key-value metadata.
    arrow = gpd.GeoDataFrame.from_arrow(pq.read_table(path))
    for read in (frame, arrow):
        assert read.crs.to_epsg() == 4326
        assert read.geometry.name == "geometry"
        assert all(g.equals(e) for g, e in zip(read.geometry, expected, strict=True))
        assert "source_crs" in read.columns
        assert "crs" not in read.columns
    # DuckDB, an independent Parquet implementation, reads the geometry natively.
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT source_crs, ST_AsText(geometry), len(embedding) FROM '{path}' ORDER BY col_off"
        )
        .fetchall()
    )
    assert [r[0] for r in rows] == ["EPSG:32618"] * 5
    assert all(shapely.from_wkt(r[1]).equals(e) for r, e in zip(rows, expected, strict=True))
    assert {r[2] for r in rows} == {3}
