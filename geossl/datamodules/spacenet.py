"""Lightning data module for SpaceNet building segmentation (SpaceNet-1, SpaceNet-2, any tiles)."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from geossl.datamodules.loaders import loader_kwargs
from geossl.datamodules.torchgeo_base import TorchGeoDataModule
from geossl.datasets.band_stats import BandStatistics
from geossl.datasets.errors import DatasetNotFoundError
from geossl.datasets.spacenet import (
    IGNORE_INDEX,
    SpaceNetChips,
    SpaceNetTiles,
    band_statistics,
    fit_to_size,
    padded_size,
)
from geossl.transforms.targets import TargetAugmentation
from geossl.utils.checks import check_at_least

__all__ = ["SPACENET_BANDS", "SpaceNetDataModule", "pad_collate", "split_tiles"]

#: Band count of each image product, per collection (torchgeo's ``image`` names).
SPACENET_BANDS: Mapping[str, Mapping[str, int]] = {
    "spacenet1": {"3band": 3, "8band": 8},
    "spacenet2": {"RGB-PanSharpen": 3, "MUL": 8, "MUL-PanSharpen": 8, "PAN": 1},
}

#: Collections: torchgeo's SpaceNet-1 / SpaceNet-2 layouts, or a folder of tiles
#: (:class:`~geossl.datasets.spacenet.tiles.SpaceNetTiles`).
COLLECTIONS = ("spacenet1", "spacenet2", "tiles")

#: Split names.
SPLITS = ("train", "val", "test")

# Tile id of a torchgeo SpaceNet file: AOI number and image number (``..._AOI_2_Vegas_img12.tif``).
_TORCHGEO_TILE = re.compile(r"AOI_(\d+)_.*img(\d+)\.\w+$")

Sample = dict[str, Tensor]


def _check_collection(collection: str, image_product: str | None) -> None:
    """Refuse an unknown ``data.collection`` or an ``image_product`` it does not have."""
    if collection not in COLLECTIONS:
        raise ValueError(f"data.collection must be one of {list(COLLECTIONS)}, got {collection!r}")
    if collection in SPACENET_BANDS:
        products = SPACENET_BANDS[collection]
        if image_product is not None and image_product not in products:
            raise ValueError(
                f"data.image_product must be one of {list(products)} for {collection}, "
                f"got {image_product!r}"
            )
    elif image_product is not None:
        raise ValueError("data.image_product is for spacenet1 / spacenet2; use data.bands")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"data.{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        total = val_fraction + test_fraction
        raise ValueError(f"data.val_fraction + data.test_fraction must be < 1, got {total}")


def split_tiles(
    keys: Sequence[str], *, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, list[int]]:
    """Seeded, stable split of samples grouped by tile.

    Samples sharing a key (a tile: SpaceNet-4's nadir angles, SpaceNet-2's products) land in
    the same split, so no place is seen in training and test. Tiles are ranked by
    ``sha256(f"{seed}:{key}")``; the first ``round(n * test_fraction)`` go to ``test``, the next
    ``round(n * val_fraction)`` to ``val``, the rest to ``train``. A split with a positive fraction
    gets at least one tile when there are enough tiles (training keeps at least one). The rank of a
    tile does not depend on the other tiles, so adding files moves few tiles between splits.

    Args:
        keys: one tile key per sample.
        seed: the split seed.
        val_fraction: share of tiles in ``val``.
        test_fraction: share of tiles in ``test``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sample indexes, ascending.

    Raises:
        ValueError: if the fractions are outside ``[0, 1)`` or leave no training tile.
    """
    _check_fractions(val_fraction, test_fraction)
    tiles = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n = len(tiles)
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if test_fraction > 0 and n_test == 0 and n - n_val > 1:
        n_test = 1
    if val_fraction > 0 and n_val == 0 and n - n_test > 1:
        n_val = 1
    if n - n_test - n_val < 1:
        raise ValueError(
            f"{n} tiles cannot be split with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: no training tile left"
        )
    split_of = {k: "test" for k in tiles[:n_test]}
    split_of.update({k: "val" for k in tiles[n_test : n_test + n_val]})
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for index, key in enumerate(keys):
        out[split_of.get(key, "train")].append(index)
    return out


def pad_collate(
    samples: Sequence[Mapping[str, Tensor]],
    *,
    multiple: int = 32,
    ignore_index: int = IGNORE_INDEX,
) -> Sample:
    """Stack ``image`` / ``mask`` samples padded to the batch's largest size.

    The size is rounded up to ``multiple`` (a 5-stage encoder halves the size 5 times); images are
    padded with 0 and masks with ``ignore_index`` at the bottom / right, so whole chips of any
    size (SpaceNet-1's 406 x 439, a 900 x 900 SpaceNet-4 tile) are evaluated without cropping.

    Args:
        samples: dicts with ``image`` ``[C, H, W]`` and ``mask`` ``[H, W]``.
        multiple: pad height and width to multiples of this.
        ignore_index: mask value of padded pixels.

    Returns:
        ``{"image": [B, C, H, W], "mask": [B, H, W]}``.
    """
    height = max(int(s["image"].shape[-2]) for s in samples)
    width = max(int(s["image"].shape[-1]) for s in samples)
    size = padded_size(height, width, multiple)
    fitted = [fit_to_size(dict(s), size, ignore_index=ignore_index) for s in samples]
    return {
        "image": torch.stack([f["image"] for f in fitted]),
        "mask": torch.stack([f["mask"] for f in fitted]),
    }


class _SplitDataset(Dataset[Sample]):
    """A subset of a SpaceNet dataset with its own transform; keeps ``image`` and ``mask``."""

    def __init__(
        self,
        base: Dataset[Any],
        indices: Sequence[int],
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> None:
        self.base = base
        self.indices = list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        sample = self.base[self.indices[index]]
        out: dict[str, Any] = {"image": sample["image"], "mask": sample["mask"]}
        if self.transform is not None:
            out = self.transform(out)
        return {"image": out["image"], "mask": out["mask"]}


class _TrainTransform:
    """Pad a chip smaller than the patch (mask: ignore), then augment with a random crop."""

    def __init__(self, patch_size: int, augment: bool, ignore_index: int) -> None:
        self.patch_size = patch_size
        self.ignore_index = ignore_index
        self.augmentation = TargetAugmentation(
            crop_size=patch_size, flips=augment, rot90=augment, colour=augment
        )

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        height, width = sample["image"].shape[-2:]
        if height < self.patch_size or width < self.patch_size:
            size = (max(height, self.patch_size), max(width, self.patch_size))
            sample = fit_to_size(sample, size, ignore_index=self.ignore_index)
        return self.augmentation(sample)


class SpaceNetDataModule(TorchGeoDataModule):
    """SpaceNet building segmentation: 2 classes (0 background, 1 building).

    Sources (``collection``):

    - ``"spacenet1"``: torchgeo's `SpaceNet1` under ``root`` (the
      extracted ``SN1_buildings/train`` folder; ``image_product`` ``3band`` (default) or
      ``8band``);
    - ``"spacenet2"``: torchgeo's `SpaceNet2` (``SN2_buildings/train/
      AOI_*_Train``; ``image_product`` ``RGB-PanSharpen`` (default), ``MUL``, ``MUL-PanSharpen``
      or ``PAN``; ``aois`` default: every AOI folder present);
    - ``"tiles"``: [`SpaceNetTiles`][geossl.datasets.spacenet.tiles.SpaceNetTiles] over ``root``
      (images matched to GeoJSON labels by tile id; e.g. SpaceNet-4).

    Only the labelled ``train`` split of the SpaceNet tarballs is used; it is split into train /
    val / test by tile with [`split_tiles`][geossl.datamodules.spacenet.split_tiles] (seeded,
    stable). Images are served as float in ``[0, 1]`` (``scale``: 1/255 for uint8, 1/2047 for 11-bit
    uint16; see [`geossl.datasets.spacenet.constants`][geossl.datasets.spacenet.constants]), masks
    as int64 ``[H, W]``.

    - train: chips padded to ``patch_size`` if smaller (mask ``ignore_index``), then
      [`TargetAugmentation`][geossl.transforms.targets.TargetAugmentation]: random ``patch_size``
      crop, flips, 90-degree rotations and colour jitter (``augment=False`` keeps only the random
      crop);
    - val / test: whole chips, no augmentation; batches padded to multiples of ``pad_multiple``
      ([`pad_collate`][geossl.datamodules.spacenet.pad_collate], mask ``ignore_index``).

    Batches are ``{"image": float32 [B, C, H, W], "mask": int64 [B, H, W]}``.

    Args:
        root: the dataset root (torchgeo's ``root``, or the tiles folder).
        collection: ``"spacenet1"``, ``"spacenet2"`` or ``"tiles"``.
        image_product: torchgeo's ``image`` (see above); None for the collection's default.
        aois: SpaceNet-2 areas of interest (2 Vegas, 3 Paris, 4 Shanghai, 5 Khartoum).
        patch_size: side of the random training crop.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        seed: seed of the split and of the training shuffle.
        val_fraction: share of tiles in the validation split.
        test_fraction: share of tiles in the test split.
        augment: flips, rotations and colour jitter on training chips.
        test_split: the split ``test_dataloader`` serves (``"test"``, or ``"val"`` to evaluate on
            the validation split).
        pad_multiple: evaluation batches are padded to multiples of this.
        ignore_index: mask value of padded pixels (the task's ``ignore_index``).
        image_glob: ``tiles``: images under ``root``.
        label_root: ``tiles``: folder of the GeoJSON labels (default ``root``).
        pairs: ``tiles``: explicit ``[image, label]`` pairs instead of the tile-id matching.
        bands: ``tiles``: 1-based bands to read.
        scale: raw value -> ``[0, 1]`` factor; None for the dtype's default.
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).
        drop_last: drop the last incomplete training batch (ignored when the training split is
            smaller than one batch; BatchNorm needs more than one sample).

    Raises:
        ValueError: for invalid arguments, naming the ``data.<key>`` to fix.
    """

    def __init__(
        self,
        root: str = "data/spacenet",
        collection: str = "spacenet1",
        image_product: str | None = None,
        aois: list[int] | None = None,
        patch_size: int = 256,
        batch_size: int = 16,
        num_workers: int = 4,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        augment: bool = True,
        test_split: str = "test",
        pad_multiple: int = 32,
        ignore_index: int = IGNORE_INDEX,
        image_glob: str = "**/*.tif",
        label_root: str | None = None,
        pairs: list[list[str]] | None = None,
        bands: list[int] | None = None,
        scale: float | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
    ) -> None:
        super().__init__(SpaceNetTiles, batch_size, num_workers)
        _check_collection(collection, image_product)
        if test_split not in ("val", "test"):
            raise ValueError(f"data.test_split must be 'val' or 'test', got {test_split!r}")
        counts = {"patch_size": patch_size, "batch_size": batch_size, "pad_multiple": pad_multiple}
        for key, value in counts.items():
            check_at_least(f"data.{key}", value, 1)
        check_at_least("data.num_workers", num_workers, 0)
        _check_fractions(val_fraction, test_fraction)
        if pairs is not None and any(len(p) != 2 for p in pairs):
            raise ValueError("data.pairs must be a list of [image, label] pairs")
        self.save_hyperparameters()
        self.root = root
        self.collection = collection
        self.image_product = image_product or (
            next(iter(SPACENET_BANDS[collection])) if collection in SPACENET_BANDS else None
        )
        self.aois = aois
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.augment = augment
        self.test_split = test_split
        self.pad_multiple = pad_multiple
        self.ignore_index = ignore_index
        self.image_glob = image_glob
        self.label_root = label_root
        self.pairs = pairs
        self.bands = bands
        self.scale = scale
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self._base: Dataset[Any] | None = None
        self._keys: list[str] = []
        self.split_indices: dict[str, list[int]] = {}
        self.datasets: dict[str, _SplitDataset] = {}

    # ---------------------------------------------------------------------------------------------
    # sources
    # ---------------------------------------------------------------------------------------------

    @property
    def in_chans(self) -> int:
        """Bands of the images (the model's ``in_channels``)."""
        if self.collection in SPACENET_BANDS and self.image_product is not None:
            return SPACENET_BANDS[self.collection][self.image_product]
        if self.bands is not None:
            return len(self.bands)
        base = self._dataset()
        return int(base.num_bands) if isinstance(base, SpaceNetTiles) else 0

    def _torchgeo(self) -> Dataset[Any]:
        from torchgeo.datasets import SpaceNet1, SpaceNet2

        cls = SpaceNet1 if self.collection == "spacenet1" else SpaceNet2
        train = Path(self.root) / cls.dataset_id / "train"
        pattern = os.path.join(
            glob.escape(str(train)), cls.directory_glob.format(product=self.image_product, aoi="*")
        )
        present = sorted(
            int(m.group(1))
            for path in glob.glob(os.path.join(pattern, "*.tif"), recursive=True)
            if (m := _TORCHGEO_TILE.search(path))
        )
        if not present:
            expected = os.path.join(
                cls.dataset_id,
                "train",
                cls.directory_glob.format(product=self.image_product, aoi="*"),
                "*.tif",
            )
            raise DatasetNotFoundError(
                self.root,
                f"no {self.collection} {self.image_product} chips (expected {expected}; get them "
                f"with torchgeo's {cls.__name__}(root, download=True) or `aws s3 cp "
                f"s3://spacenet-dataset/spacenet/{cls.dataset_id}/tarballs/...`, see "
                "datasets/spacenet.md)",
                "spacenet",
            )
        kwargs: dict[str, Any] = {"split": "train", "image": self.image_product}
        if self.collection == "spacenet2":
            kwargs["aois"] = list(self.aois) if self.aois else sorted(set(present))
        base = cls(self.root, **kwargs)
        self._keys = [self._torchgeo_key(p) for p in base.images]
        return SpaceNetChips(base, scale=self.scale)

    @staticmethod
    def _torchgeo_key(path: str) -> str:
        match = _TORCHGEO_TILE.search(path)
        return f"AOI_{match.group(1)}_img{match.group(2)}" if match else Path(path).stem

    def _tiles(self) -> SpaceNetTiles:
        if self.pairs is not None:
            tiles = SpaceNetTiles(
                pairs=[(p[0], p[1]) for p in self.pairs], bands=self.bands, scale=self.scale
            )
            self._keys = [p.stem for p in tiles.image_paths]
            return tiles
        tiles = SpaceNetTiles(
            self.root,
            image_glob=self.image_glob,
            label_root=self.label_root,
            bands=self.bands,
            scale=self.scale,
        )
        self._keys = list(tiles.tile_ids)
        return tiles

    def _dataset(self) -> Dataset[Any]:
        if self._base is None:
            self._base = self._tiles() if self.collection == "tiles" else self._torchgeo()
        return self._base

    # ---------------------------------------------------------------------------------------------
    # Lightning hooks
    # ---------------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Read the file lists, split them by tile and build the split datasets."""
        if self.datasets:
            return
        base = self._dataset()
        self.split_indices = split_tiles(
            self._keys,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
        )
        train_transform = _TrainTransform(self.patch_size, self.augment, self.ignore_index)
        self.datasets = {
            "train": _SplitDataset(base, self.split_indices["train"], train_transform),
            "val": _SplitDataset(base, self.split_indices["val"], None),
            "test": _SplitDataset(base, self.split_indices["test"], None),
        }

    def _split(self, name: str) -> _SplitDataset:
        if not self.datasets:
            self.setup()
        return self.datasets[name]

    def _loader_kwargs(self) -> dict[str, Any]:
        # DataLoader's own prefetch depth: this module never asked for more.
        kwargs = loader_kwargs(
            self.batch_size,
            self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            prefetch_factor=None,
        )
        kwargs["collate_fn"] = self._collate
        return kwargs

    def _collate(self, samples: Sequence[Mapping[str, Tensor]]) -> Sample:
        return pad_collate(samples, multiple=self.pad_multiple, ignore_index=self.ignore_index)

    def train_dataloader(self) -> DataLoader[Sample]:
        """Shuffled (seeded) augmented ``patch_size`` crops of the training tiles."""
        dataset = self._split("train")
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            shuffle=True,
            generator=generator,
            drop_last=self.drop_last and len(dataset) >= self.batch_size,
            **self._loader_kwargs(),
        )

    # An empty list is Lightning's "no validation" (torchgeo's signature allows loaders only).
    def val_dataloader(self) -> DataLoader[Sample] | list[Any]:  # type: ignore[override]
        """Whole validation chips in order (an empty list when the split is empty)."""
        dataset = self._split("val")
        if len(dataset) == 0:
            return []
        return DataLoader(dataset, shuffle=False, **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader[Sample]:
        """Whole chips of ``test_split`` in order.

        Raises:
            ValueError: if that split is empty.
        """
        dataset = self._split(self.test_split)
        if len(dataset) == 0:
            raise ValueError(
                f"{self.root}: the {self.test_split} split is empty; raise "
                f"data.{self.test_split}_fraction"
            )
        return DataLoader(dataset, shuffle=False, **self._loader_kwargs())

    def train_band_statistics(self) -> BandStatistics:
        """Per-band mean / std of the training split's ``[0, 1]`` images (whole chips).

        Give them to the task as ``model.mean`` / ``model.std`` when the weights' normalisation
        does not apply (e.g. a pan band with RGB weights;
        [`band_statistics`][geossl.datasets.spacenet.stats.band_statistics]).

        Returns:
            The statistics.
        """
        base = self._dataset()
        self.setup()
        indices = self.split_indices["train"]
        if isinstance(base, SpaceNetTiles):
            paths = [base.image_paths[i] for i in indices]
            return band_statistics(paths, bands=base.bands, scale=base.scale)
        return band_statistics(_SplitDataset(base, indices, None))
