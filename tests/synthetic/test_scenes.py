"""The seeded scene sample: SIRI-WHU's layout, the same files for the same seed."""

import hashlib
from pathlib import Path

import pytest

from geossl.datasets.scenes import read_scene_labels
from geossl.synthetic.scenes import generate_scene_sample


def _digest(root: Path) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_layout_and_labels(tmp_path: Path) -> None:
    root = generate_scene_sample(tmp_path / "s", classes=4, per_class=3, size=16)
    paths, labels, classes = read_scene_labels(root)
    assert classes == ["blobs", "checks", "rings", "stripes"]  # alphabetical, as SIRI-WHU's
    assert paths[0] == "images/blobs/0000.jpg"
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_seeded_and_overwrite(tmp_path: Path) -> None:
    first = _digest(generate_scene_sample(tmp_path / "a", seed=3, per_class=3))
    assert _digest(generate_scene_sample(tmp_path / "b", seed=3, per_class=3)) == first
    assert _digest(generate_scene_sample(tmp_path / "c", seed=4, per_class=3)) != first
    with pytest.raises(FileExistsError, match="not empty"):
        generate_scene_sample(tmp_path / "a")
    (tmp_path / "a" / "mine.txt").write_text("kept")
    generate_scene_sample(tmp_path / "a", seed=3, per_class=3, overwrite=True)
    assert (tmp_path / "a" / "mine.txt").read_text() == "kept"


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"classes must be in 2\.\.6"):
        generate_scene_sample(tmp_path / "x", classes=1)
    with pytest.raises(ValueError, match="per_class >= 3"):
        generate_scene_sample(tmp_path / "x", per_class=2)
