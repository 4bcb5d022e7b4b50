"""STAC input: ItemCollections whose assets are local GeoTIFFs, embedded like any raster."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer

from geossl.embed.stac import absolute_href, gdal_path, parse_assets, read_items, stac_rasters
from tests.embed.embed_helpers import POS_SCALE, position_raster, run_embed, write_raster

#: Two items: the second in the next UTM zone (a different CRS, the same layout).
ITEMS = {
    "S2A_31UDQ_20240601": ("EPSG:32631", datetime(2024, 6, 1, 10, 56, 21, tzinfo=UTC)),
    "S2B_32ULU_20240603": ("EPSG:32632", datetime(2024, 6, 3, 10, 40, 59, 500_000, tzinfo=UTC)),
}
TRANSFORM = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_400_000.0)
WIDTH, HEIGHT = 32, 16


def _item(item_id: str, moment: str | None, assets: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "links": [],
        "properties": {"datetime": moment},
        "assets": {name: {"href": href, "type": "image/tiff"} for name, href in assets.items()},
    }


def _write_collection(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def _band_collection(root: Path) -> Path:
    """Two items of three single-band assets (red = column, green = row, blue = 512).

    The red hrefs are relative to the collection file, the green ones absolute paths, the blue
    ones ``file://`` URLs.
    """
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    bands = {"red": cols, "green": rows, "blue": np.full_like(cols, 512)}
    items = []
    for item_id, (crs, moment) in ITEMS.items():
        folder = root / "assets" / item_id
        folder.mkdir(parents=True)
        hrefs = {}
        for name, values in bands.items():
            path = write_raster(
                folder / f"{name}.tif", values[None].astype(np.uint16), crs=crs, transform=TRANSFORM
            )
            hrefs[name] = {
                "red": f"assets/{item_id}/red.tif",
                "green": str(path),
                "blue": path.as_uri(),
            }[name]
        hrefs["visual"] = "missing.tif"  # listed, never read
        items.append(_item(item_id, moment.isoformat().replace("+00:00", "Z"), hrefs))
    return _write_collection(root / "items.json", items)


def _extent_lonlat(crs: str) -> shapely.Geometry:
    """The assets' extent in lon/lat, its edges densified."""
    left, top = TRANSFORM.c, TRANSFORM.f
    box = shapely.segmentize(shapely.box(left, top - 10 * HEIGHT, left + 10 * WIDTH, top), 10.0)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return shapely.transform(box, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))


def test_items_become_rows_with_their_id_datetime_pixels_and_footprints(tmp_path: Path) -> None:
    collection = _band_collection(tmp_path)
    plain = position_raster(tmp_path / "plain.tif", width=16, height=8)
    with stac_rasters(collection, ["red", "green", "blue"]) as paths:
        assert [p.name for p in paths] == [f"{item_id}.vrt" for item_id in ITEMS]
        report = run_embed([plain, *paths], tmp_path / "out.parquet", max_nodata=1.0)
        folder = paths[0].parent
    assert not folder.exists()  # the VRTs live for the run
    frame = gpd.read_parquet(tmp_path / "out.parquet")
    assert report.num_sources == 3
    assert frame["item_id"].isna().sum() == 2  # the plain raster's chips: no item
    for item_id, (crs, moment) in ITEMS.items():
        rows = frame[frame["item_id"] == item_id]
        assert len(rows) == (WIDTH // 8) * (HEIGHT // 8)
        assert (rows["datetime"] == moment).all()
        assert set(rows["source_crs"]) == {crs}
        folder = tmp_path / "assets" / item_id
        hrefs = [str(folder / "red.tif"), str(folder / "green.tif"), (folder / "blue.tif").as_uri()]
        assert set(rows["source"]) == {",".join(hrefs)}
        # The bands are the assets, stacked in the order given: column, row, 512.
        embeddings = np.stack(rows["embedding"].to_numpy())
        np.testing.assert_allclose(embeddings[:, 0] / POS_SCALE, rows["col_off"] + 3.5, atol=1e-3)
        np.testing.assert_allclose(embeddings[:, 1] / POS_SCALE, rows["row_off"] + 3.5, atol=1e-3)
        np.testing.assert_allclose(embeddings[:, 2], 0.5)
        # The footprints are in lon/lat on the assets' grid, in their own UTM zone.
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        x, y = TRANSFORM * (rows["col_off"].to_numpy() + 4.0, rows["row_off"].to_numpy() + 4.0)
        lon, lat = to_lonlat.transform(x, y)
        np.testing.assert_allclose(rows["lon"], lon, atol=1e-9)
        np.testing.assert_allclose(rows["lat"], lat, atol=1e-9)
        extent = _extent_lonlat(crs)
        union = shapely.union_all(rows.geometry.values)
        assert extent.symmetric_difference(union).area / extent.area < 1e-6
    assert frame[frame["item_id"].isna()]["source"].tolist() == [str(plain)] * 2


def test_a_multi_band_asset_gives_its_bands_and_the_gpkg_has_the_item(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (3, HEIGHT, WIDTH), dtype=np.uint8)
    write_raster(tmp_path / "visual.tif", pixels, crs="EPSG:32633", transform=TRANSFORM)
    item = _item("S2A_33UUP", "2024-06-02T10:00:00Z", {"visual": "visual.tif"})
    collection = _write_collection(tmp_path / "visual.json", [item])
    with stac_rasters(collection, ["visual"]) as paths:
        run_embed(paths, tmp_path / "out.gpkg", fmt="gpkg", scale=1 / 255, max_nodata=1.0)
    frame = pyogrio.read_dataframe(tmp_path / "out.gpkg")
    assert set(frame["item_id"]) == {"S2A_33UUP"}
    assert set(frame["source"]) == {str(tmp_path / "visual.tif")}
    first = frame.iloc[1]  # the chip at column 8
    assert (first["col_off"], first["row_off"]) == (8, 0)
    blob = np.frombuffer(first["embedding"], dtype="<f4")
    expected = pixels[:, 0:8, 8:16].reshape(3, -1).mean(axis=1) / 255
    np.testing.assert_allclose(blob, expected, rtol=1e-5)


def test_geotiff_outputs_are_named_after_the_items(tmp_path: Path) -> None:
    collection = _band_collection(tmp_path)
    with stac_rasters(collection, ["red", "green", "blue"]) as paths:
        run_embed(paths, tmp_path / "grid", fmt="geotiff", preview=False)
    for item_id in ITEMS:
        with rasterio.open(tmp_path / "grid" / f"{item_id}.tif") as grid:
            info = json.loads(grid.tags()["geossl"])
            assert info["item_id"] == item_id
            assert info["source"].endswith("blue.tif")
            assert grid.tags()["ACQUISITIONDATETIME"].startswith(ITEMS[item_id][1].strftime("%F"))


def test_a_stac_dataset_rerun_skips_the_items(tmp_path: Path) -> None:
    # Each run stacks the assets in a new temporary VRT: the items are known by id and hrefs.
    collection = _band_collection(tmp_path)
    for done in (0, len(ITEMS)):
        with stac_rasters(collection, ["red", "green", "blue"]) as paths:
            report = run_embed(paths, tmp_path / "dataset", max_nodata=1.0)
        assert (report.units, report.units_done_before) == (len(ITEMS), done)
    with stac_rasters(collection, ["red", "green", "blue"]) as paths:
        report = run_embed(paths, tmp_path / "grid", fmt="geotiff", preview=False)
    with stac_rasters(collection, ["red", "green", "blue"]) as paths:
        again = run_embed(paths, tmp_path / "grid", fmt="geotiff", preview=False)
    assert (again.units_done_before, again.outputs) == (len(ITEMS), [])
    assert set(gpd.read_parquet(tmp_path / "dataset")["item_id"]) == set(ITEMS)


def test_hrefs_map_to_gdal_paths() -> None:
    assert gdal_path("https://e84.com/a/B04.tif") == "/vsicurl/https://e84.com/a/B04.tif"
    assert gdal_path("http://host/x.tif?sig=1") == "/vsicurl/http://host/x.tif?sig=1"
    assert gdal_path("s3://sentinel-cogs/tiles/B04.tif") == "/vsis3/sentinel-cogs/tiles/B04.tif"
    assert gdal_path("gs://bucket/B04.tif") == "/vsigs/bucket/B04.tif"
    assert gdal_path("az://container/B04.tif") == "/vsiaz/container/B04.tif"
    assert gdal_path("file:///data/my%20scene.tif") == "/data/my scene.tif"
    assert gdal_path("/vsizip//data/a.zip/b.tif") == "/vsizip//data/a.zip/b.tif"
    assert gdal_path("/data/b.tif") == "/data/b.tif"
    with pytest.raises(ValueError, match=r"ipfs://x/b\.tif: no GDAL path for ipfs:// hrefs"):
        gdal_path("ipfs://x/b.tif")
    assert absolute_href("b.tif", "/data/items") == "/data/items/b.tif"
    assert absolute_href("./tiles/b.tif", "https://h/stac/x.json") == "https://h/stac/tiles/b.tif"
    assert absolute_href("/abs/b.tif", "/data") == "/abs/b.tif"
    assert absolute_href("s3://b/k.tif", "/data") == "s3://b/k.tif"


def test_assets_parse() -> None:
    assert parse_assets("B04,B03, B02") == ("B04", "B03", "B02")
    with pytest.raises(ValueError, match="--assets takes asset names"):
        parse_assets("red,,blue")


def _collection_of(text: str) -> Any:
    return lambda root: (root / "items.json").write_text(text)


@pytest.mark.parametrize(
    ("setup", "assets", "message"),
    [
        (None, ["red", "nir"], "item 'S2A_31UDQ_20240601' has no asset 'nir'; its assets: red, "),
        (None, ["visual"], "item 'S2A_31UDQ_20240601', asset 'visual': GDAL cannot read "),
        (None, [], "choose the assets to read with --assets, e.g. --assets red,green,blue (item "),
        ("{not json", ["red"], "not valid JSON"),
        ('{"type": "Catalog", "id": "c"}', ["red"], "not a STAC ItemCollection"),
        ('{"type": "FeatureCollection", "features": []}', ["red"], "the ItemCollection has no"),
        (
            json.dumps({"type": "FeatureCollection", "features": [_item("a", None, {})]}),
            ["red"],
            "item 'a' has no datetime",
        ),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [{"id": "b", "properties": {"datetime": "2024-01-01T00:00:00Z"}}],
                }
            ),
            ["red"],
            "item 'b' is not a STAC item",
        ),
    ],
)
def test_bad_stac_is_a_one_line_error_naming_the_file_and_item(
    tmp_path: Path, setup: str | None, assets: list[str], message: str
) -> None:
    collection = _band_collection(tmp_path)
    if setup is not None:
        collection.write_text(setup)
    with pytest.raises(ValueError, match=r"items\.json") as info:
        stac_rasters(collection, assets)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_assets_in_different_crss_are_refused(tmp_path: Path) -> None:
    a = write_raster(tmp_path / "a.tif", np.zeros((1, 8, 8), np.uint16), crs="EPSG:32631")
    b = write_raster(tmp_path / "b.tif", np.zeros((1, 8, 8), np.uint16), crs="EPSG:32632")
    item = _item("x", "2024-01-01T00:00:00Z", {"a": str(a), "b": str(b)})
    collection = _write_collection(tmp_path / "items.json", [item])
    with pytest.raises(ValueError, match=r"items\.json: item 'x': assets 'a' and 'b' are in diff"):
        stac_rasters(collection, ["a", "b"])
    with pytest.raises(FileNotFoundError, match=r"--stac .*nope\.json: no such file"):
        stac_rasters(tmp_path / "nope.json", ["a"])
    with pytest.raises(ValueError, match="--assets picks the assets of --stac items"):
        stac_rasters(None, ["a"])
    assert stac_rasters(None, None).paths == []


def test_a_search_url_needs_pystac_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pystac_client", None)  # import fails
    url = "https://stac.example.com/v1/search?collections=sentinel-2-l2a"
    with pytest.raises(ValueError, match=r"needs pystac-client \(pip install 'geossl\[stac\]'\)"):
        read_items(url)


def test_a_search_url_goes_through_pystac_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pystac

    collection = json.loads(_band_collection(tmp_path).read_text())
    calls: list[tuple[str, dict[str, Any]]] = []

    class ItemSearch:
        def __init__(self, url: str, **arguments: Any) -> None:
            calls.append((url, arguments))

        def items(self) -> list[pystac.Item]:
            return [pystac.Item.from_dict(f) for f in collection["features"]]

    fake = types.ModuleType("pystac_client")
    fake.ItemSearch = ItemSearch  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pystac_client", fake)
    query = "collections=sentinel-2-l2a&bbox=2.2,48.8,2.5,48.9&datetime=2024-06&max_items=2"
    url = f"https://stac.example.com/v1/search?{query}"
    items, base = read_items(url)
    assert [item.id for item in items] == list(ITEMS)
    assert calls == [
        (
            "https://stac.example.com/v1/search",
            {
                "collections": "sentinel-2-l2a",
                "bbox": "2.2,48.8,2.5,48.9",
                "datetime": "2024-06",
                "max_items": 2,
            },
        )
    ]
    assert base == url
    with pytest.raises(ValueError, match="unknown search parameter 'colections'"):
        read_items("https://stac.example.com/v1/search?colections=x")
    with pytest.raises(ValueError, match="a STAC API search URL ends with /search"):
        read_items("https://stac.example.com/v1/collections/x/items")


def test_the_real_pystac_client_takes_the_search_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a test dependency: run where the `stac` extra is installed, offline (items() faked).
    pystac_client = pytest.importorskip("pystac_client")
    import pystac

    collection = json.loads(_band_collection(tmp_path).read_text())
    seen: list[dict[str, Any]] = []

    def items(self: Any) -> list[pystac.Item]:
        seen.append(self.get_parameters())
        return [pystac.Item.from_dict(f) for f in collection["features"]]

    monkeypatch.setattr(pystac_client.ItemSearch, "items", items)
    query = "collections=sentinel-2-l2a&bbox=2.2,48.8,2.5,48.9&datetime=2024-06&limit=5"
    filters = '&query={"eo:cloud_cover":{"lt":10}}&sortby=-properties.datetime&max_items=2'
    found, _ = read_items(f"https://stac.example.com/v1/search?{query}{filters}")
    assert [item.id for item in found] == list(ITEMS)
    assert seen[0]["bbox"] == (2.2, 48.8, 2.5, 48.9)
    assert seen[0]["collections"] == ("sentinel-2-l2a",)
    assert seen[0]["query"] == {"eo:cloud_cover": {"lt": 10}}
    assert seen[0]["datetime"] == "2024-06-01T00:00:00Z/2024-06-30T23:59:59Z"
