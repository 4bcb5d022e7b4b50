"""xView reader: class map, bad labels, split, chipping protocol, chip boxes, cache, errors."""

import csv
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

import geossl.datasets.xview.chips as xview_chips
import geossl.datasets.xview.labels as xview_labels
from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.xview import (
    XVIEW_CLASS_NAMES,
    XVIEW_CLASSES,
    XVIEW_TYPE_TO_LABEL,
    XView,
    XViewChipParams,
    chip_boxes,
    grid_chip_windows,
    load_xview_chips,
    load_xview_labels,
    parse_xview_features,
    random_chip_windows,
    read_xview_chip,
    split_xview_images,
)
from geossl.synthetic.xview import XViewSampleSummary
from tests.conftest import REAL_DATA
from tests.xview_helpers import shared_xview_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> XViewSampleSummary:
    return shared_xview_sample(tmp_path_factory)


@pytest.fixture
def sample_copy(sample: XViewSampleSummary, tmp_path: Path) -> Path:
    """A private copy (without cache) for tests that write caches or corrupt files."""
    root = tmp_path / "xview"
    shutil.copytree(sample.root, root, ignore=shutil.ignore_patterns(".geossl-cache"))
    return root


def feature(image_id: str, bounds: Any, type_id: Any = 73) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"bounds_imcoords": bounds, "type_id": type_id, "image_id": image_id},
    }


# ------------------------------------------------------------------------------------ class map


def test_sixty_classes_in_ascending_type_id_order() -> None:
    ids = [tid for tid, _ in XVIEW_CLASSES]
    assert len(ids) == 60 == len(set(ids)) == len(XVIEW_CLASS_NAMES)
    assert ids == sorted(ids)
    assert ids[0] == 11
    assert ids[-1] == 94
    assert [XVIEW_TYPE_TO_LABEL[t] for t in ids] == list(range(60))
    # the standard xView map: known ids and names at known labels
    assert XVIEW_TYPE_TO_LABEL[18] == 5
    assert XVIEW_CLASS_NAMES[5] == "Small Car"
    assert XVIEW_TYPE_TO_LABEL[73] == 48
    assert XVIEW_CLASS_NAMES[48] == "Building"
    assert XVIEW_TYPE_TO_LABEL[86] == 55
    assert XVIEW_CLASS_NAMES[55] == "Storage Tank"
    # ids that occur in the real labels or the 11-94 range without being classes
    for unused in (14, 16, 22, 30, 31, 39, 43, 46, 48, 58, 67, 75, 78, 82, 85, 90, 92):
        assert unused not in XVIEW_TYPE_TO_LABEL


# --------------------------------------------------------------------------------- bad labels


def test_bad_boxes_are_dropped_clipped_and_counted() -> None:
    sizes = {"1.tif": (100, 80)}
    features = [
        feature("1.tif", "10,20,30,40", 18),  # good
        feature("1.tif", "10,20,10,40"),  # zero width
        feature("1.tif", "30,20,10,40"),  # negative width
        feature("1.tif", "10,nan,30,40"),  # NaN
        feature("1.tif", "10,20,inf,40"),  # infinite
        feature("1.tif", "150,10,170,30"),  # entirely right of the image
        feature("1.tif", "-30,-30,0,0"),  # touches the corner only: no area inside
        feature("1.tif", "-10,70,20,95", "86"),  # partly outside: clipped; type id as text
        feature("1.tif", "90,5,130,15", 94.0),  # partly outside on the right: clipped
        feature("1.tif", "1,2,3,4", 75),  # unknown type id
        feature("1.tif", "1,2,3,4", 82),  # unknown type id
        feature("1395.tif", "1,2,3,4"),  # image not on disk
        feature("1395.tif", "5,6,7,8"),
        feature("1.tif", "1,2,3"),  # 3 numbers
        feature("1.tif", None),  # no bounds
        feature("1.tif", "1,2,3,4", "car"),  # type id not an integer
        {"type": "Feature"},  # no properties
        "not a feature",
    ]
    boxes, counts, missing = parse_xview_features(features, sizes)
    assert counts == {
        "malformed": 5,
        "unknown_type": 2,
        "degenerate": 4,
        "outside_image": 2,
        "clipped": 2,
        "no_image": 2,
    }
    assert missing == {"1395.tif"}
    got, labels = boxes["1.tif"]
    np.testing.assert_array_equal(
        got, np.array([[10, 20, 30, 40], [0, 70, 20, 80], [90, 5, 100, 15]], dtype=np.float32)
    )
    np.testing.assert_array_equal(labels, [5, 55, 59])


def test_sample_report_counts_every_defect(sample: XViewSampleSummary) -> None:
    labels = load_xview_labels(sample.root)
    report = labels.report
    assert report.features == sample.num_features
    assert report.boxes == sample.num_objects == len(labels.boxes)
    assert report.degenerate == sample.degenerate == 2
    assert report.outside_image == sample.outside_image == 1
    assert report.unknown_type == sample.unknown_type == 2
    assert report.clipped == sample.clipped == 2
    assert report.features_without_image == sample.features_without_image == 3
    assert report.missing_images == ("1395.tif",)
    assert report.malformed == 0
    assert labels.image_ids == tuple(sorted(sample.image_ids))
    assert "1395.tif" in report.summary()
    for index, image_id in enumerate(labels.image_ids):
        width, height = sample.image_sizes[image_id]
        assert tuple(labels.image_sizes[index]) == (width, height)
        boxes, _ = labels.image_boxes(index)
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2] <= width).all()
        assert (boxes[:, 3] <= height).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
    # every kept label is one of the sample's classes
    kept = {XVIEW_CLASSES[int(i)][0] for i in np.unique(labels.labels)}
    assert kept == set(sample.type_ids)


# ------------------------------------------------------------------------------------- split


def test_split_reproduces_the_papers_700_146() -> None:
    ids = [f"{n}.tif" for n in range(5, 851)]
    assert len(ids) == 846
    split = split_xview_images(ids, val_fraction=0)
    assert len(split["train"]) == 700
    assert len(split["test"]) == 146
    assert not split["val"]
    with_val = split_xview_images(ids)
    assert with_val["test"] == split["test"]  # the validation share comes out of the 700
    assert len(with_val["val"]) == 70
    assert len(with_val["train"]) == 630
    assert set(with_val["train"]) | set(with_val["val"]) == set(split["train"])


def test_split_is_stable_and_seeded() -> None:
    ids = [f"{n}.tif" for n in range(200)]
    split = split_xview_images(ids, seed=3)
    assert split == split_xview_images(list(reversed(ids)), seed=3)  # order does not matter
    assert split != split_xview_images(ids, seed=4)
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)
    # removing one image moves no other image between splits
    smaller = split_xview_images(ids[1:], seed=3)
    moved = {i for name in smaller for i in smaller[name] if i not in split[name]}
    assert len(moved) <= 2


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        split_xview_images(["1.tif"], test_fraction=1.0)
    with pytest.raises(ValueError, match="val_fraction"):
        split_xview_images(["1.tif"], val_fraction=-0.1)


# ---------------------------------------------------------------------------------- chipping


def pairwise_iou(corners: np.ndarray, size: int) -> Any:
    dx = np.clip(size - np.abs(corners[:, None, 0] - corners[None, :, 0]), 0, None)
    dy = np.clip(size - np.abs(corners[:, None, 1] - corners[None, :, 1]), 0, None)
    inter = (dx * dy).astype(float)
    iou = inter / (2 * size**2 - inter)
    np.fill_diagonal(iou, 0)
    return iou


@pytest.mark.parametrize("max_overlap", [0.25, 0.5])
def test_random_chips_keep_pairwise_overlap_below_the_limit(max_overlap: float) -> None:
    rng = np.random.default_rng(0)
    corners = random_chip_windows(
        4000, 3500, chip_size=416, count=100, max_overlap=max_overlap, rng=rng
    )
    assert len(corners) == 100  # a 4000 x 3500 image holds 100 such chips
    assert corners[:, 0].min() >= 0
    assert corners[:, 0].max() <= 4000 - 416
    assert corners[:, 1].min() >= 0
    assert corners[:, 1].max() <= 3500 - 416
    assert pairwise_iou(corners, 416).max() < max_overlap
    again = random_chip_windows(
        4000, 3500, chip_size=416, count=100, max_overlap=max_overlap, rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(corners, again)


def test_random_chips_stop_short_on_small_images() -> None:
    corners = random_chip_windows(
        900, 900, chip_size=416, count=100, max_overlap=0.25, rng=np.random.default_rng(1)
    )
    assert 4 <= len(corners) < 100
    assert pairwise_iou(corners, 416).max() < 0.25
    # an image smaller than the chip: one (padded) chip
    tiny = random_chip_windows(
        300, 200, chip_size=416, count=5, max_overlap=0.25, rng=np.random.default_rng(1)
    )
    np.testing.assert_array_equal(tiny, [[0, 0]])


def test_grid_chips_cover_the_image_with_edge_aligned_last_chips() -> None:
    corners = grid_chip_windows(1000, 500, chip_size=416, stride=416)
    xs, ys = sorted(set(corners[:, 0])), sorted(set(corners[:, 1]))
    assert xs == [0, 416, 1000 - 416]
    assert ys == [0, 500 - 416]
    assert len(corners) == 6
    np.testing.assert_array_equal(grid_chip_windows(300, 300, chip_size=416, stride=416), [[0, 0]])
    assert len(grid_chip_windows(832, 416, chip_size=416, stride=208)) == 3


def test_chip_boxes_are_clipped_and_shifted_into_the_chip() -> None:
    # a 40 x 40 box, half of it inside the chip that starts at x = 120
    boxes = np.array([[100, 50, 140, 90], [130, 60, 150, 70], [400, 400, 410, 410]], np.float32)
    window = (120, 40, 128, 128)
    kept, rows = chip_boxes(boxes, window, min_visibility=0.5)
    np.testing.assert_array_equal(rows, [0, 1])
    np.testing.assert_array_equal(kept, [[0, 10, 20, 50], [10, 20, 30, 30]])
    kept, rows = chip_boxes(boxes, window, min_visibility=0.6)  # the half-visible box goes
    np.testing.assert_array_equal(rows, [1])
    kept, rows = chip_boxes(boxes, window, min_visibility=0.0)  # outside boxes never stay
    np.testing.assert_array_equal(rows, [0, 1])


def test_dataset_chip_boxes_equal_the_hand_computed_ones(sample: XViewSampleSummary) -> None:
    params = XViewChipParams(mode="grid", chip_size=128, min_visibility=0.3)
    dataset = XView(sample.root, "all", params)
    features = json.loads(sample.geojson.read_text())["features"]
    sizes = sample.image_sizes
    checked = 0
    for index in range(len(dataset)):
        item = dataset[index]
        x0, y0, w, h = (int(v) for v in item["window"])
        width, height = sizes[item["image_id"]]
        want = []
        for f in features:
            p = f["properties"]
            if p["image_id"] != item["image_id"] or p["type_id"] not in XVIEW_TYPE_TO_LABEL:
                continue
            bx0, by0, bx1, by1 = (float(v) for v in p["bounds_imcoords"].split(","))
            bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)
            if bx1 <= bx0 or by1 <= by0:
                continue
            ix0, iy0 = max(bx0, x0), max(by0, y0)
            ix1, iy1 = min(bx1, x0 + w), min(by1, y0 + h)
            inter = max(ix1 - ix0, 0) * max(iy1 - iy0, 0)
            if inter > 0 and inter >= 0.3 * (bx1 - bx0) * (by1 - by0):
                label = XVIEW_TYPE_TO_LABEL[p["type_id"]]
                want.append((ix0 - x0, iy0 - y0, ix1 - x0, iy1 - y0, label))
        got = [
            (*b.tolist(), int(lab))
            for b, lab in zip(item["bbox_xyxy"], item["label"], strict=False)
        ]
        assert sorted(got) == sorted(want), (item["image_id"], (x0, y0))
        checked += len(want)
    assert checked >= sample.num_objects  # every object lands in at least one grid chip


def test_sample_keys_dtypes_and_pixels_match_the_image(sample: XViewSampleSummary) -> None:
    dataset = XView(sample.root, "train", XViewChipParams(chip_size=128, crops_per_image=3))
    assert len(dataset) > 0
    item = dataset[len(dataset) - 1]
    assert item["image"].shape == (3, 128, 128)
    assert item["image"].dtype == torch.float32
    assert item["bbox_xyxy"].dtype == torch.float32
    assert item["bbox_xyxy"].shape[1] == 4
    assert item["label"].dtype == torch.int64
    assert item["image_id"] in dataset.image_ids
    x0, y0, w, h = (int(v) for v in item["window"])
    with rasterio.open(sample.root / "train_images" / item["image_id"]) as src:
        full = src.read().astype(np.float32) / 255
    np.testing.assert_allclose(item["image"].numpy(), full[:, y0 : y0 + h, x0 : x0 + w])
    # the chips of train, val and test come from disjoint images
    images = {s: set(XView(sample.root, s).image_ids) for s in ("train", "val", "test")}
    assert not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    assert not images["train"] & images["val"]


def test_chips_are_read_through_a_window(
    sample: XViewSampleSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    windows: list[Any] = []
    original = rasterio.io.DatasetReader.read

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        windows.append(kwargs.get("window"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    image_id = sample.image_ids[0]
    chip = read_xview_chip(sample.root / "train_images" / image_id, (10, 20, 64, 64))
    assert chip.shape == (3, 64, 64)
    assert len(windows) == 1
    assert windows[0] is not None
    assert (windows[0].width, windows[0].height) == (64, 64)


def test_chip_past_the_image_edge_is_zero_padded(sample: XViewSampleSummary) -> None:
    image_id = sample.image_ids[0]
    width, _height = sample.image_sizes[image_id]
    chip = read_xview_chip(sample.root / "train_images" / image_id, (width - 16, 0, 64, 64))
    assert chip.shape == (3, 64, 64)
    assert chip[:, :, :16].abs().sum() > 0
    assert chip[:, :, 16:].abs().sum() == 0


# -------------------------------------------------------------------------------------- cache


def test_cache_is_reused_without_reading_the_geojson(
    sample_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = XViewChipParams(chip_size=128, crops_per_image=4)
    first = XView(sample_copy, "train", params)
    cache_files = sorted(p.name for p in (sample_copy / ".geossl-cache").iterdir())
    assert len(cache_files) == 2  # labels + random chips

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(xview_labels, "read_xview_geojson", fail)
    monkeypatch.setattr(xview_chips, "build_xview_chips", fail)
    second = XView(sample_copy, "train", params)
    assert len(second) == len(first)
    np.testing.assert_array_equal(second.chips.windows, first.chips.windows)
    np.testing.assert_array_equal(second.chips.boxes, first.chips.boxes)
    np.testing.assert_array_equal(second.chips.labels, first.chips.labels)
    assert second.report == first.report
    torch.testing.assert_close(second[0]["bbox_xyxy"], first[0]["bbox_xyxy"])


def test_cache_is_invalidated_by_new_parameters_and_a_new_geojson(
    sample_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = XViewChipParams(chip_size=128, crops_per_image=4)
    _, chips = load_xview_chips(sample_copy, params)
    calls = {"parse": 0, "chips": 0}
    parse, build = xview_labels.read_xview_geojson, xview_chips.build_xview_chips

    def counting_parse(*args: Any) -> Any:
        calls["parse"] += 1
        return parse(*args)

    def counting_build(*args: Any) -> Any:
        calls["chips"] += 1
        return build(*args)

    monkeypatch.setattr(xview_labels, "read_xview_geojson", counting_parse)
    monkeypatch.setattr(xview_chips, "build_xview_chips", counting_build)
    for changed in (
        XViewChipParams(chip_size=128, crops_per_image=4, seed=1),
        XViewChipParams(chip_size=96, crops_per_image=4),
        XViewChipParams(chip_size=128, crops_per_image=4, max_overlap=0.5),
        XViewChipParams(chip_size=128, crops_per_image=4, min_visibility=0.9),
        XViewChipParams(chip_size=128, crops_per_image=2),
    ):
        _, other = load_xview_chips(sample_copy, changed)
        assert other.key != chips.key
    assert calls == {"parse": 0, "chips": 5}  # labels cached, chips rebuilt
    _, again = load_xview_chips(sample_copy, params)
    assert again.key == chips.key
    assert calls["chips"] == 5

    geojson = sample_copy / "xView_train.geojson"
    stat = geojson.stat()
    os.utime(geojson, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_xview_chips(sample_copy, params)
    assert calls == {"parse": 1, "chips": 6}


def test_unwritable_cache_folder_only_warns(sample_copy: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="cannot write the xView cache"):
        labels = load_xview_labels(sample_copy, cache_dir=blocker / "cache")
    assert labels.report.boxes > 0


# ------------------------------------------------------------------------------------- errors


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


def test_missing_root_geojson_or_images_name_the_path(sample_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_xview_labels(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in one_line(info.value)
    shutil.move(sample_copy / "train_images", tmp_path / "moved")
    with pytest.raises(DatasetNotFoundError) as info:
        load_xview_labels(sample_copy)
    assert str(sample_copy / "train_images") in one_line(info.value)
    (sample_copy / "xView_train.geojson").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        XView(sample_copy)
    assert str(sample_copy / "xView_train.geojson") in one_line(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        ("[1, 2]", "not a GeoJSON FeatureCollection"),
    ],
)
def test_bad_geojson_names_the_file(sample_copy: Path, content: str, problem: str) -> None:
    geojson = sample_copy / "xView_train.geojson"
    geojson.write_text(content)
    with pytest.raises(BadDatasetError, match=problem) as info:
        load_xview_labels(sample_copy)
    assert one_line(info.value).startswith(str(geojson))


def test_no_labelled_image_on_disk_is_an_error(sample_copy: Path) -> None:
    for tif in (sample_copy / "train_images").iterdir():
        tif.unlink()
    with pytest.raises(BadDatasetError, match="none of the images") as info:
        load_xview_labels(sample_copy)
    assert str(sample_copy / "train_images") in one_line(info.value)


def test_unreadable_image_is_skipped_and_counted(sample_copy: Path) -> None:
    victim = sorted((sample_copy / "train_images").iterdir())[0]
    victim.write_bytes(b"not a tiff")
    labels = load_xview_labels(sample_copy)
    assert labels.report.unreadable_images == (victim.name,)
    assert victim.name not in labels.image_ids
    assert labels.report.missing_images == ("1395.tif",)


def test_bad_chip_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_overlap"):
        XViewChipParams(max_overlap=0.0)
    with pytest.raises(ValueError, match="chip mode"):
        XViewChipParams(mode="tiles")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_visibility"):
        XViewChipParams(min_visibility=1.5)
    with pytest.raises(ValueError, match="split"):
        XView("anywhere", "training")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- real data

TREES = REAL_DATA / "trees_osbs"


def test_real_geotiff_with_real_boxes(tmp_path: Path) -> None:
    """A real RGB GeoTIFF (NEON, 0.1 m, LZW, striped) with its 61 real tree boxes, in the xView
    layout (linked, not copied): windowed reads and chip boxes on real data."""
    if not (TREES / "OSBS_029.tif").is_file():
        pytest.skip(f"real sample data not available at {TREES}")
    root = tmp_path / "xview"
    (root / "train_images").mkdir(parents=True)
    (root / "train_images" / "29.tif").symlink_to(TREES / "OSBS_029.tif")
    with (TREES / "OSBS_029.csv").open() as f:
        rows = list(csv.DictReader(f))
    features = [
        feature("29.tif", ",".join(r[k] for k in ("xmin", "ymin", "xmax", "ymax")), 73)
        for r in rows
    ]
    (root / "xView_train.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    labels = load_xview_labels(root)
    assert labels.report.boxes + labels.report.degenerate == len(rows) == 61
    assert tuple(labels.image_sizes[0]) == (400, 400)
    dataset = XView(root, "all", XViewChipParams(mode="grid", chip_size=160))
    assert len(dataset) == 9  # starts 0, 160, 240 on both axes
    with rasterio.open(TREES / "OSBS_029.tif") as src:
        full = src.read().astype(np.float32) / 255
    total = 0
    for index in range(len(dataset)):
        item = dataset[index]
        x0, y0, w, h = (int(v) for v in item["window"])
        np.testing.assert_allclose(item["image"].numpy(), full[:, y0 : y0 + h, x0 : x0 + w])
        boxes = item["bbox_xyxy"]
        assert ((boxes >= 0) & (boxes <= 160)).all()
        total += len(boxes)
    assert total >= labels.report.boxes
    assert math.isclose(float(dataset[0]["image"].max()), float(full[:, :160, :160].max()))
