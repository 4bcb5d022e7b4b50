"""The seeded xView sample: real layout and fields, GeoTIFFs, visible objects, defects, seeds."""

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geossl.datasets.xview import XVIEW_TYPE_TO_LABEL, load_xview_labels
from geossl.synthetic.xview import XViewSampleSummary, generate_xview_sample
from tests.xview_helpers import shared_xview_sample

PROPERTIES = {
    "bounds_imcoords",
    "edited_by",
    "cat_id",
    "type_id",
    "ingest_time",
    "index_right",
    "image_id",
    "point_geom",
    "feature_id",
    "grade",
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> XViewSampleSummary:
    return shared_xview_sample(tmp_path_factory)


def features_of(sample: XViewSampleSummary) -> list[dict[str, Any]]:
    data = json.loads(sample.geojson.read_text())
    assert data["type"] == "FeatureCollection"
    return list(data["features"])


def test_real_layout_and_feature_fields(sample: XViewSampleSummary) -> None:
    root = sample.root
    # Hidden entries are caches that other tests of the shared sample may have written.
    visible = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert visible == ["train_images", "xView_train.geojson"]
    tifs = sorted(p.name for p in (root / "train_images").iterdir())
    assert tifs == sorted(sample.image_ids)
    assert all(re.fullmatch(r"[1-9]\d*\.tif", name) for name in tifs)
    assert "1395.tif" not in tifs
    features = features_of(sample)
    assert len(features) == sample.num_features
    for f in features:
        assert f["type"] == "Feature"
        assert f["geometry"]["type"] == "Polygon"
        props = f["properties"]
        assert set(props) == PROPERTIES
        assert re.fullmatch(r"-?\d+,-?\d+,-?\d+,-?\d+", props["bounds_imcoords"])
        assert isinstance(props["type_id"], int)
        assert 11 <= props["type_id"] <= 94
        assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}\+00", props["ingest_time"])
        assert props["point_geom"].startswith("0101000020E6100000")  # EWKB point, SRID 4326
    named = {f["properties"]["image_id"] for f in features}
    assert named == {*sample.image_ids, "1395.tif"}
    assert sample.missing_image_ids == ("1395.tif",)


def test_geotiffs_are_georeferenced_rgb_at_0p3_m(sample: XViewSampleSummary) -> None:
    features = features_of(sample)
    for image_id in sample.image_ids:
        with rasterio.open(sample.root / "train_images" / image_id) as src:
            assert src.count == 3
            assert src.dtypes == ("uint8", "uint8", "uint8")
            assert src.crs.to_epsg() == 4326
            assert (src.width, src.height) == sample.image_sizes[image_id]
            assert 0.75 * 256 <= src.width <= 256
            # ~0.3 m: the pixel height in degrees of latitude
            assert src.transform.e * -111_320 == pytest.approx(0.3, rel=1e-6)
            transform = src.transform
        # feature geometry = the pixel box through the image transform
        f = next(f for f in features if f["properties"]["image_id"] == image_id)
        x0, y0, x1, y1 = (int(v) for v in f["properties"]["bounds_imcoords"].split(","))
        ring = np.array(f["geometry"]["coordinates"][0])
        want = np.array([transform @ (x, y) for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]])
        np.testing.assert_allclose(ring[:4], want, atol=1e-8)


def test_every_valid_box_marks_a_visible_object(sample: XViewSampleSummary) -> None:
    colours: dict[int, list[np.ndarray]] = {}
    images: dict[str, np.ndarray] = {}
    for f in features_of(sample):
        props = f["properties"]
        image_id, type_id = props["image_id"], props["type_id"]
        if image_id not in sample.image_ids or type_id not in XVIEW_TYPE_TO_LABEL:
            continue
        if image_id not in images:
            with rasterio.open(sample.root / "train_images" / image_id) as src:
                images[image_id] = src.read().astype(np.float32)
        pixels = images[image_id]
        height, width = pixels.shape[1:]
        x0, y0, x1, y1 = (int(v) for v in props["bounds_imcoords"].split(","))
        if x1 <= x0 or y1 <= y0 or x0 >= width:
            continue  # the defects
        x1, y1 = min(x1, width), min(y1, height)
        inside = pixels[:, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].reshape(3, -1)
        ring = np.concatenate(
            [
                pixels[:, max(y0 - 4, 0) : y0, x0:x1].reshape(3, -1),
                pixels[:, y0:y1, max(x0 - 4, 0) : x0].reshape(3, -1),
            ],
            axis=1,
        )
        # bright and uniform inside, clearly different from the surroundings
        assert inside.std(axis=1).max() < 2.0
        assert inside.max(axis=0).mean() > 200
        assert np.abs(inside.mean(axis=1) - ring.mean(axis=1)).max() > 60
        colours.setdefault(type_id, []).append(inside.mean(axis=1))
    assert set(colours) == set(sample.type_ids)
    means = {t: np.mean(c, axis=0) for t, c in colours.items()}
    for t, c in colours.items():
        assert np.abs(np.array(c) - means[t]).max() < 2.0  # one colour per class
    ordered = list(means.values())
    for i in range(len(ordered)):
        for j in range(i + 1, len(ordered)):
            assert np.abs(ordered[i] - ordered[j]).max() > 60  # distinct colours


def test_summary_matches_what_the_reader_counts(sample: XViewSampleSummary) -> None:
    report = load_xview_labels(sample.root, cache_dir=sample.root.parent / "cache").report
    assert report.boxes == sample.num_objects
    assert sum(sample.objects_per_type.values()) == sample.num_objects
    assert (report.degenerate, report.outside_image) == (2, 1)
    assert (report.unknown_type, report.clipped, report.features_without_image) == (2, 2, 3)


def test_same_seed_same_bytes_other_seed_other_files(tmp_path: Path) -> None:
    args: dict[str, Any] = {"images": 2, "image_size": 96}
    a = generate_xview_sample(tmp_path / "a", seed=1, **args)
    b = generate_xview_sample(tmp_path / "b", seed=1, **args)
    c = generate_xview_sample(tmp_path / "c", seed=2, **args)
    assert a.geojson.read_bytes() == b.geojson.read_bytes()
    assert a.image_ids == b.image_ids
    for image_id in a.image_ids:
        path = Path("train_images") / image_id
        assert (a.root / path).read_bytes() == (b.root / path).read_bytes()
    assert a.geojson.read_bytes() != c.geojson.read_bytes()


def test_overwrite_and_bad_arguments(tmp_path: Path) -> None:
    root = tmp_path / "sample"
    generate_xview_sample(root, images=1, image_size=64)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_xview_sample(root, images=1, image_size=64)
    again = generate_xview_sample(root, images=2, image_size=64, overwrite=True, seed=5)
    assert len(list((root / "train_images").iterdir())) == 2 == len(again.image_ids)
    assert (root / "notes.txt").read_text() == "mine"  # unrelated files survive
    with pytest.raises(ValueError, match="images"):
        generate_xview_sample(tmp_path / "x", images=0)
    with pytest.raises(ValueError, match="image_size"):
        generate_xview_sample(tmp_path / "x", image_size=32)
    with pytest.raises(ValueError, match="type_ids"):
        generate_xview_sample(tmp_path / "x", type_ids=[14])
