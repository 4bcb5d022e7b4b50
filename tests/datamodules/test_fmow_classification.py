from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.datamodules import FMoWClassificationDataModule
from geossl.datasets.fmow.constants import FMOW_CATEGORIES


def _module(data_root: Path, tmp_path: Path, **kwargs: Any) -> FMoWClassificationDataModule:
    options: dict[str, Any] = {
        "root": str(data_root),
        "image_size": 24,
        "batch_size": 4,
        "num_workers": 0,
        "cache_dir": str(tmp_path / "index"),
    }
    options.update(kwargs)
    return FMoWClassificationDataModule(**options)


def test_image_batches(fmow_sample: Path, tmp_path: Path) -> None:
    module = _module(fmow_sample, tmp_path)
    module.prepare_data()
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 3, 24, 24)
    assert batch["image"].dtype == torch.uint8
    assert batch["label"].dtype == torch.int64
    assert ((batch["label"] >= 0) & (batch["label"] < len(FMOW_CATEGORIES))).all()
    val = list(module.val_dataloader())
    index = module.index
    assert index is not None
    assert sum(len(b["label"]) for b in val) == int((index.split_rows("val")["label"] >= 0).sum())
    assert module.class_names == tuple(FMOW_CATEGORIES)
    assert module.in_chans == 3


def test_temporal_batches_are_per_location(fmow_sample: Path, tmp_path: Path) -> None:
    module = _module(fmow_sample, tmp_path, temporal=True, max_views=3, val_split=None)
    module.setup("test")
    batches = list(module.test_dataloader())
    assert batches[0]["image"].shape[1:] == (3, 3, 24, 24)
    assert batches[0]["views"].dtype == torch.bool
    assert batches[0]["views"][:, 0].all()  # every location has at least one image
    index = module.index
    assert index is not None
    locations = index.split_rows("val")["location_id"].nunique()
    assert sum(len(b["label"]) for b in batches) == locations
    assert module.val_dataloader() == []


def test_test_split_reads_the_ground_truth_mapping(fmow_sample: Path, tmp_path: Path) -> None:
    module = _module(fmow_sample, tmp_path, test_split="test", val_split=None)
    module.setup("test")
    labels = torch.cat([b["label"] for b in module.test_dataloader()])
    assert len(labels) > 0
    assert (labels >= 0).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"train_split": "training"}, "data.train_split"),
        ({"val_split": "dev"}, "data.val_split"),
        ({"product": "pan"}, "data.product"),
        ({"bands": [4]}, "data.bands"),
        ({"max_views": 0}, "data.max_views"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"root": ""}, "data.root"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _module(tmp_path, tmp_path, **kwargs)
