"""Lightning data module for MoCo-v2 pretraining on a folder of images without time or place.

The positives are two augmented views of one image (MoCo-v2's), so the terms that need a second
acquisition or a location do not apply: ``tp`` trains exactly as ``moco`` here, and ``geo`` is
refused (no cluster labels). ``co2`` and ``scrl`` apply (SCRL's boxes are on one canvas).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from geossl.datamodules.input_block import input_block
from geossl.datamodules.loaders import loader_kwargs
from geossl.datamodules.resumable import ResumableDataLoader
from geossl.datasets.band_stats import BandMoments
from geossl.datasets.errors import BadDatasetError, DatasetNotFoundError
from geossl.datasets.scenes import (
    LABELS_FILE,
    read_scene_image,
    read_scene_labels,
    stratified_split,
)
from geossl.samplers.shuffle import EpochShuffleSampler
from geossl.utils.bands import RGB_BANDS, UINT8_SCALE

__all__ = ["IMAGE_SUFFIXES", "ScenesDataModule", "find_scene_images"]

#: File suffixes taken as images when a folder has no ``labels.csv``.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def find_scene_images(root: Path, holdout_seed: int | None = None) -> list[Path]:
    """The images of a scene folder: the rows of ``labels.csv``, else every image file below it.

    Args:
        root: the folder.
        holdout_seed: leave out the test split of ``geossl probe --seed holdout_seed`` (the seeded
            stratified 60 / 20 / 20 split of
            [`stratified_split`][geossl.datasets.scenes.stratified_split]), so that a probe of the
            pretrained weights tests on images pretraining never saw. Needs ``labels.csv``.

    Returns:
        Image paths in a fixed order.

    Raises:
        DatasetNotFoundError: if ``root`` is not a folder or holds no image.
        BadDatasetError: for a bad ``labels.csv`` (one line, see ``read_scene_labels``).
        ValueError: for ``holdout_seed`` without ``labels.csv``.
    """
    if not root.is_dir():
        raise DatasetNotFoundError(root, "scene folder does not exist", "scenes")
    if (root / LABELS_FILE).is_file():
        paths, labels, _ = read_scene_labels(root)
        held_out = [] if holdout_seed is None else stratified_split(labels, holdout_seed)["test"]
        test = set(held_out)
        return [root / path for i, path in enumerate(paths) if i not in test]
    if holdout_seed is not None:
        raise ValueError(
            f"data.holdout_seed needs {root / LABELS_FILE} (the probe's split is per class)"
        )
    found = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and ".geossl" not in p.relative_to(root).parts
    )
    if not found:
        raise DatasetNotFoundError(
            root, f"no {LABELS_FILE} and no image ({', '.join(IMAGE_SUFFIXES)}) below", "scenes"
        )
    return found


class _ScenePairs(Dataset[dict[str, Tensor]]):
    """Decoded, resized 8-bit images as ``[2, C, S, S]`` pairs of one image (views on device)."""

    def __init__(self, images: Tensor) -> None:
        self.images = images  # uint8 [N, C, S, S]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = self.images[index]
        return {"image": image.expand(2, *image.shape), "index": torch.tensor(index)}


def _resized_uint8(path: Path, size: int) -> Tensor:
    """``uint8 [C, size, size]`` (bilinear, antialiased) of an 8-bit image file.

    Raises:
        BadDatasetError: for an unreadable file or one that is not 8-bit.
    """
    image = read_scene_image(path)
    if image.dtype != torch.uint8:
        raise BadDatasetError(
            path,
            f"{image.dtype} pixels: ScenesDataModule reads 8-bit images (scale other data to "
            "uint8, or use RasterTimeSeriesDataModule for GeoTIFF stacks)",
        )
    if image.shape[-2:] == (size, size):
        return image
    resized = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


class ScenesDataModule(LightningDataModule):
    """MoCo-v2 pairs (two views of one image) from a folder of 8-bit images.

    The folder is a scene folder with ``labels.csv`` (``path,class_name,class_idx``, the labels
    are not used; [`LabelledScenes`][geossl.datasets.LabelledScenes]) or any folder of JPEG / PNG /
    GeoTIFF files (searched recursively). Every image is decoded once in ``setup``, resized to
    ``image_size`` and kept in memory as uint8 (``C * image_size**2`` bytes each: 27 kB at
    96 px, so a folder of 100,000 images takes 2.8 GB); the random views are cut on the device by
    [`GeoSSLTask`][geossl.trainers.GeoSSLTask], as for fMoW. An unreadable image is skipped and
    counted; more than ``max_bad_fraction`` of them stops the run.

    A training batch is ``image: uint8 [B, 2, C, S, S]`` (both entries the same image) and
    ``index: int64 [B]``.

    Args:
        root: the image folder.
        image_size: side every image is resized to before the views are cut (the task's
            ``crop_size`` views come from it).
        batch_size: images per batch (per process).
        num_workers: DataLoader worker processes (0 is enough: batches are slices of memory).
        holdout_seed: leave out the test images of ``geossl probe --seed holdout_seed`` (see
            [`find_scene_images`][geossl.datamodules.scenes.find_scene_images]); ``None`` pretrains
            on every image.
        max_bad_fraction: the share of unreadable images above which ``setup`` stops.
        pin_memory: pin batches (only when CUDA is available).
        drop_last: drop the last incomplete batch.
        seed: seed of the shuffle (``seed + epoch``, so that a resumed run repeats it).

    Raises:
        ValueError: for invalid arguments, naming the ``data.<key>`` to fix.

    Examples:
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for i in range(4):
        ...     Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(root / f"{i}.png")
        >>> dm = ScenesDataModule(root, image_size=32, batch_size=2)
        >>> dm.setup("fit")
        >>> next(iter(dm.train_dataloader()))["image"].shape
        torch.Size([2, 2, 3, 32, 32])
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "data/scenes",
        image_size: int = 256,
        batch_size: int = 256,
        num_workers: int = 0,
        holdout_seed: int | None = None,
        max_bad_fraction: float = 0.01,
        pin_memory: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in {"image_size": image_size, "batch_size": batch_size}.items():
            if value < 1:
                raise ValueError(f"data.{key} must be at least 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be non-negative, got {num_workers}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"data.max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.save_hyperparameters()
        self.root = Path(root)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.holdout_seed = holdout_seed
        self.max_bad_fraction = max_bad_fraction
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.seed = seed
        self.train_dataset: _ScenePairs | None = None
        #: Images skipped as unreadable in ``setup``: path -> reason.
        self.skipped: dict[str, str] = {}
        self._first_image: Tensor | None = None

    @property
    def in_chans(self) -> int:
        """Bands of the images (read from the first image if ``setup`` has not run)."""
        if self.train_dataset is not None:
            return int(self.train_dataset.images.shape[1])
        if self._first_image is None:
            first = find_scene_images(self.root, self.holdout_seed)[0]
            self._first_image = _resized_uint8(first, self.image_size)
        return int(self._first_image.shape[0])

    @property
    def input_block(self) -> dict[str, Any]:
        """What the model's input is: 8-bit RGB (or grey) scenes, ``model.input_block``."""
        names = RGB_BANDS if self.in_chans == 3 else [f"band_{i + 1}" for i in range(self.in_chans)]
        return input_block("scenes", names, UINT8_SCALE)

    @property
    def pairs_share_canvas(self) -> bool:
        """Always ``True``: both views are cut from one image."""
        return True

    def setup(self, stage: str | None = None) -> None:
        """Decode and resize every image once (skipping and counting unreadable ones).

        Raises:
            BadDatasetError: if more than ``max_bad_fraction`` of the images are unreadable,
                or the images do not all have the same band count.
        """
        if self.train_dataset is not None:
            return
        paths = find_scene_images(self.root, self.holdout_seed)
        images: list[Tensor] = []
        for path in paths:
            try:
                images.append(_resized_uint8(path, self.image_size))
            except BadDatasetError as error:
                self.skipped[str(path)] = error.problem
        if len(self.skipped) > self.max_bad_fraction * len(paths):
            first = next(iter(self.skipped.items()))
            raise BadDatasetError(
                self.root,
                f"{len(self.skipped)} of {len(paths)} images unreadable (more than "
                f"data.max_bad_fraction={self.max_bad_fraction}); first: {first[0]}: {first[1]}",
            )
        if self.skipped:
            warnings.warn(
                f"ScenesDataModule: skipped {len(self.skipped)} unreadable image(s) of "
                f"{len(paths)} in {self.root}, e.g. {next(iter(self.skipped))}",
                stacklevel=2,
            )
        bands = {int(image.shape[0]) for image in images}
        if len(bands) > 1:
            raise BadDatasetError(self.root, f"images with different band counts {sorted(bands)}")
        self.train_dataset = _ScenePairs(torch.stack(images))

    def band_statistics(self, num_samples: int = 256) -> tuple[list[float], list[float]]:
        r"""Per-band mean and std of the images on the ``[0, 1]`` scale.

        Computed on ``num_samples`` evenly spaced decoded images (all of them when there are
        fewer), resized as training sees them:
        $\mu_c = \frac{1}{N_c}\sum_i x_{c,i}$,
        $\sigma_c = \sqrt{\frac{1}{N_c}\sum_i (x_{c,i} - \mu_c)^2}$. Nothing is cached:
        the images are already in memory.

        Args:
            num_samples: images to use.

        Returns:
            ``(mean, std)``, one value per band.

        Raises:
            ValueError: if ``num_samples < 1``.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.setup("fit")
        if self.train_dataset is None:  # pragma: no cover - setup always builds it
            raise RuntimeError("ScenesDataModule.setup() did not create the dataset")
        images = self.train_dataset.images
        step = max(1, len(images) // num_samples)
        moments = BandMoments(int(images.shape[1]))
        chosen = images[::step][:num_samples]  # [n, C, S, S]
        moments.update(chosen.transpose(0, 1).flatten(1).double() / 255.0)  # [C, n * S * S]
        stats = moments.result(f"{num_samples} images of {self.root}")
        return list(stats.mean), list(stats.std)

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """Shuffled batches of pairs (an `EpochShuffleSampler`: resumable mid-epoch)."""
        self.setup("fit")
        if self.train_dataset is None:  # pragma: no cover - setup always builds it
            raise RuntimeError("ScenesDataModule.setup() did not create the dataset")
        return ResumableDataLoader(
            self.train_dataset,
            sampler=EpochShuffleSampler(len(self.train_dataset), self.seed),
            drop_last=self.drop_last,
            seed=self.seed,
            # Batches are slices of memory: no prefetch beyond DataLoader's default, and no
            # persistent_workers option (always on with workers).
            **loader_kwargs(
                self.batch_size,
                self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=True,
                prefetch_factor=None,
            ),
        )
