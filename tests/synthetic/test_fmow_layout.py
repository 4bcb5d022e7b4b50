"""The fMoW sample's file layout: the location plan, the folders, the files and the manifest."""

import bz2
import json
from pathlib import Path

import numpy as np

from geossl.datasets.fmow.constants import FMOW_SPLITS
from geossl.synthetic.common import _split_counts
from geossl.synthetic.fmow_layout import _LocationFolders, _plan_locations, _SampleFiles

FRACTIONS = {"train": 0.5, "val": 0.2, "test": 0.15, "seq": 0.15}


def test_plan_follows_the_split_counts_and_numbers_locations() -> None:
    plan = _plan_locations(20, np.random.default_rng(0), FRACTIONS, ("airport", "dam"))
    counts = _split_counts(20, FRACTIONS)
    assert {s: sum(L.split == s for L in plan) for s in FMOW_SPLITS} == counts
    assert [L.category for L in plan] == ["airport", "dam"] * 10
    for split in ("test", "seq"):  # the anonymous splits: 7-digit ids, a permutation
        ids = sorted(L.anon_id for L in plan if L.split == split)
        assert ids == list(range(counts[split]))
    assert all(L.anon_id == -1 for L in plan if L.split in ("train", "val"))
    for split in FMOW_SPLITS:
        for category in ("airport", "dam"):
            locs = [L.loc for L in plan if (L.split, L.category) == (split, category)]
            assert locs == list(range(len(locs)))
    assert all(-179.98 <= L.lon <= 179.98 and -90 < L.lat < 90 for L in plan)
    again = _plan_locations(20, np.random.default_rng(0), FRACTIONS, ("airport", "dam"))
    assert [L.seed for L in again] == [L.seed for L in plan]


def test_folders_of_named_and_anonymous_splits() -> None:
    plan = _plan_locations(8, np.random.default_rng(1), FRACTIONS, ("dam",))
    named = next(L for L in plan if L.split == "train")
    folders = _LocationFolders.of(named)
    assert folders.images == f"train/dam/dam_{named.loc}"
    assert folders.stem == f"dam_{named.loc}"
    assert folders.ground_truth == ""
    anonymous = next(L for L in plan if L.split == "test")
    folders = _LocationFolders.of(anonymous)
    assert folders.images == f"test/{anonymous.anon_id:07d}"
    assert folders.stem == f"{anonymous.anon_id:07d}"
    assert folders.ground_truth == f"test_gt/dam/dam_{anonymous.loc}"


def test_files_of_an_anonymous_location_and_the_manifest(tmp_path: Path) -> None:
    plan = _plan_locations(8, np.random.default_rng(1), FRACTIONS, ("dam",))
    location = next(L for L in plan if L.split == "seq")
    folders = _LocationFolders.of(location)
    files = _SampleFiles(tmp_path)
    files.add_location(location, folders)
    name = f"{folders.stem}_0_rgb"
    box = {"box": [1, 2, 3, 4], "category": "dam", "ID": 7}
    files.write_image_json(
        location, folders, name, {"img_filename": f"{name}.jpg", "bounding_boxes": [box]}
    )
    manifest = files.finish()
    image_json = json.loads((tmp_path / folders.images / f"{name}.json").read_text())
    assert image_json["bounding_boxes"] == [{"box": [1, 2, 3, 4], "ID": 7}]  # no category
    gt_name = f"dam_{location.loc}_0_rgb"
    gt_json = json.loads((tmp_path / folders.ground_truth / f"{gt_name}.json").read_text())
    assert gt_json["bounding_boxes"] == [box]
    assert gt_json["img_filename"] == f"{gt_name}.jpg"
    mapping = json.loads((tmp_path / "seq_gt_mapping.json").read_text())
    assert mapping == [{"input": folders.ground_truth, "output": folders.images}]
    listed = json.loads(bz2.decompress((tmp_path / "manifest.json.bz2").read_bytes()))
    assert listed == manifest == sorted(manifest)
    assert "manifest.json.bz2" not in listed
    assert f"{folders.images}/{name}.json" in listed
