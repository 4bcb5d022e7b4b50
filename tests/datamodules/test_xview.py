"""XViewDataModule: splits, random vs grid chips, augmentation on train only, collate, seeds."""

from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.datamodules.xview import XViewDataModule, collate_xview
from geossl.datasets.xview import XView, XViewChipParams, split_xview_images
from geossl.synthetic.xview import XViewSampleSummary
from geossl.transforms.targets import TargetAugmentation
from tests.xview_helpers import shared_xview_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> XViewSampleSummary:
    return shared_xview_sample(tmp_path_factory)


def module(sample: XViewSampleSummary, **kwargs: Any) -> XViewDataModule:
    args: dict[str, Any] = {
        "chip_size": 96,
        "crops_per_image": 3,
        "batch_size": 3,
        "pin_memory": False,
        **kwargs,
    }
    return XViewDataModule(str(sample.root), **args)


def test_fit_uses_random_augmented_chips_and_grid_validation(sample: XViewSampleSummary) -> None:
    dm = module(sample)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_dataset is not None
    assert dm.val_dataset is not None
    assert dm.test_dataset is None
    assert dm.train_dataset.params.mode == "random"
    assert dm.train_dataset.params.crops_per_image == 3
    assert isinstance(dm.train_dataset.transforms, TargetAugmentation)
    assert dm.val_dataset.params.mode == "grid"
    assert dm.val_dataset.transforms is None
    split = split_xview_images(sample.image_ids)
    assert dm.train_dataset.image_ids == split["train"]
    assert dm.val_dataset.image_ids == split["val"]
    dm.setup("test")
    assert dm.test_dataset is not None
    assert dm.test_dataset.image_ids == split["test"]
    assert dm.test_dataset.params.mode == "grid"


def test_batches_follow_torchgeos_detection_layout(sample: XViewSampleSummary) -> None:
    dm = module(sample)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 96, 96)
    assert batch["image"].dtype == torch.float32
    assert 0 <= float(batch["image"].min()) <= float(batch["image"].max()) <= 1
    assert isinstance(batch["bbox_xyxy"], list)
    assert isinstance(batch["label"], list)
    assert len(batch["bbox_xyxy"]) == len(batch["label"]) == 3
    for boxes, labels in zip(batch["bbox_xyxy"], batch["label"], strict=True):
        assert boxes.dtype == torch.float32
        assert boxes.shape == (len(labels), 4)
        assert labels.dtype == torch.int64
        assert ((boxes >= 0) & (boxes <= 96)).all()
    assert len(batch["image_id"]) == 3
    assert batch["window"].shape == (3, 4)


def test_validation_chips_are_not_augmented(sample: XViewSampleSummary) -> None:
    dm = module(sample)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    raw = XView(sample.root, "val", XViewChipParams(mode="grid", chip_size=96, min_visibility=0.3))
    for i in range(len(batch["image_id"])):
        torch.testing.assert_close(batch["image"][i], raw[i]["image"])
        torch.testing.assert_close(batch["bbox_xyxy"][i], raw[i]["bbox_xyxy"])


def test_training_order_and_chips_follow_the_seed(sample: XViewSampleSummary) -> None:
    def first_windows(seed: int) -> torch.Tensor:
        dm = module(sample, seed=seed, augment=False)
        dm.setup("fit")
        batch: dict[str, Any] = next(iter(dm.train_dataloader()))
        window: torch.Tensor = batch["window"]
        return window

    assert torch.equal(first_windows(0), first_windows(0))
    assert not torch.equal(first_windows(0), first_windows(1))


def test_test_split_and_no_validation_share(sample: XViewSampleSummary) -> None:
    dm = module(sample, test_split="val")
    dm.setup("test")
    assert dm.test_dataset is not None
    assert dm.test_dataset.split == "val"
    no_val = module(sample, val_fraction=0.0)
    no_val.setup("fit")
    assert no_val.val_dataset is not None
    assert no_val.val_dataset.split == "test"  # validation falls back to the test images
    assert no_val.train_dataset is not None
    assert len(no_val.train_dataset.image_ids) == len(sample.image_ids) - 2


def test_prepare_data_writes_both_chip_indexes(sample: XViewSampleSummary, tmp_path: Path) -> None:
    dm = module(sample, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    names = sorted(p.name.split("-")[1] for p in (tmp_path / "cache").iterdir())
    assert names == ["chips", "chips", "labels"]


def test_collate_keeps_empty_box_lists() -> None:
    samples = [
        {
            "image": torch.zeros(3, 8, 8),
            "bbox_xyxy": torch.zeros(0, 4),
            "label": torch.zeros(0, dtype=torch.int16),
            "image_id": "1.tif",
        },
        {
            "image": torch.ones(3, 8, 8),
            "bbox_xyxy": torch.tensor([[1.0, 1.0, 4.0, 4.0]]),
            "label": torch.tensor([7]),
            "image_id": "2.tif",
        },
    ]
    batch = collate_xview(samples)
    assert batch["image"].shape == (2, 3, 8, 8)
    assert batch["bbox_xyxy"][0].shape == (0, 4)
    assert batch["label"][0].dtype == torch.int64
    assert batch["image_id"] == ["1.tif", "2.tif"]
    assert "window" not in batch


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        XViewDataModule("x", batch_size=0)
    with pytest.raises(ValueError, match="test_split"):
        XViewDataModule("x", test_split="train")  # type: ignore[arg-type]
