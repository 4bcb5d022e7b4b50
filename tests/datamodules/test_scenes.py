"""ScenesDataModule: MoCo-v2 pairs of one image from a folder, a held-out probe split, bad files."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from geossl.cli.pretrain_cli import build_args, run_pretrain
from geossl.datamodules import ScenesDataModule
from geossl.datamodules.scenes import find_scene_images
from geossl.datasets import BadDatasetError, DatasetNotFoundError
from geossl.datasets.scenes import read_scene_labels, stratified_split
from geossl.synthetic.scenes import generate_scene_sample

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene_sample(tmp_path_factory.mktemp("scenes") / "s", classes=3, per_class=6)


def test_batches_are_two_copies_of_one_resized_image(scenes: Path) -> None:
    dm = ScenesDataModule(scenes, image_size=32, batch_size=4)
    assert dm.in_chans == 3  # known before setup, as the CLI's link needs
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 2, 3, 32, 32)
    assert batch["image"].dtype == torch.uint8
    torch.testing.assert_close(batch["image"][:, 0], batch["image"][:, 1])
    assert len(dm.train_dataset) == 18  # type: ignore[arg-type]
    assert dm.pairs_share_canvas


def test_holdout_leaves_out_exactly_the_probe_test_split(scenes: Path) -> None:
    paths, labels, _ = read_scene_labels(scenes)
    test = {scenes / paths[i] for i in stratified_split(labels, seed=3)["test"]}
    kept = find_scene_images(scenes, holdout_seed=3)
    assert len(kept) == len(paths) - len(test)
    assert not test & set(kept)
    with pytest.raises(ValueError, match=r"holdout_seed needs .*labels.csv"):
        find_scene_images(scenes / "images", holdout_seed=0)


def test_a_folder_without_labels_is_searched_recursively(scenes: Path) -> None:
    found = find_scene_images(scenes / "images")
    assert len(found) == 18
    assert all(p.suffix == ".jpg" for p in found)


def test_band_statistics_match_a_direct_computation(scenes: Path) -> None:
    dm = ScenesDataModule(scenes, image_size=24, batch_size=4)
    mean, std = dm.band_statistics(num_samples=1000)
    images = dm.train_dataset.images.double() / 255.0  # type: ignore[union-attr]
    np.testing.assert_allclose(mean, images.mean(dim=(0, 2, 3)).numpy(), rtol=1e-9)
    np.testing.assert_allclose(std, images.std(dim=(0, 2, 3), correction=0).numpy(), rtol=1e-9)


def test_unreadable_images_are_skipped_and_counted_until_too_many(
    scenes: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(scenes / "images", tmp_path / "images")
    bad = sorted(folder.rglob("*.jpg"))[0]
    bad.write_bytes(b"not a jpeg")
    dm = ScenesDataModule(folder, image_size=16, batch_size=2, max_bad_fraction=0.1)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image"):
        dm.setup("fit")
    assert list(dm.skipped) == [str(bad)]
    assert len(dm.train_dataset) == 17  # type: ignore[arg-type]
    strict = ScenesDataModule(folder, image_size=16, batch_size=2, max_bad_fraction=0.0)
    with pytest.raises(BadDatasetError, match=r"1 of 18 images unreadable .*not a jpeg|1 of 18"):
        strict.setup("fit")


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"scene folder does not exist"):
        ScenesDataModule(tmp_path / "absent").setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"no labels.csv and no image"):
        ScenesDataModule(tmp_path / "empty").setup("fit")
    gray16 = tmp_path / "deep"
    gray16.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(gray16 / "a.tif")
    with pytest.raises(BadDatasetError, match=r"a.tif: .*8-bit"):
        ScenesDataModule(gray16).setup("fit")
    with pytest.raises(ValueError, match=r"data.image_size must be at least 1"):
        ScenesDataModule(tmp_path, image_size=0)


def test_pretrain_cli_trains_on_a_scene_folder_and_refuses_geo(
    scenes: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load((REPO / "tests" / "conf" / "fmow_tiny.yaml").read_text())
    del config["data"]  # fMoW's options
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    common = [
        *build_args(["--config", str(tmp_path / "tiny.yaml")], "scenes"),  # --dataset scenes
        "--data.root",
        str(scenes),
        "--data.image_size",
        "40",
        "--data.batch_size",
        "4",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.max_steps",
        "2",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = run_pretrain(
            [
                *common,
                "--model.losses",
                "{moco: 1.0, co2: 1.0, scrl: 1.0}",
                "--model.loss_options",
                "{scrl: {min_size: 8}}",
            ]
        )
    assert cli.trainer.global_step == 2
    assert cli.model.hparams["in_chans"] == 3
    with pytest.raises(ValueError, match=r"num_geo_clusters must be >= 2 .* got 0 .*no locations"):
        run_pretrain([*common, "--model.losses", "{moco: 1.0, geo: 1.0}"])
