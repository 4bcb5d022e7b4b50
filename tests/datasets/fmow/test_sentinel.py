"""fMoW-Sentinel: the CSV and header readers, the index and the readers (on a generated sample)."""

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

import geossl.datasets.fmow.index as fmow_index
import geossl.datasets.fmow.scan_sentinel as fmow_scan_sentinel
from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.fmow import FMoWTemporalPairs
from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_SENTINEL_SCALE
from geossl.datasets.fmow.index import build_fmow_index
from geossl.datasets.fmow.metadata import _wkt_centroid
from geossl.datasets.fmow.sentinel import (
    fmow_sentinel_path,
    read_fmow_sentinel_csv,
    read_sentinel_header,
)
from geossl.synthetic.fmow_sentinel import generate_fmow_sentinel_sample

CATEGORIES = ["airport", "crop_field", "lake_or_pond", "solar_farm"]
HEADER = "category,location_id,image_id,timestamp,polygon\n"


@pytest.fixture(scope="module")
def sentinel_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only fMoW-Sentinel sample (copy it before editing)."""
    root = tmp_path_factory.mktemp("sentinel") / "fmow-sentinel"
    generate_fmow_sentinel_sample(
        root, locations=10, seed=0, image_size=(16, 32), categories=CATEGORIES
    )
    return root


@pytest.fixture
def sample_copy(sentinel_sample: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(sentinel_sample, root, ignore=shutil.ignore_patterns(".geossl"))
    return root


def _build(root: Path, cache: Path, **kwargs: object) -> fmow_index.FMoWIndex:
    options: dict[str, object] = {
        "splits": ("train", "val", "test"),
        "product": "sentinel",
        "num_geo_clusters": 2,
        "cache_dir": cache,
        "workers": 1,
        "progress": False,
    }
    options.update(kwargs)
    return build_fmow_index(root, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# CSV and header readers
# --------------------------------------------------------------------------------------------------


def test_csv_rows_are_validated_and_counted(tmp_path: Path) -> None:
    poly = "POLYGON ((10 40, 10.01 40, 10.01 40.01, 10 40.01, 10 40))"
    (tmp_path / "train.csv").write_text(
        ",category,location_id,image_id,timestamp,polygon\n"  # an unnamed index column
        f'0,airport,3,101,2016-04-01T00:00:00Z,"{poly}"\n'
        f'1,volcano,3,102,2016-04-01T00:00:00Z,"{poly}"\n'
        f'2,airport,x,102,2016-04-01T00:00:00Z,"{poly}"\n'
        f'3,airport,3,-1,2016-04-01T00:00:00Z,"{poly}"\n'
        f'4,airport,3,103,not a date,"{poly}"\n'
        f'5,airport,3,101,2017-04-01T00:00:00Z,"{poly}"\n'
        "6,airport,3,104,2017-04-01T00:00:00Z,\n"
    )
    rows, bad = read_fmow_sentinel_csv(tmp_path, "train")
    assert rows["path"].tolist() == [
        "train/airport/airport_3/airport_3_101.tif",
        "train/airport/airport_3/airport_3_104.tif",
    ]
    assert rows["timestamp"].tolist()[0] == 1459468800  # 2016-04-01 UTC
    lon, lat = _wkt_centroid(poly)  # type: ignore[misc]
    assert rows["lon"][0] == pytest.approx(lon)
    assert rows["lat"][0] == pytest.approx(lat)
    assert math.isnan(rows["lon"][1])  # no polygon: the raster will locate it
    assert bad == [
        ("unknown category", "train.csv:3"),
        ("malformed id", "train.csv:4"),
        ("malformed id", "train.csv:5"),
        ("malformed timestamp", "train.csv:6"),
        ("duplicate row", "train.csv:7"),
    ]


def test_csv_without_a_required_column_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "val.csv").write_text("category,location_id,timestamp\nairport,1,2016-01-01\n")
    with pytest.raises(
        BadDatasetError, match=r"val\.csv.*lacks the column\(s\) \['image_id'\]"
    ) as info:
        read_fmow_sentinel_csv(tmp_path, "val")
    assert "\n" not in str(info.value)
    with pytest.raises(BadDatasetError, match=r"test_gt\.csv.*cannot read"):
        read_fmow_sentinel_csv(tmp_path, "test")  # absent
    with pytest.raises(ValueError, match="splits"):
        read_fmow_sentinel_csv(tmp_path, "seq")


def _write(path: Path, count: int, crs: str | None = "EPSG:4326") -> None:
    from affine import Affine

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10,
        height=8,
        count=count,
        dtype="uint16",
        crs=crs,
        transform=Affine(0.001, 0, 20.0, 0, -0.001, 50.0),
    ) as dst:
        dst.write(np.ones((count, 8, 10), dtype=np.uint16))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_header_reader_checks_the_image(tmp_path: Path) -> None:
    _write(tmp_path / "ok.tif", 13)
    header = read_sentinel_header(tmp_path / "ok.tif")
    assert not isinstance(header, str)
    assert (header.width, header.height) == (10, 8)
    assert header.lon == pytest.approx(20.005)
    assert header.lat == pytest.approx(49.996)
    assert header.gsd == pytest.approx(111.32)
    _write(tmp_path / "null.tif", 1)
    assert read_sentinel_header(tmp_path / "null.tif") == "wrong band count"
    assert read_sentinel_header(tmp_path / "absent.tif") == "missing image"
    (tmp_path / "empty.tif").write_bytes(b"")
    assert read_sentinel_header(tmp_path / "empty.tif") == "empty image"
    (tmp_path / "junk.tif").write_bytes(b"II*\x00 not a tiff at all")
    assert read_sentinel_header(tmp_path / "junk.tif") == "unreadable image"
    _write(tmp_path / "nocrs.tif", 13, crs=None)
    header = read_sentinel_header(tmp_path / "nocrs.tif")
    assert not isinstance(header, str)
    assert math.isnan(header.lon)


# --------------------------------------------------------------------------------------------------
# index
# --------------------------------------------------------------------------------------------------


def test_index_rows_match_the_csvs(sentinel_sample: Path, tmp_path: Path) -> None:
    index = _build(sentinel_sample, tmp_path)
    table = index.table
    csv_rows = sum(
        len(pd.read_csv(sentinel_sample / n)) for n in ("train.csv", "val.csv", "test_gt.csv")
    )
    assert len(table) == csv_rows
    assert index.report.num_bad == 0
    assert table["label"].tolist() == [FMOW_CATEGORIES.index(c) for c in table["category"]]
    assert (table["crop_x1"] == table["img_width"]).all()
    assert (table["crop_x0"] == 0).all()
    assert (table["box_w"] == table["img_width"]).all()
    assert (table["box_h"] == table["img_height"]).all()
    assert (table["gsd"] - 10.0).abs().max() < 0.01
    # rows of a location are in time order; t is the image_id
    for _, rows in table.groupby("location_id"):
        assert rows["timestamp"].is_monotonic_increasing
    first = table.iloc[0]
    assert first["path"].endswith(f"_{first['t']}.tif")
    # lon/lat: the raster's centre, which is the CSV polygon's centroid in the sample
    csv = pd.read_csv(sentinel_sample / "train.csv")
    row = table.loc[table["split"] == "train"].iloc[0]
    match = csv.loc[(csv["category"] == row["category"]) & (csv["image_id"] == row["t"])]
    lon, lat = _wkt_centroid(match["polygon"].iloc[0])  # type: ignore[misc]
    assert row["lon"] == pytest.approx(lon, abs=1e-6)
    assert row["lat"] == pytest.approx(lat, abs=1e-6)


def test_cached_index_does_not_read_the_csvs(
    sentinel_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(sentinel_sample, tmp_path)
    assert not first.from_cache

    def fail(*args: object) -> None:
        raise AssertionError("a cached build must not parse the CSVs")

    monkeypatch.setattr(fmow_scan_sentinel, "read_fmow_sentinel_csv", fail)
    again = _build(sentinel_sample, tmp_path)
    assert again.from_cache
    pd.testing.assert_frame_equal(first.table, again.table)


def test_editing_a_csv_rebuilds(sample_copy: Path, tmp_path: Path) -> None:
    before = _build(sample_copy, tmp_path)
    csv = sample_copy / "val.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:-1]))  # drop the last row
    after = _build(sample_copy, tmp_path)
    assert not after.from_cache
    assert len(after.table) == len(before.table) - 1


def test_bad_images_are_skipped_and_counted(sample_copy: Path, tmp_path: Path) -> None:
    table = pd.read_csv(sample_copy / "train.csv")
    first = table.iloc[0]
    path = sample_copy / fmow_sentinel_path(
        "train", first["category"], first["location_id"], first["image_id"]
    )
    path.unlink()
    second = table.iloc[1]
    _write(
        sample_copy
        / fmow_sentinel_path(
            "train", second["category"], second["location_id"], second["image_id"]
        ),
        1,
    )
    index = _build(sample_copy, tmp_path, splits=("train",))
    assert index.report.bad_by_reason == {"missing image": 1, "wrong band count": 1}
    assert len(index.table) == len(table) - 2
    with pytest.raises(BadDatasetError, match=r"missing image|wrong band count"):
        _build(sample_copy, tmp_path / "strict", splits=("train",), max_bad_fraction=0.001)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_raster_without_crs_falls_back_to_the_polygon(sample_copy: Path, tmp_path: Path) -> None:
    table = pd.read_csv(sample_copy / "val.csv")
    row = table.iloc[0]
    rel = fmow_sentinel_path("val", row["category"], row["location_id"], row["image_id"])
    with rasterio.open(sample_copy / rel) as src:
        data = src.read()
    with rasterio.open(
        sample_copy / rel,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=13,
        dtype="uint16",
    ) as dst:
        dst.write(data)
    index = _build(sample_copy, tmp_path, splits=("val",), num_geo_clusters=1)
    got = index.table.loc[index.table["path"] == rel].iloc[0]
    lon, lat = _wkt_centroid(row["polygon"])  # type: ignore[misc]
    assert got["lon"] == pytest.approx(lon)
    assert got["lat"] == pytest.approx(lat)
    # without the polygon either, the image has no location
    table.loc[0, "polygon"] = ""
    table.to_csv(sample_copy / "val.csv", index=False)
    index = _build(sample_copy, tmp_path / "b", splits=("val",), num_geo_clusters=1)
    assert index.report.bad_by_reason == {"no location": 1}


def test_missing_csv_or_split_is_one_clear_error(sample_copy: Path, tmp_path: Path) -> None:
    (sample_copy / "test_gt.csv").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"fMoW-Sentinel test_gt\.csv not found") as info:
        _build(sample_copy, tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="fMoW-Sentinel has the splits"):
        _build(sample_copy, tmp_path, splits=("train", "seq"))
    with pytest.raises(DatasetNotFoundError, match="root folder does not exist"):
        _build(tmp_path / "nowhere", tmp_path)


# --------------------------------------------------------------------------------------------------
# reading pairs
# --------------------------------------------------------------------------------------------------


def test_pairs_are_two_dates_of_one_footprint_scaled_to_reflectance(
    sentinel_sample: Path, tmp_path: Path
) -> None:
    index = _build(sentinel_sample, tmp_path, splits=("train",))
    rows = index.split_rows("train")
    first = rows.iloc[0]
    size = int(first["img_width"])
    same = rows.loc[rows["location_id"] == first["location_id"]]
    i, j = int(same.index[0]), int(same.index[-1])
    # each view is its whole image resized to image_size (bilinear), times the reflectance scale
    pairs = FMoWTemporalPairs(
        sentinel_sample, rows, size, scale=FMOW_SENTINEL_SCALE, shared_canvas=True
    )
    assert pairs.canvas_window(i, j) == (
        0,
        0,
        int(rows["img_width"].iloc[j]),
        int(rows["img_height"].iloc[j]),
    )
    sample = pairs[(i, j)]
    assert sample["image"].shape == (2, 13, size, size)
    assert sample["time"][0] < sample["time"][1]
    with rasterio.open(sentinel_sample / str(first["path"])) as src:
        raw = src.read(out_shape=(13, size, size), resampling=rasterio.enums.Resampling.bilinear)
    expected = np.clip(raw.astype(np.float32) * np.float32(FMOW_SENTINEL_SCALE), 0.0, 1.0)
    np.testing.assert_allclose(sample["image"][0].numpy(), expected, rtol=0, atol=1e-6)
