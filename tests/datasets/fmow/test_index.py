import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import geossl.datasets.fmow.index as fmow_index
import geossl.datasets.fmow.scan as fmow_scan
from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.fmow import FMoW, FMoWTemporalPairs
from geossl.datasets.fmow.constants import FMOW_CATEGORIES, INDEX_COLUMNS
from geossl.datasets.fmow.index import build_fmow_index
from geossl.datasets.fmow.scan import fmow_fingerprint
from geossl.synthetic.fmow import generate_fmow_sample

ALL_SPLITS = ("train", "val", "test", "seq")
EXPECTED_DTYPES = {
    "path": "str",
    "split": "str",
    "category": "str",
    "label": "int16",
    "location": "str",
    "location_id": "int32",
    "t": "int16",
    "timestamp": "int64",
    "lat": "float64",
    "lon": "float64",
    "gsd": "float32",
    "cloud_cover": "float32",
    "img_width": "int32",
    "img_height": "int32",
    "box_x": "int32",
    "box_y": "int32",
    "box_w": "int32",
    "box_h": "int32",
    "crop_x0": "int32",
    "crop_y0": "int32",
    "crop_x1": "int32",
    "crop_y1": "int32",
    "country_code": "str",
    "geo_label": "int16",
}


def _build(root: Path, cache: Path, **kwargs: object) -> fmow_index.FMoWIndex:
    options: dict[str, object] = {
        "splits": ALL_SPLITS,
        "num_geo_clusters": 4,
        "cache_dir": cache,
        "workers": 1,
        "progress": False,
    }
    options.update(kwargs)
    return build_fmow_index(root, **options)  # type: ignore[arg-type]


@pytest.fixture
def sample_copy(fmow_sample: Path, tmp_path: Path) -> Path:
    root = tmp_path / "fmow"
    shutil.copytree(fmow_sample, root, ignore=shutil.ignore_patterns(".geossl"))
    return root


def test_columns_dtypes_and_order(fmow_sample: Path, tmp_path: Path) -> None:
    index = _build(fmow_sample, tmp_path)
    table = index.table
    assert list(table.columns) == [name for name, _ in INDEX_COLUMNS]
    assert {c: str(t) for c, t in table.dtypes.items()} == EXPECTED_DTYPES
    assert not index.from_cache
    assert index.report.num_bad == 0
    assert index.report.num_valid == len(table) == index.report.num_json_read
    # one row per image of the generated sample
    counts = table["split"].value_counts().to_dict()
    manifest = sum(1 for _ in fmow_sample.glob("*/*/*/*_rgb.jpg")) + sum(
        1 for _ in fmow_sample.glob("*/*/*_rgb.jpg")
    )
    assert len(table) == manifest
    assert set(counts) == set(ALL_SPLITS)
    # sorted by (location_id, timestamp, t); location ids dense; t is not time order somewhere
    keys = table[["location_id", "timestamp", "t"]].to_numpy()
    assert (np.lexsort(keys.T[::-1]) == np.arange(len(table))).all()
    assert table["location_id"].tolist() == sorted(table["location_id"].tolist())
    assert table["location_id"].nunique() == table["location_id"].max() + 1
    assert table["location"].nunique() == table["location_id"].nunique()
    assert any(
        group["t"].tolist() != sorted(group["t"].tolist()) for _, group in table.groupby("location")
    )
    assert table.groupby("location")["location_id"].nunique().max() == 1
    # paths exist, crops inside the image
    assert all((fmow_sample / p).is_file() for p in table["path"])
    assert (table[["crop_x0", "crop_y0"]] >= 0).all().all()
    assert (table["crop_x1"] <= table["img_width"]).all()
    assert (table["crop_y1"] <= table["img_height"]).all()
    assert table["geo_label"].between(0, 3).all()
    assert index.centroids.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(index.centroids, axis=1), 1.0)
    # one geo label per location
    assert table.groupby("location_id")["geo_label"].nunique().max() == 1


def _records(table: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    columns = [table[c].tolist() for c in ("path", "category", "location", "label")]
    return list(zip(*columns, strict=True))


def test_categories_and_locations(fmow_sample: Path, tmp_path: Path) -> None:
    table = _build(fmow_sample, tmp_path).table
    for path, category, location, label in _records(table[table["split"] == "train"]):
        assert category == path.split("/")[1]
        assert label == FMOW_CATEGORIES.index(category)
        assert location == "train/" + path.split("/")[2]
    for split in ("test", "seq"):
        mapping = json.loads((fmow_sample / f"{split}_gt_mapping.json").read_text())
        expected = {m["output"]: m["input"].split("/")[1] for m in mapping}
        records = _records(table[table["split"] == split])
        assert len(records) > 0
        for path, category, location, label in records:
            assert location == "/".join(path.split("/")[:2])
            assert category == expected[location]
            assert label == FMOW_CATEGORIES.index(category)


def test_cache_is_reused_without_reading_json(
    sample_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = _build(sample_copy, cache)
    assert first.cache_path.parent == cache
    assert first.cache_path.name.startswith("fmow-index-rgb-")

    def explode(path: str) -> None:
        raise AssertionError(f"parsed {path}")

    monkeypatch.setattr(fmow_scan, "parse_fmow_json", explode)
    second = _build(sample_copy, cache)
    assert second.from_cache
    assert second.cache_path == first.cache_path
    pd.testing.assert_frame_equal(second.table, first.table)
    np.testing.assert_array_equal(second.centroids, first.centroids)
    assert second.report == first.report
    with pytest.raises(AssertionError, match="parsed"):
        _build(sample_copy, cache, rebuild=True)
    # other parameters make another cache file
    monkeypatch.undo()
    other = _build(sample_copy, cache, num_geo_clusters=3)
    assert other.cache_path != first.cache_path
    assert not other.from_cache


def test_default_cache_dir(sample_copy: Path) -> None:
    index = build_fmow_index(sample_copy, num_geo_clusters=2, progress=False, workers=1)
    assert index.cache_path.parent == sample_copy / ".geossl"
    assert index.cache_path.is_file()
    assert not list(index.cache_path.parent.glob("*.tmp"))


def test_cache_rebuilt_when_locations_change(sample_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for folder in sample_copy.glob("train/*"):
        os.utime(folder, ns=(1, 1))  # an old mtime: any change is visible on coarse file systems
    first = _build(sample_copy, cache)
    location = sample_copy / first.table["path"].iloc[-1].rsplit("/", 1)[0]
    assert location.parent.parent.name in ("train", "val")
    clone = location.parent / (location.name + "9")
    shutil.copytree(location, clone)
    for f in clone.iterdir():
        f.rename(clone / f.name.replace(location.name + "_", clone.name + "_"))
    added = _build(sample_copy, cache)
    assert not added.from_cache
    assert len(added.table) == len(first.table) + len(list(location.glob("*_rgb.jpg")))
    assert _build(sample_copy, cache).from_cache

    shutil.rmtree(clone)
    shutil.rmtree(location)
    removed = _build(sample_copy, cache)
    assert not removed.from_cache
    prefix = location.relative_to(sample_copy).as_posix() + "/"
    assert len(removed.table) == (~first.table["path"].str.startswith(prefix)).sum()


def test_cache_rebuilt_when_an_image_is_removed(sample_copy: Path, tmp_path: Path) -> None:
    for folder in [*sample_copy.glob("*/*/"), *sample_copy.glob("*/*/*/")]:
        os.utime(folder, ns=(1, 1))  # an old mtime: any change is visible on coarse file systems
    first = _build(sample_copy, tmp_path)
    fingerprint = fmow_fingerprint(sample_copy, ALL_SPLITS)
    image = sample_copy / first.table["path"].iloc[0]
    image.unlink()
    assert fmow_fingerprint(sample_copy, ALL_SPLITS) != fingerprint
    second = _build(sample_copy, tmp_path)
    assert not second.from_cache
    assert second.report.bad_by_reason == {"missing image": 1}


def test_a_json_fixed_after_indexing_is_picked_up(
    sample_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean = _build(sample_copy, tmp_path / "clean").table
    counts = clean["location_id"].value_counts()
    row = int(clean.index[clean["location_id"] == counts.index[counts > 1][0]][0])
    _, meta = _jpeg_json(sample_copy, clean, row)
    good = meta.read_text()
    meta.write_text(good[: len(good) // 2])  # malformed before the build: the cache records it
    cache = tmp_path / "cache"
    broken = _build(sample_copy, cache, progress=True)
    assert broken.report.bad_by_reason == {"malformed json": 1}
    assert "--data.rebuild_index true" in capsys.readouterr().err  # the skip report's last line
    assert len(broken.table) == len(clean) - 1

    # Fixed in place: no folder mtime changes, so the cache key is the same; only the files
    # recorded as bad are stat-ed, and the changed one's folder is re-scanned.
    meta.write_text(good)
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 1_000_000))
    fixed = _build(sample_copy, cache)
    assert fixed.from_cache
    assert fixed.cache_path == broken.cache_path
    assert fixed.report.bad_by_reason == {}
    assert fixed.report.num_valid == len(fixed.table) == len(clean)
    assert fixed.report.num_scanned == broken.report.num_scanned
    assert fixed.report.num_locations == broken.report.num_locations
    columns = [c for c in clean.columns if c != "geo_label"]
    pd.testing.assert_frame_equal(fixed.table[columns], clean[columns])
    location = fixed.table["location_id"] == fixed.table["location_id"].iloc[row]
    assert fixed.table.loc[location, "geo_label"].nunique() == 1

    def explode(path: str) -> None:
        raise AssertionError(f"parsed {path}")

    monkeypatch.setattr(fmow_scan, "parse_fmow_json", explode)
    again = _build(sample_copy, cache, progress=True)  # the cache was updated: nothing re-read
    pd.testing.assert_frame_equal(again.table, fixed.table)
    assert "rebuild_index" not in capsys.readouterr().err


def test_a_bad_json_edited_but_still_bad_is_recorded_again(
    sample_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _build(sample_copy, tmp_path / "clean").table
    _, meta = _jpeg_json(sample_copy, clean, 0)
    meta.write_text("{")
    cache = tmp_path / "cache"
    _build(sample_copy, cache)
    meta.write_text("[]")  # changed, still not an fMoW JSON
    again = _build(sample_copy, cache)
    assert again.from_cache
    assert sum(again.report.bad_by_reason.values()) == again.report.num_bad == 1
    assert len(again.table) == len(clean) - 1

    def explode(path: str) -> None:
        raise AssertionError(f"parsed {path}")

    monkeypatch.setattr(fmow_scan, "parse_fmow_json", explode)
    assert _build(sample_copy, cache).report == again.report  # its new size and mtime are kept


def test_corrupt_cache_is_rebuilt(sample_copy: Path, tmp_path: Path) -> None:
    first = _build(sample_copy, tmp_path)
    first.cache_path.write_bytes(b"PAR1 this is not parquet")
    with pytest.warns(RuntimeWarning, match="corrupt fMoW index cache"):
        second = _build(sample_copy, tmp_path)
    assert not second.from_cache
    pd.testing.assert_frame_equal(second.table, first.table)
    assert _build(sample_copy, tmp_path).from_cache


def test_workers_give_the_same_table(
    fmow_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fmow_index, "_UNITS_PER_TASK", 4)  # several tasks for the pool
    single = _build(fmow_sample, tmp_path / "a", workers=1)
    multi = _build(fmow_sample, tmp_path / "b", workers=2)
    assert multi.report.workers == 2
    pd.testing.assert_frame_equal(single.table, multi.table)
    assert single.report.num_json_read == multi.report.num_json_read


def _jpeg_json(root: Path, table: pd.DataFrame, row: int) -> tuple[Path, Path]:
    image = root / table["path"].iloc[row]
    return image, image.with_suffix(".json")


def test_bad_samples_are_skipped_and_counted(sample_copy: Path, tmp_path: Path) -> None:
    clean = _build(sample_copy, tmp_path / "clean")
    table = clean.table
    # one bad sample per location, in six different locations
    rows = [int(table.index[table["location_id"] == i][0]) for i in range(6)]
    image, meta = _jpeg_json(sample_copy, table, rows[0])
    meta.write_text('{"timestamp": "2015-')  # malformed json
    image, meta = _jpeg_json(sample_copy, table, rows[1])
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])  # truncated JPEG
    image, meta = _jpeg_json(sample_copy, table, rows[2])
    content = json.loads(meta.read_text())
    content["bounding_boxes"][0]["box"][2] = 0  # zero-size box
    meta.write_text(json.dumps(content))
    image, meta = _jpeg_json(sample_copy, table, rows[3])
    content = json.loads(meta.read_text())
    del content["raw_location"], content["utm"]  # no location
    meta.write_text(json.dumps(content))
    image, meta = _jpeg_json(sample_copy, table, rows[4])
    image.write_bytes(b"")  # empty image
    image, meta = _jpeg_json(sample_copy, table, rows[5])
    meta.unlink()  # lone image

    index = _build(sample_copy, tmp_path / "bad")
    report = index.report
    assert report.bad_by_reason == {
        "malformed json": 1,
        "truncated image": 1,
        "degenerate box": 1,
        "invalid location": 1,
        "empty image": 1,
        "missing json": 1,
    }
    assert report.num_bad == 6
    assert report.num_scanned == len(table)
    assert len(index.table) == len(table) - 6
    assert set(index.table["path"]) == set(table["path"]) - {table["path"].iloc[r] for r in rows}
    assert report.examples["truncated image"] == [table["path"].iloc[rows[1]]]
    assert report.examples["missing json"] == [table["path"].iloc[rows[5]]]
    assert any("truncated image: 1" in line for line in report.summary_lines())

    without_check = _build(sample_copy, tmp_path / "nocheck", verify_images=False)
    assert "truncated image" not in without_check.report.bad_by_reason
    assert without_check.report.num_images_checked == 0


def test_zeroed_jpeg_data_is_a_blank_image(sample_copy: Path, tmp_path: Path) -> None:
    # Markers intact (SOI ... SOS header ... EOI), entropy-coded data zeroed: it decodes, to grey
    # garbage, and used to be indexed as a valid image.
    table = _build(sample_copy, tmp_path / "good").table
    image, _ = _jpeg_json(sample_copy, table, 0)
    data = bytearray(image.read_bytes())
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    end = data.rindex(b"\xff\xd9")
    data[start:end] = bytes(end - start)
    image.write_bytes(bytes(data))
    index = _build(sample_copy, tmp_path / "zeroed")
    assert index.report.bad_by_reason == {"blank image": 1}
    assert table["path"].iloc[0] not in set(index.table["path"])


def test_mostly_bad_dataset(sample_copy: Path, tmp_path: Path) -> None:
    jsons = sorted(sample_copy.glob("train/*/*/*_rgb.json"))
    for path in jsons:
        path.write_text("not json")
    with pytest.raises(BadDatasetError) as info:
        _build(sample_copy, tmp_path, splits=("train", "val"), max_bad_fraction=0.5)
    message = str(info.value)
    assert message.startswith(f"{sample_copy}: ")
    assert "max_bad_fraction=0.5" in message
    assert "malformed json" in message
    assert "\n" not in message
    with pytest.raises(BadDatasetError, match="no valid fMoW rgb images in train"):
        _build(sample_copy, tmp_path, splits=("train",), max_bad_fraction=1.0)


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "fmow" / "train" / "airport").mkdir(parents=True)
    with pytest.raises(BadDatasetError, match=r"fmow: no fMoW rgb images found in train$"):
        _build(tmp_path / "fmow", tmp_path, splits=("train",))


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "fmow").write_text("")
    with pytest.raises(DatasetNotFoundError, match="fMoW root is not a folder"):
        _build(tmp_path / "fmow", tmp_path)


def test_missing_data(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        _build(tmp_path / "nowhere", tmp_path)
    message = str(info.value)
    assert "fMoW root folder does not exist" in message
    assert f"geossl datasets download fmow --root {tmp_path / 'nowhere'}" in message
    assert f"geossl datasets sample fmow --output {tmp_path / 'nowhere'}" in message
    assert "\n" not in message
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "fmow" / "train").mkdir(parents=True)
    (tmp_path / "fmow" / "test").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"fMoW val/, test_gt_mapping\.json not found"):
        _build(tmp_path / "fmow", tmp_path, splits=("train", "val", "test"))


def test_errors_pickle() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(DatasetNotFoundError("/d", "gone")))
    assert str(err) == str(DatasetNotFoundError("/d", "gone"))
    bad = pickle.loads(pickle.dumps(BadDatasetError("/d", "empty")))
    assert str(bad) == "/d: empty"


def test_too_many_geo_clusters(fmow_sample: Path, tmp_path: Path) -> None:
    message = (
        r"^data\.num_geo_clusters=500 is larger than the number of distinct training locations "
        rf"\(\d+\) in {fmow_sample}$"
    )
    with pytest.raises(ValueError, match=message):
        _build(fmow_sample, tmp_path, num_geo_clusters=500)


def test_invalid_arguments(fmow_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="splits"):
        _build(fmow_sample, tmp_path, splits=("training",))
    with pytest.raises(ValueError, match="product"):
        _build(fmow_sample, tmp_path, product="pan")
    with pytest.raises(ValueError, match="max_bad_fraction"):
        _build(fmow_sample, tmp_path, max_bad_fraction=2.0)


def test_msrgb_product(fmow_sample: Path, tmp_path: Path) -> None:
    rgb = _build(fmow_sample, tmp_path, splits=("train",))
    msrgb = _build(fmow_sample, tmp_path, splits=("train",), product="msrgb")
    assert msrgb.cache_path != rgb.cache_path
    assert msrgb.table["path"].str.endswith("_msrgb.jpg").all()
    assert len(msrgb.table) == len(rgb.table)
    assert (msrgb.table["img_width"] < rgb.table["img_width"]).all()
    sample = FMoWTemporalPairs(fmow_sample, msrgb.table, image_size=32)[(0, 1)]
    assert sample["image"].shape == (2, 3, 32, 32)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_fmow_full_products(tmp_path: Path) -> None:
    root = tmp_path / "full"
    generate_fmow_sample(root, locations=4, seed=1, image_size=(48, 64), full=True)
    rgb = _build(root, tmp_path, splits=("train",), num_geo_clusters=1)
    assert rgb.table["path"].str.endswith("_rgb.tif").all()
    ms = _build(root, tmp_path, splits=("train",), num_geo_clusters=1, product="ms")
    assert ms.table["path"].str.endswith("_ms.tif").all()
    sample = FMoW(root, ms.table, image_size=16, bands=[5, 3, 2])[0]
    assert sample["image"].dtype.is_floating_point
    assert sample["image"].shape == (3, 16, 16)
    assert 0.0 <= float(sample["image"].min()) <= float(sample["image"].max()) <= 1.0
    assert FMoW(root, ms.table, image_size=8)[0]["image"].shape == (8, 8, 8)
