"""Lightning data module for fMoW classification (linear probe and fine-tuning)."""

import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from geossl.datamodules.fmow_checks import check_fmow_inputs
from geossl.datamodules.loaders import loader_kwargs
from geossl.datasets.errors import BadDatasetError
from geossl.datasets.fmow import FMoW, FMoWLocations
from geossl.datasets.fmow.constants import (
    FMOW_CATEGORIES,
    FMOW_SPLITS,
    product_in_chans,
    product_scale,
)
from geossl.datasets.fmow.index import FMoWIndex, build_fmow_index

__all__ = ["FMoWClassificationDataModule"]

Batch = dict[str, torch.Tensor]


class FMoWClassificationDataModule(LightningDataModule):
    """fMoW images (or locations) with their category, for the 62-way classification.

    Workers decode, crop the target's context box and resize to ``image_size`` (the same
    [`FMoW`][geossl.datasets.fmow.FMoW] reader as pretraining, from the same cached index); the
    random crop and flip of training run batched on the device in the task.

    Batches: ``image`` ``[B, C, S, S]`` (uint8 for the JPEG products, float32 in ``[0, 1]`` for
    fMoW-full GeoTIFFs), ``label`` ``int64 [B]``; with ``temporal=True`` one sample per location:
    ``image`` ``[B, T, C, S, S]`` and ``views`` ``bool [B, T]`` (``T = max_views``, see
    [`FMoWLocations`][geossl.datasets.fmow.FMoWLocations]), and metrics are per location.

    Args:
        root: the fMoW root folder.
        product: ``"rgb"``, ``"msrgb"``, ``"ms"`` or ``"sentinel"`` (fMoW-Sentinel, 13 bands).
        bands: 1-based band indexes, ``None`` for all.
        image_size: side the context crop is resized to (224, the backbone's input).
        batch_size: samples per batch (per process).
        num_workers: DataLoader worker processes.
        train_split: split to train on.
        val_split: split to validate on (``None``: no validation).
        test_split: split ``trainer.test`` evaluates (``"val"``: fMoW's results are reported on
            val; ``"test"`` reads ``test_gt_mapping.json``).
        temporal: one sample per location with all its acquisitions (features averaged).
        max_views: acquisitions per location with ``temporal``.
        seed: seed of the training shuffle.
        cache_dir: index cache folder (default ``{root}/.geossl``).
        max_bad_fraction: fail when more than this fraction of the samples is bad.
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).

    Raises:
        ValueError: for invalid arguments, naming the ``data.<key>`` to fix.
    """

    def __init__(
        self,
        root: str = "data/fmow",
        product: str = "rgb",
        bands: list[int] | None = None,
        image_size: int = 224,
        batch_size: int = 256,
        num_workers: int = 8,
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str = "val",
        temporal: bool = False,
        max_views: int = 4,
        seed: int = 0,
        cache_dir: str | None = None,
        max_bad_fraction: float = 0.5,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if not root:
            raise ValueError("data.root must be a folder, got an empty string")
        for key, split in (("train_split", train_split), ("test_split", test_split)):
            if split not in FMOW_SPLITS:
                raise ValueError(f"data.{key} must be one of {list(FMOW_SPLITS)}, got {split!r}")
        check_fmow_inputs(product, bands, val_split, [train_split, test_split])
        for key, value in (
            ("image_size", image_size),
            ("batch_size", batch_size),
            ("max_views", max_views),
        ):
            if value < 1:
                raise ValueError(f"data.{key} must be at least 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be non-negative, got {num_workers}")
        self.save_hyperparameters()
        self.root = root
        self.product = product
        self.bands = bands
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split
        self.temporal = temporal
        self.max_views = max_views
        self.seed = seed
        self.cache_dir = cache_dir
        self.max_bad_fraction = max_bad_fraction
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.index: FMoWIndex | None = None
        self.datasets: dict[str, Dataset[Batch]] = {}

    @property
    def in_chans(self) -> int:
        """Channels of the images: ``len(bands)``, else 3 (rgb/msrgb), 8 (ms) or 13 (sentinel)."""
        return product_in_chans(self.product, self.bands)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The 62 fMoW categories in label order."""
        return tuple(FMOW_CATEGORIES)

    @property
    def splits(self) -> list[str]:
        """Every split the index must cover."""
        wanted = [self.train_split, self.val_split, self.test_split]
        return list(dict.fromkeys(s for s in wanted if s is not None))

    def _build_index(self, progress: bool) -> FMoWIndex:
        return build_fmow_index(
            self.root,
            splits=self.splits,
            product=self.product,
            num_geo_clusters=None,  # labels only: a small labelled subset must fine-tune
            seed=self.seed,
            cache_dir=self.cache_dir,
            max_bad_fraction=self.max_bad_fraction,
            progress=progress,
        )

    def prepare_data(self) -> None:
        """Build and cache the index (Lightning runs this on one process per node)."""
        self._build_index(progress=True)

    def _dataset(self, split: str, train: bool) -> Dataset[Batch]:
        """The dataset of ``split`` (cached per split and role)."""
        key = f"{split}:{'train' if train else 'eval'}"
        if key in self.datasets:
            return self.datasets[key]
        if self.index is None:
            self.index = self._build_index(progress=False)
        rows: pd.DataFrame = self.index.split_rows(split)
        rows = rows.loc[rows["label"] >= 0].reset_index(drop=True)
        if rows.empty:
            raise BadDatasetError(self.root, f"no labelled fMoW images in split {split!r}")
        dataset: Dataset[Batch]
        if self.temporal:
            dataset = FMoWLocations(
                self.root,
                rows,
                self.image_size,
                self.bands,
                self.max_views,
                random_views=train,
                scale=product_scale(self.product),
            )
        else:
            dataset = FMoW(
                self.root, rows, self.image_size, self.bands, scale=product_scale(self.product)
            )
        self.datasets[key] = dataset
        return dataset

    def setup(self, stage: str | None = None) -> None:
        """Load the index (from the cache) and create the datasets the stage needs."""
        if stage in (None, "fit"):
            self._dataset(self.train_split, train=True)
            if self.val_split is not None:
                self._dataset(self.val_split, train=False)
        if stage in (None, "validate") and self.val_split is not None:
            self._dataset(self.val_split, train=False)
        if stage in (None, "test", "predict"):
            self._dataset(self.test_split, train=False)

    def _loader(self, dataset: Dataset[Batch], shuffle: bool) -> DataLoader[Batch]:
        kwargs = loader_kwargs(
            self.batch_size,
            self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )
        if shuffle:
            kwargs["generator"] = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, shuffle=shuffle, drop_last=False, **kwargs)

    def train_dataloader(self) -> DataLoader[Batch]:
        """Shuffled training images (or locations)."""
        return self._loader(self._dataset(self.train_split, train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader[Batch] | list[DataLoader[Batch]]:
        """Validation images in index order (an empty list of loaders without ``val_split``)."""
        if self.val_split is None:
            return []  # Lightning skips validation on an empty list
        return self._loader(self._dataset(self.val_split, train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        """``test_split`` images in index order."""
        return self._loader(self._dataset(self.test_split, train=False), shuffle=False)

    def predict_dataloader(self) -> DataLoader[Batch]:
        """Same as `test_dataloader`."""
        return self.test_dataloader()
