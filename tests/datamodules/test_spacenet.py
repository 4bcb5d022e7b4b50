"""SpaceNetDataModule: seeded tile split, train crops / augmentation, padded evaluation batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from geossl.datamodules.spacenet import (
    SpaceNetDataModule,
    _TrainTransform,
    pad_collate,
    split_tiles,
)
from geossl.datasets.errors import DatasetNotFoundError
from geossl.datasets.spacenet import IGNORE_INDEX
from geossl.synthetic.spacenet import SpaceNetSampleSummary, generate_spacenet_sample
from geossl.transforms.targets import TargetAugmentation


@pytest.fixture(scope="module")
def sn1(tmp_path_factory: pytest.TempPathFactory) -> SpaceNetSampleSummary:
    return generate_spacenet_sample(tmp_path_factory.mktemp("sn1"), tiles=8, seed=0)


def module(root: Path, **kwargs: object) -> SpaceNetDataModule:
    options: dict[str, object] = {
        "patch_size": 64,
        "batch_size": 2,
        "num_workers": 0,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "pin_memory": False,
    }
    options.update(kwargs)
    return SpaceNetDataModule(str(root), **options)  # type: ignore[arg-type]


def test_split_is_seeded_disjoint_and_grouped_by_tile() -> None:
    keys = [f"tile{i // 3}" for i in range(60)]  # 20 tiles, 3 images each (nadir angles)
    split = split_tiles(keys, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert split == split_tiles(keys, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert split != split_tiles(keys, seed=1, val_fraction=0.1, test_fraction=0.2)
    assert sorted(i for ids in split.values() for i in ids) == list(range(60))
    tiles = {name: {keys[i] for i in ids} for name, ids in split.items()}
    assert (len(tiles["train"]), len(tiles["val"]), len(tiles["test"])) == (14, 2, 4)
    assert not tiles["train"] & tiles["test"]
    assert not tiles["val"] & tiles["test"]
    # adding tiles does not move the old ones out of test, except for the few the new ones displace
    more = keys + [f"new{i}" for i in range(5)]
    grown = split_tiles(more, seed=0, val_fraction=0.1, test_fraction=0.2)
    kept = {more[i] for i in grown["test"]} & tiles["test"]
    assert len(kept) >= 3


def test_split_small_sets_and_errors() -> None:
    split = split_tiles(["a", "b", "c"], seed=0, val_fraction=0.1, test_fraction=0.1)
    assert [len(v) for v in split.values()] == [1, 1, 1]  # each positive split gets a tile
    assert split_tiles(["a"], seed=0, val_fraction=0.0, test_fraction=0.0)["train"] == [0]
    with pytest.raises(ValueError, match="no training tile left"):
        split_tiles(["a", "b"], seed=0, val_fraction=0.5, test_fraction=0.4)
    with pytest.raises(ValueError, match=r"data.val_fraction must be in \[0, 1\)"):
        split_tiles(["a"], seed=0, val_fraction=1.0, test_fraction=0.0)
    with pytest.raises(ValueError, match="must be < 1"):
        split_tiles(["a"], seed=0, val_fraction=0.5, test_fraction=0.5)


def test_spacenet1_batches(sn1: SpaceNetSampleSummary) -> None:
    dm = module(sn1.root)
    assert dm.in_chans == 3
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.split_indices.items()} == {"train": 4, "val": 2, "test": 2}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 64, 64)
    assert batch["mask"].dtype == torch.int64
    assert float(batch["image"].min()) >= 0
    assert float(batch["image"].max()) <= 1
    assert set(batch["mask"].unique().tolist()) <= {0, 1}
    val = next(iter(dm.val_dataloader()))
    # whole 406 x 439 chips, padded to multiples of 32 with the ignore label
    assert val["image"].shape == (2, 3, 416, 448)
    assert (val["mask"][:, 406:] == IGNORE_INDEX).all()
    assert (val["mask"][:, :, 439:] == IGNORE_INDEX).all()
    assert set(val["mask"][:, :406, :439].unique().tolist()) <= {0, 1}
    assert float(val["image"][:, :, 406:].abs().sum()) == 0


def test_split_follows_the_seed_and_test_split_picks_val(sn1: SpaceNetSampleSummary) -> None:
    a, b, c = module(sn1.root), module(sn1.root), module(sn1.root, seed=5)
    for dm in (a, b, c):
        dm.setup("fit")
    assert a.split_indices == b.split_indices != c.split_indices
    on_val = module(sn1.root, test_split="val")
    on_val.setup("test")
    val_batch = next(iter(on_val.test_dataloader()))
    assert torch.equal(val_batch["image"], next(iter(a.val_dataloader()))["image"])


def test_training_crops_augmentation_and_seeded_shuffle(sn1: SpaceNetSampleSummary) -> None:
    plain = module(sn1.root, augment=False)
    plain.setup("fit")
    crop = plain.datasets["train"][0]["image"]
    full = plain.datasets["train"].base[plain.split_indices["train"][0]]["image"]
    # without augmentation a training sample is a window of the chip
    candidates = (full == crop[:, :1, :1]).all(0).nonzero().tolist()
    assert any(torch.equal(full[:, r : r + 64, c : c + 64], crop) for r, c in candidates)
    transform = plain.datasets["train"].transform
    assert isinstance(transform, _TrainTransform)
    assert not transform.augmentation.flips
    assert not transform.augmentation.colour
    augmented = module(sn1.root)
    augmented.setup("fit")
    assert isinstance(augmented.datasets["train"].transform, _TrainTransform)
    augmentation = augmented.datasets["train"].transform.augmentation
    assert isinstance(augmentation, TargetAugmentation)
    assert augmentation.crop_size == 64
    assert augmentation.flips
    assert augmentation.colour
    assert augmented.datasets["val"].transform is None  # no augmentation on val / test
    # the training order is seeded: the same every time the loader is created
    orders = [list(iter(plain.train_dataloader().sampler)) for _ in range(2)]
    assert orders[0] == orders[1]


def test_small_chip_is_padded_with_ignore_before_the_crop(sn1: SpaceNetSampleSummary) -> None:
    dm = module(sn1.root, patch_size=512, augment=False)
    dm.setup("fit")
    sample = dm.datasets["train"][0]
    assert sample["image"].shape == (3, 512, 512)
    assert int((sample["mask"] == IGNORE_INDEX).sum()) == 512 * 512 - 406 * 439


def test_spacenet2_pan_product(tmp_path: Path) -> None:
    generate_spacenet_sample(tmp_path, collection="spacenet2", tiles=3, products=["PAN"])
    dm = module(tmp_path, collection="spacenet2", image_product="PAN", val_fraction=0.0)
    assert dm.in_chans == 1
    dm.setup("fit")
    assert dm.val_dataloader() == []
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (1, 1, 672, 672)
    stats = dm.train_band_statistics()
    assert len(stats.mean) == 1
    assert stats.num_pixels == (2 * 650 * 650,)


def test_tiles_collection(sn1: SpaceNetSampleSummary) -> None:
    dm = module(
        sn1.dataset_dir / "train", collection="tiles", image_glob="3band/*.tif", val_fraction=0.0
    )
    assert dm.in_chans == 3
    dm.setup("fit")
    assert sorted(len(v) for v in dm.split_indices.values()) == [0, 2, 6]
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 64, 64)
    stats = dm.train_band_statistics()
    assert stats.num_pixels == (6 * 406 * 439,) * 3
    pairs = [[str(t.images["3band"]), str(t.label)] for t in sn1.tiles[:3]]
    explicit = module(
        sn1.root, collection="tiles", pairs=pairs, val_fraction=0.0, test_fraction=0.3
    )
    explicit.setup("test")
    assert len(explicit.datasets["test"]) == 1


def test_missing_data_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    dm = module(tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match=r"no spacenet1 3band chips \(expected"):
        dm.setup("fit")
    assert not (tmp_path / "nothing").exists()  # torchgeo's SpaceNet would mkdir here
    with pytest.raises(DatasetNotFoundError, match="no spacenet2 RGB-PanSharpen chips"):
        module(tmp_path, collection="spacenet2").setup("fit")


def test_empty_test_split_is_an_error(sn1: SpaceNetSampleSummary) -> None:
    dm = module(sn1.root, test_fraction=0.0)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"test split is empty; raise data.test_fraction"):
        dm.test_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"collection": "spacenet7"}, "data.collection must be one of"),
        ({"image_product": "PS-RGB"}, "data.image_product must be one of"),
        ({"collection": "tiles", "image_product": "PAN"}, "use data.bands"),
        ({"test_split": "train"}, "data.test_split"),
        ({"patch_size": 0}, "data.patch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"val_fraction": 0.6, "test_fraction": 0.6}, "must be < 1"),
    ],
)
def test_argument_errors(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        module(tmp_path, **kwargs)


def test_pad_collate() -> None:
    samples = [
        {"image": torch.ones(1, 30, 40), "mask": torch.ones(30, 40, dtype=torch.long)},
        {"image": torch.ones(1, 33, 20), "mask": torch.zeros(33, 20, dtype=torch.long)},
    ]
    batch = pad_collate(samples, multiple=16)
    assert batch["image"].shape == (2, 1, 48, 48)
    assert int((batch["mask"][0] == IGNORE_INDEX).sum()) == 48 * 48 - 30 * 40
    assert int((batch["mask"][1] == 0).sum()) == 33 * 20


def test_copy_of_sample_keeps_split(sn1: SpaceNetSampleSummary, tmp_path: Path) -> None:
    # the split depends on tile ids, not on the folder: a moved dataset splits the same way
    shutil.copytree(sn1.root, tmp_path / "copy")
    a, b = module(sn1.root), module(tmp_path / "copy")
    a.setup("fit")
    b.setup("fit")
    assert a.split_indices == b.split_indices
