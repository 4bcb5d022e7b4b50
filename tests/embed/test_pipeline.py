"""``embed_rasters`` end to end, on generated and real rasters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.warp import transform_geom
from torch import nn

from geossl import __version__
from geossl.embed import find_sources, output_paths
from geossl.embed.chips import ChipGrid
from geossl.embed.writers import GeoParquetWriter
from geossl.synthetic.fmow import generate_fmow_sample
from tests.embed.embed_helpers import (
    POS_SCALE,
    UTM_TRANSFORM,
    output_files,
    position_raster,
    real_scenes,
    run_embed,
    write_raster,
)
from tests.plot_helpers import assert_readable_png


def _extent_lonlat(path: Path) -> shapely.Geometry:
    """The raster's extent in EPSG:4326, its edges densified (64 points each)."""
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    box = shapely.segmentize(shapely.box(left, bottom, right, top), (right - left) / 64)
    return shapely.geometry.shape(
        transform_geom(crs, "EPSG:4326", shapely.geometry.mapping(box), precision=-1)
    )


# --------------------------------------------------------------------------------------------------
# GeoTIFF: one pixel per chip, the right place
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("chip", "stride"), [(8, 8), (8, 4)])
def test_geotiff_pixels_are_the_chips_at_the_right_place(
    tmp_path: Path, chip: int, stride: int
) -> None:
    raster = position_raster(tmp_path / "pos.tif", width=40, height=24)
    out = tmp_path / "grid"
    report = run_embed([raster], out, fmt="geotiff", chip_size=chip, stride=stride, max_nodata=1.0)
    grid = ChipGrid(40, 24, chip, stride)
    assert report.outputs == [out / "pos.tif"]
    assert report.num_chips == report.num_embedded == grid.num_chips
    with rasterio.open(out / "pos.tif") as src:
        assert src.crs.to_epsg() == 32618
        assert (src.height, src.width, src.count) == (grid.n_rows, grid.n_cols, 3)
        assert src.dtypes[0] == "float32"
        assert src.profile["tiled"]
        assert src.profile["compress"] == "deflate"
        assert src.descriptions[0] == "embedding_0"
        tags = json.loads(src.tags()["geossl"])
        data = src.read()
        transform = src.transform
    assert tags["chip_size"] == chip
    assert tags["stride"] == stride
    assert tags["source"] == str(raster)
    for i in range(grid.n_rows):
        for j in range(grid.n_cols):
            col_off, row_off, w, h = grid.window(i, j)
            if col_off + w > 40 or row_off + h > 24:
                continue  # padded chips average in zeros
            # The embedding says which window was read ...
            assert data[0, i, j] * 1024 == pytest.approx(col_off + (w - 1) / 2, abs=1e-3)
            assert data[1, i, j] * 1024 == pytest.approx(row_off + (h - 1) / 2, abs=1e-3)
            # ... and the output pixel's centre is that window's centre on the map.
            expected = UTM_TRANSFORM @ (col_off + w / 2, row_off + h / 2)
            assert transform @ (j + 0.5, i + 0.5) == pytest.approx(expected)
    assert transform.a == UTM_TRANSFORM.a * stride
    assert transform.e == UTM_TRANSFORM.e * stride


def test_nodata_chips_are_skipped_and_counted(tmp_path: Path) -> None:
    data = np.full((3, 16, 32), 200, np.uint8)
    data[:, :, :8] = 0  # chips (0, 0) and (1, 0): all nodata
    data[:, :8, 8:13] = 0  # chip (0, 1): 5 of 8 columns nodata (62.5 %)
    data[:, 8:, 16:19] = 0  # chip (1, 2): 3 of 8 columns nodata (37.5 %)
    raster = write_raster(tmp_path / "nd.tif", data, nodata=0)
    report = run_embed([raster], tmp_path / "grid", fmt="geotiff", scale=1 / 255)
    assert report.num_chips == 8
    assert report.num_skipped_nodata == 3
    assert report.num_embedded == 5
    with rasterio.open(tmp_path / "grid" / "nd.tif") as src:
        grid = src.read(1)
    skipped = np.isnan(grid)
    assert skipped.tolist() == [[True, True, False, False], [True, False, False, False]]
    # Nodata pixels become the band mean (0 after normalisation): the kept chip averages 5/8.
    assert grid[1, 2] == pytest.approx(200 / 255 * 5 / 8, rel=1e-5)
    strict = run_embed([raster], tmp_path / "strict.parquet", scale=1 / 255, max_nodata=0.0)
    assert (strict.num_embedded, strict.num_skipped_nodata) == (4, 4)
    everything = run_embed([raster], tmp_path / "all.parquet", scale=1 / 255, max_nodata=1.0)
    assert everything.num_embedded == 8


# --------------------------------------------------------------------------------------------------
# GeoParquet
# --------------------------------------------------------------------------------------------------


def test_geoparquet_rows_footprints_and_metadata(tmp_path: Path) -> None:
    raster = position_raster(
        tmp_path / "pos.tif", width=40, height=24, tags={"TIFFTAG_DATETIME": "2021:06:01 10:00:00"}
    )
    out = tmp_path / "out" / "emb.parquet"
    info = {"sha256": "1a2b3c4d", "backbone": "stand-in", "method": "tp_geo"}
    report = run_embed([raster], out, max_nodata=1.0, model_info=info, bands=[1, 2, 3])
    assert report.outputs == [out]
    assert report.output_bytes == out.stat().st_size
    assert report.embedding_dim == 3
    frame = gpd.read_parquet(out)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == 5 * 3  # 40 / 8 columns, ceil(24 / 8) rows
    assert set(frame["source_crs"]) == {"EPSG:32618"}
    assert set(frame["source"]) == {str(raster)}
    assert (frame["datetime"] == datetime(2021, 6, 1, 10, tzinfo=UTC)).all()
    assert frame[["width", "height"]].eq(8).all().all()
    # Embeddings in row-major chip order, matching their windows.
    embeddings = np.stack(frame["embedding"].to_numpy())
    np.testing.assert_allclose(embeddings[:, 0] * 1024, frame["col_off"] + 3.5, atol=1e-3)
    np.testing.assert_allclose(embeddings[:, 1] * 1024, frame["row_off"] + 3.5, atol=1e-3)
    # The centre is inside the footprint; the footprints tile the raster's extent.
    centres = gpd.points_from_xy(frame["lon"], frame["lat"], crs="EPSG:4326")
    assert frame.geometry.contains(gpd.GeoSeries(centres, index=frame.index)).all()
    extent = _extent_lonlat(raster)
    union = shapely.union_all(frame.geometry.values)
    assert extent.difference(union).area / extent.area < 1e-9
    assert union.difference(extent).area / extent.area < 1e-6  # no chip past the edge here
    # Metadata: the Arrow schema and the footer.
    schema = pq.read_schema(out)
    assert schema.field("embedding").type == pa.list_(pa.float32(), 3)
    meta = json.loads(schema.metadata[b"geossl"])
    assert meta["model"] == info
    assert meta["geossl_version"] == __version__
    assert meta["pooling"] == "model output"
    assert meta["normalisation"]["scale"] == POS_SCALE
    assert meta["normalisation"]["mean"] == [0.0, 0.0, 0.0]
    assert (meta["chip_size"], meta["stride"], meta["bands"]) == (8, 8, [1, 2, 3])
    geo = json.loads(pq.read_metadata(out).metadata[b"geo"])
    bbox = geo["columns"]["geometry"]["bbox"]
    assert bbox == pytest.approx(list(union.bounds))


def test_geopackage_holds_the_geoparquet_rows_and_gdal_reads_it(tmp_path: Path) -> None:
    import pyogrio

    from geossl.embed.geopackage import GEOPACKAGE_LAYER, read_embedding_blobs

    raster = position_raster(tmp_path / "pos.tif", width=40, height=24)
    (tmp_path / "reference").mkdir()
    run_embed([raster], tmp_path / "reference" / "emb.parquet", max_nodata=1.0)
    parquet = gpd.read_parquet(tmp_path / "reference" / "emb.parquet")
    out = tmp_path / "emb.gpkg"
    report = run_embed([raster], out, fmt="gpkg", max_nodata=1.0, model_info={"sha256": "1a"})
    assert report.outputs == [out]
    # GDAL (pyogrio's bundled build has no Parquet driver, but every GDAL has GeoPackage).
    info = pyogrio.read_info(out, layer=GEOPACKAGE_LAYER)
    assert (info["driver"], info["features"], info["crs"]) == ("GPKG", 15, "EPSG:4326")
    assert json.loads(info["dataset_metadata"]["geossl"])["model"] == {"sha256": "1a"}
    frame = pyogrio.read_dataframe(out)
    assert frame.crs.to_epsg() == 4326
    assert frame.columns.tolist() == parquet.columns.tolist()
    for column in ("source", "source_crs", "col_off", "row_off", "lon", "lat"):
        assert frame[column].tolist() == parquet[column].tolist()
    assert all(a.equals(b) for a, b in zip(frame.geometry, parquet.geometry, strict=True))
    np.testing.assert_array_equal(
        read_embedding_blobs(frame["embedding"], 3), np.stack(parquet["embedding"].to_numpy())
    )
    # The preview is drawn from the GeoPackage's rows, like the GeoParquet's.
    assert [p.name for p in report.previews] == ["pos.png", "pos.tif"]
    with rasterio.open(tmp_path / "emb_preview" / "pos.tif") as preview:
        assert (preview.height, preview.width) == (3, 5)
        assert np.isfinite(preview.read()).all()


def test_geoparquet_is_readable_through_gdal(tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio", reason="pyogrio (GDAL bindings) is not installed")
    if "Parquet" not in pyogrio.list_drivers():
        pytest.skip(
            f"the GDAL of pyogrio ({pyogrio.__gdal_version_string__}) has no Parquet driver"
        )
    raster = position_raster(tmp_path / "pos.tif")
    out = tmp_path / "emb.parquet"
    run_embed([raster], out)
    frame = pyogrio.read_dataframe(out)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == 15
    assert frame.geometry.geom_type.eq("Polygon").all()


GEOPARQUET_SCHEMA = Path(__file__).parent / "data" / "geoparquet-1.1.0.schema.json"


def _geoparquet_validator() -> Any:
    """A validator of the GeoParquet 1.1.0 schema, its PROJJSON reference resolved offline."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    referencing = pytest.importorskip("referencing", reason="referencing is not installed")
    import pyproj

    schema = json.loads(GEOPARQUET_SCHEMA.read_text())
    # The schema refers to PROJJSON v0.5 at proj.org; PROJ ships v0.7 (a superset) in pyproj.
    projjson = json.loads(
        (Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json").read_text()
    )
    resource = referencing.Resource.from_contents(projjson)
    registry = referencing.Registry().with_resources(
        [
            ("https://proj.org/schemas/v0.5/projjson.schema.json", resource),
            (projjson["$id"], resource),
        ]
    )
    return jsonschema.Draft7Validator(schema, registry=registry)


def _check_geoparquet(path: Path) -> dict[str, Any]:
    """What GDAL's Parquet driver relies on, checked without GDAL; returns the ``geo`` object."""
    from pyproj import CRS

    # GDAL reads "geo" from the Parquet footer's key-value metadata (not the Arrow schema).
    parquet = pq.ParquetFile(path)
    geo: dict[str, Any] = json.loads(parquet.metadata.metadata[b"geo"])
    errors = [e.message for e in _geoparquet_validator().iter_errors(geo)]
    assert errors == []
    assert geo["version"] == "1.1.0"
    primary = geo["primary_column"]
    assert primary in geo["columns"]
    schema = parquet.schema_arrow
    for name, column in geo["columns"].items():
        assert schema.field(name).type == pa.binary()  # WKB: a BYTE_ARRAY column
        assert column["encoding"] == "WKB"
        # PROJJSON of EPSG:4326 (longitude first in the WKB, per the spec), or absent: OGC:CRS84.
        crs = CRS.from_json_dict(column["crs"]) if column.get("crs") else CRS("OGC:CRS84")
        assert "CRS" in crs.to_json_dict()["type"]  # what GDAL checks before importing it
        assert crs.equals(CRS("EPSG:4326"), ignore_axis_order=True)
        wkb = parquet.read(columns=[name]).column(name).to_pylist()
        geometries = shapely.from_wkb([g for g in wkb if g is not None])  # raises on bad WKB
        assert not shapely.has_z(geometries).any()
        assert shapely.is_valid(geometries).all()
        assert sorted(column["geometry_types"]) == sorted({g.geom_type for g in geometries})
        xmin, ymin, xmax, ymax = column["bbox"]
        total = shapely.total_bounds(geometries)
        assert (xmin, ymin) <= (total[0], total[1])
        assert (xmax, ymax) >= (total[2], total[3])
        assert [xmin, ymin, xmax, ymax] == pytest.approx(total.tolist())
        assert -180.0 <= xmin <= xmax <= 180.0
        assert -90.0 <= ymin <= ymax <= 90.0
        covering = column.get("covering", {}).get("bbox")
        if covering is not None:  # a struct column with the four bounds of each row
            bbox = parquet.read(columns=[covering["xmin"][0]]).column(0).combine_chunks()
            for key in ("xmin", "ymin", "xmax", "ymax"):
                assert covering[key][0] == covering["xmin"][0]
                assert bbox.type.get_field_index(covering[key][1]) >= 0
    return geo


def test_geoparquet_metadata_is_valid_geoparquet_1_1(tmp_path: Path) -> None:
    # One raster in UTM 18N (Polygons), one across the antimeridian in UTM 60N (MultiPolygons).
    a = position_raster(tmp_path / "a.tif")
    fiji = Affine(1000.0, 0.0, 820_000.0, 0.0, -1000.0, 100_000.0)  # 180 E at x ~ 833 km
    b = position_raster(tmp_path / "b.tif", crs="EPSG:32660", transform=fiji)
    out = tmp_path / "emb.parquet"
    run_embed([a, b], out, max_nodata=1.0)
    geo = _check_geoparquet(out)
    assert geo["columns"]["geometry"]["geometry_types"] == ["MultiPolygon", "Polygon"]
    assert geo["columns"]["geometry"]["bbox"][0] == pytest.approx(-180.0)
    # The check itself catches what GDAL would trip on.
    bad = dict(geo, version="1.1")
    assert list(_geoparquet_validator().iter_errors(bad))
    bad = dict(geo, columns={"geometry": {**geo["columns"]["geometry"], "encoding": "WKT"}})
    assert list(_geoparquet_validator().iter_errors(bad))


def test_all_nodata_input_writes_nothing(tmp_path: Path) -> None:
    # An empty table would pass for a result; the run says why there is none instead.
    raster = write_raster(tmp_path / "empty.tif", np.zeros((3, 16, 16), np.uint8), nodata=0)
    out = tmp_path / "empty.parquet"
    with pytest.raises(ValueError, match=f"nothing to embed in {re.escape(str(raster))}: all"):
        run_embed([raster], out, scale=1 / 255)
    assert sorted(tmp_path.iterdir()) == [raster]  # no output, no temporary left


def test_empty_geoparquet_metadata_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    GeoParquetWriter(out, 3, {}).close()
    geo = json.loads(pq.read_metadata(out).metadata[b"geo"])
    assert [e.message for e in _geoparquet_validator().iter_errors(geo)] == []
    assert geo["columns"]["geometry"]["geometry_types"] == []
    assert "bbox" not in geo["columns"]["geometry"]


# --------------------------------------------------------------------------------------------------
# real rasters in three CRSs
# --------------------------------------------------------------------------------------------------


def test_real_scenes_geoparquet_covers_each_raster(tmp_path: Path) -> None:
    scenes = real_scenes()
    out = tmp_path / "real.parquet"
    with pytest.warns(UserWarning, match=r"landsat8.*uint16 data with scale"):
        report = run_embed(
            [scenes], out, scale=1 / 255, chip_size=128, max_nodata=1.0, workers=2, batch_size=32
        )
    frame = gpd.read_parquet(out)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == report.num_embedded == report.num_chips
    assert sorted(frame["source_crs"].unique()) == ["EPSG:32618", "EPSG:32621", "EPSG:3857"]
    for source, rows in frame.groupby("source"):
        extent = _extent_lonlat(Path(source))
        with rasterio.open(source) as src:
            grid = ChipGrid(src.width, src.height, 128, 128)
        assert len(rows) == grid.num_chips
        union = shapely.union_all(rows.geometry.values)
        # Up to the curvature between the densified points (4 per chip edge, 64 per extent edge).
        assert extent.difference(union).area / extent.area < 1e-5, source
    sources = find_sources([scenes], in_chans=3, chip_size=128, stride=128)
    previews = output_paths(out, "geoparquet", sources).previews
    assert report.previews == [p for pair in previews for p in pair]
    assert all(p.is_file() for p in report.previews)


def test_real_scenes_geotiff_keep_their_crs(tmp_path: Path) -> None:
    scenes = real_scenes()
    out = tmp_path / "grids"
    run_embed([scenes], out, fmt="geotiff", scale=1 / 65535, chip_size=256, max_nodata=1.0)
    for name, epsg in [
        ("aerial_0p6m_epsg3857", 3857),
        ("landsat7_rgb_byte", 32618),
        ("landsat8_l1tp_224078_20200518_rgb", 32621),
    ]:
        with rasterio.open(scenes / f"{name}.tif") as source:
            expected = ChipGrid(source.width, source.height, 256, 256).cell_transform(
                source.transform
            )
        with (
            rasterio.open(out / f"{name}.tif") as grid,
            rasterio.open(out / "preview" / f"{name}.tif") as preview,
        ):
            assert grid.crs.to_epsg() == epsg
            assert grid.transform.almost_equals(expected)
            assert preview.crs.to_epsg() == epsg
            assert preview.transform == grid.transform
            assert preview.count == 3
            assert preview.dtypes[0] == "uint8"


# --------------------------------------------------------------------------------------------------
# PCA, previews
# --------------------------------------------------------------------------------------------------


def test_pca_bands_are_the_projection_of_the_embeddings(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 255, size=(3, 40, 48), dtype=np.uint8)
    raster = write_raster(tmp_path / "r.tif", data)
    run_embed([raster], tmp_path / "full", fmt="geotiff", scale=1 / 255)
    report = run_embed([raster], tmp_path / "pca", fmt="geotiff", scale=1 / 255, pca=2)
    with rasterio.open(tmp_path / "full" / "r.tif") as src:
        full = src.read().reshape(3, -1).T.astype(np.float64)
    with rasterio.open(tmp_path / "pca" / "r.tif") as src:
        reduced = src.read().reshape(2, -1).T
        assert src.descriptions == ("pc_1", "pc_2")
        tags = json.loads(src.tags()["geossl"])
    assert tags["pca"]["components"] == 2
    assert len(tags["pca"]["explained_variance_ratio"]) == 2
    centred = full - full.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    for k in range(2):
        reference = centred @ vt[k]
        corr = np.corrcoef(reference, reduced[:, k])[0, 1]
        assert abs(corr) == pytest.approx(1.0, abs=1e-5)
    assert report.outputs == [tmp_path / "pca" / "r.tif"]
    assert output_files(tmp_path / "pca") == ["preview/r.png", "preview/r.tif", "r.tif"]


def test_preview_files(tmp_path: Path) -> None:
    a = position_raster(tmp_path / "a.tif")
    (tmp_path / "sub").mkdir()
    b = position_raster(tmp_path / "sub" / "a.tif", crs="EPSG:32633")
    out = tmp_path / "emb.parquet"
    report = run_embed([a, b], out)
    folder = tmp_path / "emb_preview"
    assert report.previews == [
        folder / "a.png",
        folder / "a.tif",
        folder / "a-2.png",
        folder / "a-2.tif",
    ]
    with rasterio.open(folder / "a-2.tif") as preview:
        assert preview.crs.to_epsg() == 32633
        assert preview.transform == ChipGrid(40, 24, 8, 8).cell_transform(UTM_TRANSFORM)
        assert (preview.height, preview.width) == (3, 5)
        meta = json.loads(preview.tags()["geossl"])
    assert meta["preview"]["components"] == [1, 2, 3]
    # The PNG is a figure a person reads: the source beside its colours, a screenful, not blank.
    assert_readable_png(folder / "a.png")
    assert run_embed([a], tmp_path / "quiet.parquet", preview=False).previews == []
    assert not (tmp_path / "quiet_preview").exists()


# --------------------------------------------------------------------------------------------------
# fMoW folders
# --------------------------------------------------------------------------------------------------


def test_fmow_folder_one_row_per_image(tmp_path: Path) -> None:
    root = tmp_path / "fmow"
    generate_fmow_sample(root, locations=5, seed=0, image_size=(32, 40), images_per_location=(1, 2))
    broken = next(root.glob("train/*/*/*_rgb.json"))
    broken.write_text("{")
    out = tmp_path / "fmow.parquet"
    report = run_embed([root], out, scale=1 / 255, chip_size=16)
    images = sorted(root.glob("*/**/*_rgb.jpg"))
    assert report.num_chips == len(images)
    assert report.skipped_invalid == {"invalid json": 1}
    frame = gpd.read_parquet(out)
    assert len(frame) == len(images) - 1
    row = frame.iloc[0]
    meta = json.loads(Path(row["source"]).with_suffix(".json").read_text())
    assert row.geometry.equals(shapely.from_wkt(meta["raw_location"]))
    assert row["datetime"] == datetime.fromisoformat(meta["timestamp"].replace("Z", "+00:00"))
    assert pd.isna(row["source_crs"])  # a JPEG has no CRS
    assert [p.name for p in report.previews] == ["fmow-fmow.png", "fmow-fmow.tif"]
    assert_readable_png(report.previews[0])  # the map on lon / lat axes, points that show
    with rasterio.open(report.previews[1]) as preview:
        assert preview.crs.to_epsg() == 4326
    with pytest.raises(ValueError, match="fmow: fMoW folders give one embedding per image"):
        run_embed([root], tmp_path / "grid", fmt="geotiff")


# --------------------------------------------------------------------------------------------------
# outputs: atomicity
# --------------------------------------------------------------------------------------------------


class Interrupted(nn.Module):
    """Stops the run at the ``n``-th forward pass, as Ctrl-C would."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls = 0
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.n:
            raise KeyboardInterrupt
        return x.mean(dim=(2, 3))


@pytest.mark.parametrize("fmt", ["geoparquet", "geotiff"])
def test_an_interrupted_run_leaves_no_file(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "in").mkdir()
    raster = position_raster(tmp_path / "in" / "pos.tif")
    out = tmp_path / "out" / ("e.parquet" if fmt == "geoparquet" else "grid")
    run_embed([raster], out, fmt=fmt, max_chips=2)  # a previous result, to be kept
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    with pytest.raises(KeyboardInterrupt):
        run_embed([raster], out, fmt=fmt, model=Interrupted(3), batch_size=2, overwrite=True)
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before  # no temporary file left, the old outputs untouched


def test_an_input_is_never_an_output(tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    rasters = [position_raster(folder / f"{name}.tif") for name in ("a", "b")]
    before = [r.read_bytes() for r in rasters]
    # The input folder as the GeoTIFF output folder: a.tif, b.tif would become embeddings.
    with pytest.raises(ValueError, match=r"would overwrite the input .*a\.tif"):
        run_embed([folder], folder, fmt="geotiff", overwrite=True)
    # The input raster as the GeoParquet output: refused by its suffix, overwrite or not.
    with pytest.raises(ValueError, match=r"--format geoparquet writes a \.parquet or"):
        run_embed([rasters[0]], rasters[0], overwrite=True)
    with pytest.raises(ValueError, match=r"--format gpkg writes a \.gpkg file"):
        run_embed([rasters[0]], tmp_path / "emb.parquet", fmt="gpkg")
    assert [r.read_bytes() for r in rasters] == before
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "b.tif"]
