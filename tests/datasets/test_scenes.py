"""LabelledScenes: labels.csv checked line by line, images read, one-line errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.datasets import BadDatasetError, DatasetNotFoundError, LabelledScenes
from geossl.datasets.scenes import stratified_split
from geossl.synthetic.scenes import generate_scene_sample
from tests.conftest import REAL_DATA


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene_sample(tmp_path_factory.mktemp("scenes") / "s", classes=3, per_class=4)


def _copy(src: Path, dst: Path, labels: str | None = None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if labels is not None:
        (dst / "labels.csv").write_text(labels)
    return dst


def test_reads_images_and_labels(scenes: Path) -> None:
    dataset = LabelledScenes(scenes)
    assert len(dataset) == 12
    assert dataset.classes == ("checks", "rings", "stripes")
    sample = dataset[5]
    assert sample["image"].dtype == torch.uint8
    assert sample["image"].shape == (3, 48, 48)
    assert int(sample["label"]) == dataset.labels[5] == 1
    figure = dataset.plot({**sample, "prediction": torch.tensor(2)})
    assert "prediction: stripes" in figure.axes[0].get_title()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("file,class\n", "the header must be path,class_name,class_idx"),
        ("path,class_name,class_idx\n", "no images listed"),
        (
            "path,class_name,class_idx\nimages/checks/0000.jpg,checks,x\n",
            ":2: class_idx must be an integer",
        ),
        ("path,class_name,class_idx\nimages/checks/0000.jpg,,0\n", ":2: unknown class ''"),
        (
            "path,class_name,class_idx\nimages/checks/0000.jpg,checks,0\nimages/rings/0000.jpg,rings,0\n",
            ":3: class_idx 0 is 'rings' here but 'checks' on line 2",
        ),
        (
            "path,class_name,class_idx\nimages/checks/0000.jpg,checks,0\nimages/checks/0001.jpg,checks,1\n",
            ":3: class 'checks' has class_idx 1 here but 0 on line 2",
        ),
        ("path,class_name,class_idx\nimages/nope.jpg,checks,0\n", ":2: image not found"),
        (
            "path,class_name,class_idx\nimages/checks/0000.jpg,checks,0\nimages/rings/0000.jpg,rings,2\n",
            "class_idx must run over 0..2; no image has [1]",
        ),
        (
            "path,class_name,class_idx\nimages/checks/0000.jpg,checks,0\nimages/checks/0001.jpg,checks,0\n",
            "one class only ('checks')",
        ),
    ],
    ids=["header", "empty", "idx", "name", "two-names", "two-idx", "missing", "gap", "one-class"],
)
def test_bad_labels_are_one_line_errors(
    scenes: Path, tmp_path: Path, labels: str, message: str
) -> None:
    root = _copy(scenes, tmp_path / "bad", labels)
    with pytest.raises(BadDatasetError, match=r"labels\.csv") as excinfo:
        LabelledScenes(root)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_missing_folder_or_labels(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="scene folder does not exist"):
        LabelledScenes(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match=r"no labels\.csv in the scene folder"):
        LabelledScenes(tmp_path)


def test_unreadable_image_names_the_file(scenes: Path, tmp_path: Path) -> None:
    root = _copy(scenes, tmp_path / "corrupt")
    (root / "images" / "rings" / "0002.jpg").write_bytes(b"not a jpeg at all")
    dataset = LabelledScenes(root)
    with pytest.raises(BadDatasetError, match=r"rings/0002\.jpg: unreadable image"):
        dataset[6]


def test_geotiff_scenes_keep_their_bands(tmp_path: Path) -> None:
    import numpy as np
    import rasterio

    root = tmp_path / "tif"
    root.mkdir()
    rows = ["path,class_name,class_idx"]
    for i in range(2):
        with rasterio.open(
            root / f"{i}.tif",
            "w",
            driver="GTiff",
            width=8,
            height=6,
            count=4,
            dtype="uint16",
            crs="EPSG:32633",
            transform=rasterio.transform.from_origin(500000, 4000000, 10, 10),
        ) as dst:
            dst.write(np.full((4, 6, 8), 1000 * (i + 1), dtype=np.uint16))
        rows.append(f"{i}.tif,c{i},{i}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    sample = LabelledScenes(root)[1]
    assert sample["image"].dtype == torch.float32
    assert sample["image"].shape == (4, 6, 8)
    assert float(sample["image"][0, 0, 0]) == 2000.0


@pytest.mark.skipif(
    not (REAL_DATA / "siri_whu" / "labels.csv").is_file(),
    reason="the real SIRI-WHU scenes are not in ../shared/data/real/siri_whu",
)
def test_reads_the_real_siri_whu_folder() -> None:
    dataset = LabelledScenes(REAL_DATA / "siri_whu")
    assert len(dataset) == 2393
    assert len(dataset.classes) == 12
    assert dataset.classes[0] == "agriculture"
    assert dataset[0]["image"].shape == (3, 200, 200)


def test_stratified_split_is_seeded_disjoint_and_per_class() -> None:
    labels = [0] * 10 + [1] * 20 + [2] * 5
    parts = stratified_split(labels, seed=1)
    assert parts == stratified_split(labels, seed=1)
    assert parts != stratified_split(labels, seed=2)
    every = sorted(parts["train"] + parts["val"] + parts["test"])
    assert every == list(range(len(labels)))
    counts = {
        name: np.bincount(np.asarray(labels)[idx], minlength=3).tolist()
        for name, idx in parts.items()
    }
    assert counts == {"train": [6, 12, 3], "val": [2, 4, 1], "test": [2, 4, 1]}
    with pytest.raises(ValueError, match="class 1 has 2 image"):
        stratified_split([0, 0, 0, 1, 1])
