"""Lightning data module for xView detection (the GeoSSL protocol; geossl.datasets.xview).

- train: the paper's random chips (``crops_per_image`` chips of ``chip_size`` per image, pairwise
  IoU below ``max_overlap``) with
  [`TargetAugmentation`][geossl.transforms.targets.TargetAugmentation] (flips, 90-degree rotations,
  colour jitter; boxes follow the pixels);
- val / test: a deterministic grid of ``chip_size`` chips over each image, no augmentation;
- the image split is by image id (default 146 of the 846 real images for test, as in the paper, and
  ``val_fraction`` of the rest for validation).

Batches follow torchgeo's detection convention
([`collate_xview`][geossl.datamodules.xview.collate_xview]): ``image`` is a stacked float tensor
``[B, 3, S, S]`` in ``[0, 1]``; ``bbox_xyxy`` and ``label`` are lists of per-chip tensors
(``[N_i, 4]`` float, ``[N_i]`` long), as torchgeo's `ObjectDetectionTask` expects.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import DataLoader
from torchgeo.datamodules.utils import collate_fn_detection

from geossl.datamodules.loaders import loader_kwargs
from geossl.datamodules.torchgeo_base import TorchGeoDataModule
from geossl.datasets.xview import (
    XVIEW_CLASS_NAMES,
    XVIEW_NUM_CLASSES,
    XVIEW_TEST_FRACTION,
    XView,
    XViewChipParams,
    load_xview_chips,
)
from geossl.transforms.targets import TargetAugmentation

__all__ = ["XViewDataModule", "collate_xview"]

Batch = dict[str, Any]


def collate_xview(samples: list[dict[str, Any]]) -> Batch:
    """Collate detection samples: torchgeo's ``collate_fn_detection`` plus the chip keys.

    Args:
        samples: [`XView`][geossl.datasets.xview.XView] samples.

    Returns:
        ``image`` ``[B, C, H, W]``; ``bbox_xyxy`` and ``label`` lists of ``B`` tensors;
        ``image_id`` a list of ``B`` names; ``window`` ``[B, 4]`` long (when the samples have it).
    """
    batch: Batch = collate_fn_detection(samples)
    batch["label"] = [label.long() for label in batch["label"]]
    batch["image_id"] = [sample["image_id"] for sample in samples]
    if all("window" in sample for sample in samples):
        batch["window"] = torch.stack([sample["window"] for sample in samples])
    return batch


class XViewDataModule(TorchGeoDataModule):
    """xView chips for fine-tuning a detector (see the module doc).

    Args:
        root: the xView root (``xView_train.geojson`` and ``train_images/``).
        chip_size: chip side in pixels (paper: 416).
        crops_per_image: random training chips per image (paper: 100).
        max_overlap: pairwise IoU of random chips must stay below this (paper: 0.25).
        min_visibility: smallest visible fraction of a box kept in a chip, and after augmentation.
        grid_stride: step of the evaluation grid; None = ``chip_size``.
        batch_size: chips per batch (paper: 4).
        num_workers: data loader workers.
        seed: seed of the random chips and of the training shuffle.
        split_seed: seed of the image split (keep it fixed to compare runs).
        test_fraction: share of images for test (default: the paper's 146 of 846).
        val_fraction: share of the other images for validation (the paper has none; 0 trains on
            all 700 and then validation reads the test images, which is only fit for smoke runs).
        test_split: the split ``test_dataloader`` serves (``"test"`` or ``"val"``), so that
            ``geossl evaluate`` can score either.
        augment: apply [`TargetAugmentation`][geossl.transforms.targets.TargetAugmentation] to
            training chips.
        cache_dir: folder of the label and chip caches; default ``root/.geossl-cache``.
        pin_memory: pin batches (when CUDA is available).
        persistent_workers: keep workers between epochs (with ``num_workers > 0``).

    Raises:
        ValueError: on an out-of-range argument.
    """

    num_classes = XVIEW_NUM_CLASSES
    class_names = XVIEW_CLASS_NAMES

    def __init__(
        self,
        root: str = "data/xview",
        chip_size: int = 416,
        crops_per_image: int = 100,
        max_overlap: float = 0.25,
        min_visibility: float = 0.3,
        grid_stride: int | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        split_seed: int = 0,
        test_fraction: float = XVIEW_TEST_FRACTION,
        val_fraction: float = 0.1,
        test_split: Literal["test", "val"] = "test",
        augment: bool = True,
        cache_dir: str | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(XView, batch_size, num_workers)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if test_split not in ("test", "val"):
            raise ValueError(f"test_split must be 'test' or 'val', got {test_split!r}")
        self.save_hyperparameters()
        self.root = root
        self.train_chips = XViewChipParams(
            mode="random",
            chip_size=chip_size,
            crops_per_image=crops_per_image,
            max_overlap=max_overlap,
            min_visibility=min_visibility,
            seed=seed,
        )
        self.eval_chips = XViewChipParams(
            mode="grid", chip_size=chip_size, min_visibility=min_visibility, stride=grid_stride
        )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.split_kwargs: dict[str, Any] = {
            "test_fraction": test_fraction,
            "val_fraction": val_fraction,
            "split_seed": split_seed,
            "cache_dir": cache_dir,
        }
        self.test_split = test_split
        self.augment = augment
        self.cache_dir = cache_dir
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.train_dataset: XView | None = None
        self.val_dataset: XView | None = None
        self.test_dataset: XView | None = None

    def prepare_data(self) -> None:
        """Parse the labels and write both chip indexes to the cache (one process per node)."""
        for params in (self.train_chips, self.eval_chips):
            load_xview_chips(self.root, params, cache_dir=self.cache_dir)

    def _dataset(self, split: Literal["train", "val", "test"]) -> XView:
        if split == "train":
            transforms = (
                TargetAugmentation(min_box_visibility=self.train_chips.min_visibility)
                if self.augment
                else None
            )
            return XView(
                self.root, "train", self.train_chips, transforms=transforms, **self.split_kwargs
            )
        if split == "val" and self.split_kwargs["val_fraction"] == 0:
            split = "test"
        return XView(self.root, split, self.eval_chips, **self.split_kwargs)

    def setup(self, stage: str | None = None) -> None:
        """Create the datasets of ``stage`` (``fit``, ``validate``, ``test``, ``predict``)."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self._dataset("val")
        if stage in ("test", "predict", None) and self.test_dataset is None:
            self.test_dataset = self._dataset(self.test_split)

    def _loader(self, dataset: XView, *, shuffle: bool) -> DataLoader[Batch]:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            shuffle=shuffle,
            generator=generator,
            collate_fn=collate_xview,
            # DataLoader's own prefetch depth: this module never asked for more.
            **loader_kwargs(
                self.batch_size,
                self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.persistent_workers,
                prefetch_factor=None,
            ),
        )

    def train_dataloader(self) -> DataLoader[Batch]:
        """Shuffled random chips with augmentation."""
        if self.train_dataset is None:
            self.setup("fit")
        if self.train_dataset is None:  # pragma: no cover
            raise RuntimeError("XViewDataModule.setup() did not create the train dataset")
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader[Batch]:
        """Grid chips of the validation images, in order."""
        if self.val_dataset is None:
            self.setup("validate")
        if self.val_dataset is None:  # pragma: no cover
            raise RuntimeError("XViewDataModule.setup() did not create the val dataset")
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        """Grid chips of ``test_split``, in order."""
        if self.test_dataset is None:
            self.setup("test")
        if self.test_dataset is None:  # pragma: no cover
            raise RuntimeError("XViewDataModule.setup() did not create the test dataset")
        return self._loader(self.test_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader[Batch]:
        """Same as [`test_dataloader`][geossl.datamodules.xview.XViewDataModule.test_dataloader]."""
        return self.test_dataloader()
