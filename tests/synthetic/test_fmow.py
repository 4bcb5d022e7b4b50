"""Tests of the seeded fMoW sample generator (layout, metadata, determinism, pixels, GeoTIFFs)."""

from __future__ import annotations

import bz2
import json
import math
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from geossl.datasets.fmow.constants import FMOW_CATEGORIES, FMOW_SPLITS
from geossl.synthetic.fmow import FMoWSampleSummary, generate_fmow_sample

CAT = "|".join(re.escape(c) for c in FMOW_CATEGORIES)
RE_TRAIN = re.compile(rf"^(train|val)/({CAT})/\2_(\d+)/\2_\3_(\d+)_(rgb|msrgb)\.(jpg|json)$")
RE_ANON = re.compile(r"^(test|seq)/(\d{7})/\2_(\d+)_(rgb|msrgb)\.(jpg|json)$")
RE_GT = re.compile(rf"^(test|seq)_gt/({CAT})/\2_(\d+)/\2_\3_(\d+)_(rgb|msrgb)\.json$")
RE_FULL_TRAIN = re.compile(rf"^(train|val)/({CAT})/\2_(\d+)/\2_\3_(\d+)_(rgb|ms)\.(tif|json)$")
RE_FULL_ANON = re.compile(r"^(test|seq)/(\d{7})/\2_(\d+)_(rgb|ms)\.(tif|json)$")
RE_FULL_GT = re.compile(rf"^(test|seq)_gt/({CAT})/\2_(\d+)/\2_\3_(\d+)_(rgb|ms)\.json$")

FIELDS = {
    "gsd",
    "img_width",
    "img_height",
    "country_code",
    "cloud_cover",
    "timestamp",
    "scan_direction",
    "approximate_wavelengths",
    "sun_azimuth_dbl",
    "sun_elevation_dbl",
    "utm",
    "spatial_reference",
    "abs_cal_factors",
    "mean_pixel_height",
    "mean_pixel_width",
    "img_filename",
    "raw_location",
    "bounding_boxes",
} | {
    f"{name}{suffix}_dbl"
    for name in ("pan_resolution", "multi_resolution", "target_azimuth", "off_nadir_angle")
    for suffix in ("", "_start", "_end", "_min", "_max")
}

UTM_BANDS = "CDEFGHJKLMNPQRSTUVWXX"


def manifest(root: Path) -> list[str]:
    entries = json.loads(bz2.decompress((root / "manifest.json.bz2").read_bytes()))
    assert isinstance(entries, list)
    return [str(e) for e in entries]


def centroid(wkt: str) -> tuple[float, float]:
    m = re.fullmatch(r"POLYGON \(\((.*)\)\)", wkt)
    assert m, wkt
    pts = [tuple(map(float, p.split())) for p in m.group(1).split(", ")]
    assert len(pts) == 5
    assert pts[0] == pts[-1]
    lons = [p[0] for p in pts[:-1]]
    lats = [p[1] for p in pts[:-1]]
    return sum(lats) / 4, sum(lons) / 4


def load(root: Path, rel: str) -> dict[str, Any]:
    data = json.loads((root / rel).read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> FMoWSampleSummary:
    root = tmp_path_factory.mktemp("fmow") / "rgb"
    return generate_fmow_sample(root, locations=14, seed=3, image_size=(48, 96))


@pytest.fixture(scope="module")
def full_sample(tmp_path_factory: pytest.TempPathFactory) -> FMoWSampleSummary:
    root = tmp_path_factory.mktemp("fmow") / "full"
    return generate_fmow_sample(root, locations=6, seed=1, image_size=(32, 64), full=True)


def test_summary(sample: FMoWSampleSummary) -> None:
    assert sample.num_locations == 14
    assert sum(sample.locations_per_split.values()) == 14
    assert set(sample.images_per_split) == set(FMOW_SPLITS)
    for split in FMOW_SPLITS:
        assert sample.locations_per_split[split] >= 1
    assert sample.num_images == sum(sample.images_per_split.values())
    assert 14 * 2 <= sample.num_images <= 14 * 5
    assert sample.categories == FMOW_CATEGORIES[:14]
    assert sample.num_files == len(manifest(sample.root))


def test_layout_names(sample: FMoWSampleSummary) -> None:
    root = sample.root
    paths = manifest(root)
    top = {"train_gt_mapping.json", "test_gt_mapping.json", "seq_gt_mapping.json"}
    per_loc: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for p in paths:
        if p in top:
            assert p != "train_gt_mapping.json"
            continue
        m = RE_TRAIN.match(p) or RE_ANON.match(p) or RE_GT.match(p)
        assert m, f"unexpected path {p}"
        if m.re is RE_TRAIN:
            per_loc[(m.group(1), m.group(2), "train")].add(int(m.group(3)))
        elif m.re is RE_GT:
            per_loc[(m.group(1), m.group(2), "gt")].add(int(m.group(3)))
    # location numbers per category per split start at 0 and are contiguous
    for numbers in per_loc.values():
        assert numbers == set(range(len(numbers)))
    # every image has its JSON beside it, and both products exist for every t
    images = {p for p in paths if p.endswith(".jpg")}
    for img in images:
        assert img[:-4] + ".json" in paths
        other = (
            img.replace("_msrgb.jpg", "_rgb.jpg") if "_msrgb" in img else img[:-8] + "_msrgb.jpg"
        )
        assert other in images
    # t runs 0..n-1 within each location folder
    by_dir: dict[str, set[int]] = defaultdict(set)
    for img in images:
        folder, name = img.rsplit("/", 1)
        by_dir[folder].add(int(name.split("_")[-2]))
    for ts in by_dir.values():
        assert ts == set(range(len(ts)))
    assert {p.split("/")[0] for p in images} == set(FMOW_SPLITS)


def test_manifest_lists_exactly_the_files(sample: FMoWSampleSummary) -> None:
    root = sample.root
    on_disk = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != "manifest.json.bz2"
    }
    listed = manifest(root)
    assert len(listed) == len(set(listed))
    assert set(listed) == on_disk
    assert not [p for p in on_disk if p.endswith(".tmp")]


def test_json_fields(sample: FMoWSampleSummary) -> None:
    root = sample.root
    for rel in manifest(root):
        if not rel.endswith(".json") or rel.endswith("_mapping.json"):
            continue
        meta = load(root, rel)
        missing = FIELDS - set(meta)
        assert not missing, f"{rel}: missing {missing}"
        assert isinstance(meta["cloud_cover"], int)
        assert 0 <= meta["cloud_cover"] <= 100
        ts = datetime.strptime(meta["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        assert 2002 <= ts.year <= 2017
        assert meta["spatial_reference"] == "WGS84"
        assert meta["scan_direction"] in {"Forward", "Reverse"}
        assert len(meta["approximate_wavelengths"]) == 8
        assert len(meta["abs_cal_factors"]) == 8
        assert meta["gsd"] > 0
        for name in ("pan_resolution", "off_nadir_angle", "target_azimuth", "multi_resolution"):
            assert meta[f"{name}_min_dbl"] <= meta[f"{name}_dbl"] <= meta[f"{name}_max_dbl"]
        lat, lon = centroid(meta["raw_location"])
        zone = math.floor((lon + 180) / 6) % 60 + 1
        assert meta["utm"] == f"{zone}{UTM_BANDS[math.floor((lat + 80) / 8)]}"
        assert meta["img_filename"] == rel.rsplit("/", 1)[1][:-5] + ".jpg"
        boxes = meta["bounding_boxes"]
        assert boxes
        x, y, w, h = boxes[0]["box"]
        assert w > 0
        assert h > 0
        assert 0 <= x <= x + w <= meta["img_width"]
        assert 0 <= y <= y + h <= meta["img_height"]
        assert isinstance(boxes[0]["ID"], int)
        if rel.startswith(("test/", "seq/")):
            assert all("category" not in b for b in boxes), rel
        else:
            category = rel.split("/")[1]
            assert all(b["category"] == category for b in boxes), rel
        img = root / (rel[:-5] + ".jpg")
        if img.exists():
            with Image.open(img) as im:
                assert im.size == (meta["img_width"], meta["img_height"])
                assert im.mode == "RGB"


def test_mapping_consistent(sample: FMoWSampleSummary) -> None:
    root = sample.root
    for split in ("test", "seq"):
        entries = json.loads((root / f"{split}_gt_mapping.json").read_text())
        assert len(entries) == sample.locations_per_split[split]
        assert len({e["output"] for e in entries}) == len(entries)
        for e in entries:
            assert set(e) == {"input", "output"}
            assert re.fullmatch(rf"{split}_gt/({CAT})/\1_\d+", e["input"]), e
            assert re.fullmatch(rf"{split}/\d{{7}}", e["output"]), e
            gt, out = root / e["input"], root / e["output"]
            assert gt.is_dir()
            assert out.is_dir()
            category = e["input"].split("/")[1]
            out_id = e["output"].split("/")[1]
            for img_json in sorted(out.glob("*.json")):
                t, product = img_json.stem.split("_")[1:]
                gt_json = gt / f"{gt.name}_{t}_{product}.json"
                gt_meta, meta = (
                    load(root, str(gt_json.relative_to(root))),
                    load(root, str(img_json.relative_to(root))),
                )
                assert meta["img_filename"] == f"{out_id}_{t}_{product}.jpg"
                assert gt_meta["bounding_boxes"][0]["category"] == category
                assert gt_meta["bounding_boxes"][0]["box"] == meta["bounding_boxes"][0]["box"]
                assert gt_meta["timestamp"] == meta["timestamp"]


def _locations(root: Path) -> dict[str, list[dict[str, Any]]]:
    """rgb JSONs grouped by location folder, ordered by t."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rel in sorted(manifest(root)):
        if rel.endswith("_rgb.json") and not rel.startswith(("test_gt", "seq_gt")):
            folder, name = rel.rsplit("/", 1)
            out[folder].append({"t": int(name.split("_")[-2]), "rel": rel, **load(root, rel)})
    for metas in out.values():
        metas.sort(key=lambda m: m["t"])
    return out


def test_timestamps_distinct_and_t_not_time_order(sample: FMoWSampleSummary) -> None:
    locs = _locations(sample.root)
    shuffled = 0
    for metas in locs.values():
        times = [m["timestamp"] for m in metas]
        assert len(set(times)) == len(times)
        years = {int(t[:4]) for t in times}
        if len(times) >= 3:
            assert len(years) >= 2
        shuffled += times != sorted(times)
    assert shuffled >= 1


def test_lat_lon_spread(sample: FMoWSampleSummary) -> None:
    root = generate_fmow_sample(
        sample.root.parent / "spread",
        locations=33,
        seed=5,
        image_size=(16, 16),
        images_per_location=(1, 1),
    ).root
    centres = []
    for metas in _locations(root).values():
        pts = [centroid(m["raw_location"]) for m in metas]
        lat, lon = pts[0]
        # every acquisition of a location is at the same place (within a few tens of metres)
        for la, lo in pts:
            assert abs(la - lat) < 1e-3
            assert abs(lo - lon) < 1e-3
        centres.append((lat, lon))
    assert len({(round(a, 4), round(b, 4)) for a, b in centres}) == len(centres)
    cells = {(math.floor(lat / 20), math.floor(lon / 30)) for lat, lon in centres}
    assert len(cells) >= 6
    assert any(lat < -10 for lat, _ in centres)
    assert any(lat > 30 for lat, _ in centres)
    assert any(abs(lon) > 170 for _, lon in centres)  # near the antimeridian (Fiji / New Zealand)


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"locations": 6, "image_size": (24, 40)}
    a = generate_fmow_sample(tmp_path / "a", seed=7, **kwargs).root
    b = generate_fmow_sample(tmp_path / "b", seed=7, **kwargs).root
    c = generate_fmow_sample(tmp_path / "c", seed=8, **kwargs).root
    files_a, files_b = manifest(a), manifest(b)
    assert files_a == files_b
    assert (a / "manifest.json.bz2").read_bytes() == (b / "manifest.json.bz2").read_bytes()
    for rel in files_a:
        if rel.endswith(".json"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        else:
            assert np.array_equal(
                np.asarray(Image.open(a / rel)), np.asarray(Image.open(b / rel))
            ), rel
    files_c = manifest(c)
    common = [r for r in set(files_a) & set(files_c) if r.endswith("_rgb.json")]
    differ = files_a != files_c or any((a / r).read_bytes() != (c / r).read_bytes() for r in common)
    assert differ


def _box_colour(root: Path, meta: dict[str, Any]) -> np.ndarray:
    x, y, w, h = meta["bounding_boxes"][0]["box"]
    img = np.asarray(Image.open(root / (meta["rel"][:-5] + ".jpg")), dtype=np.float64)
    crop = img[y : y + h, x : x + w]
    return np.concatenate([crop.mean(axis=(0, 1)), crop.std(axis=(0, 1))])


def test_categories_differ_more_than_dates(tmp_path: Path) -> None:
    root = generate_fmow_sample(
        tmp_path / "s",
        locations=16,
        seed=2,
        image_size=(64, 64),
        images_per_location=(4, 4),
        split_fractions={"train": 1.0},
    ).root
    feats = {k: np.stack([_box_colour(root, m) for m in v]) for k, v in _locations(root).items()}
    assert len(feats) == 16
    within = np.mean(
        [np.linalg.norm(f - np.median(f, axis=0), axis=1).mean() for f in feats.values()]
    )
    centres = np.stack([np.median(f, axis=0) for f in feats.values()])
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    between = d[np.triu_indices(len(centres), 1)].mean()
    assert between > 1.5 * within


def test_dates_change_pixels(sample: FMoWSampleSummary) -> None:
    root = sample.root
    for metas in _locations(root).values():
        if len(metas) >= 2:
            a = np.asarray(Image.open(root / (metas[0]["rel"][:-5] + ".jpg")), dtype=np.int16)
            b = np.asarray(Image.open(root / (metas[1]["rel"][:-5] + ".jpg")), dtype=np.int16)
            if a.shape == b.shape:
                assert np.abs(a - b).mean() > 1.0
            return
    pytest.fail("no location with two images")


def test_full_geotiffs(full_sample: FMoWSampleSummary) -> None:
    import rasterio
    from pyproj import Transformer

    root = full_sample.root
    paths = manifest(root)
    for p in paths:
        if not p.endswith("_mapping.json"):
            assert RE_FULL_TRAIN.match(p) or RE_FULL_ANON.match(p) or RE_FULL_GT.match(p), p
    tifs = [p for p in paths if p.endswith(".tif")]
    assert tifs
    assert not [p for p in paths if p.endswith(".jpg")]
    for rel in tifs:
        meta = load(root, rel[:-4] + ".json")
        assert meta["img_filename"] == rel.rsplit("/", 1)[1]
        lat, lon = centroid(meta["raw_location"])
        zone = int(meta["utm"][:-1])
        epsg = (32600 if lat >= 0 else 32700) + zone
        with rasterio.open(root / rel) as src:
            assert src.crs is not None
            assert src.crs.to_epsg() == epsg
            assert (src.width, src.height) == (meta["img_width"], meta["img_height"])
            assert src.transform.a > 0
            assert src.transform.e < 0
            assert src.transform.b == 0
            assert abs(src.transform.a - meta["gsd"]) / meta["gsd"] < 0.2
            east, north = Transformer.from_crs(
                "EPSG:4326", f"EPSG:{epsg}", always_xy=True
            ).transform(lon, lat)
            left, bottom, right, top = src.bounds
            assert left < east < right
            assert bottom < north < top
            data = src.read()
            if rel.endswith("_ms.tif"):
                assert src.count == 8
                assert data.dtype == np.uint16
                assert data.max() <= 2047
            else:
                assert src.count == 3
                assert data.dtype == np.uint8


def test_refuses_non_empty_output(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_fmow_sample(out, locations=2, image_size=(16, 16))
    s1 = generate_fmow_sample(out, locations=4, image_size=(16, 16), overwrite=True)
    s2 = generate_fmow_sample(out, locations=2, image_size=(16, 16), overwrite=True)
    assert (out / "keep.txt").read_text() == "x"
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {*manifest(out), "manifest.json.bz2", "keep.txt"}
    assert s2.num_locations == 2
    assert s1.num_files > s2.num_files
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        generate_fmow_sample(tmp_path / "f", locations=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"locations": 0}, "locations"),
        ({"images_per_location": (3, 2)}, "images_per_location"),
        ({"image_size": (8, 32)}, "image_size"),
        ({"split_fractions": {"train": 1.0, "bogus": 1.0}}, "unknown splits"),
        ({"split_fractions": {"train": -1.0}}, "split_fractions"),
        ({"categories": ["airport", "not_a_category"]}, "not_a_category"),
        ({"categories": []}, "categories"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_fmow_sample(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_categories_argument_and_fractions(tmp_path: Path) -> None:
    s = generate_fmow_sample(
        tmp_path / "c",
        locations=5,
        categories=["storage_tank", "airport"],
        split_fractions={"train": 1.0},
        image_size=(16, 16),
    )
    assert s.categories == ("airport", "storage_tank")
    assert s.locations_per_split == {"train": 5, "val": 0, "test": 0, "seq": 0}
    cats = {p.split("/")[1] for p in manifest(s.root)}
    assert cats == {"airport", "storage_tank"}
