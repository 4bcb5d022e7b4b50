"""The probe's datasets: a scene folder or a torchgeo dataset, split into train / val / test.

A scene folder (``labels.csv``) gets a fixed, seeded stratified split, 60 / 20 / 20 per class
([geossl.datasets.scenes.stratified_split][]); a torchgeo dataset keeps its own splits.

Examples:
    >>> PROBE_DATASETS
    ('folder', 'eurosat', 'ucmerced', 'resisc45')
"""

import os
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset, Subset

from geossl.datasets.scenes import stratified_split

__all__ = ["PROBE_DATASETS", "ProbeData", "Sample", "load_probe_data"]

#: ``--dataset`` values: a scene folder, or a torchgeo dataset on disk (never downloaded).
PROBE_DATASETS = ("folder", "eurosat", "ucmerced", "resisc45")

Sample = dict[str, Tensor]


@dataclass
class ProbeData:
    """The three splits of a probe dataset and how to read their images.

    Attributes:
        name: the dataset's name in the results (the folder name, or ``eurosat``, ...).
        splits: ``train`` / ``val`` / ``test`` datasets of ``{"image", "label"}`` samples.
        classes: class names by index.
        scale: factor from the stored values to ``[0, 1]`` (1/255 for 8-bit images).
        bands: band names when known (torchgeo datasets), else empty.
    """

    name: str
    splits: dict[str, Dataset[Sample]]
    classes: tuple[str, ...]
    scale: float
    bands: tuple[str, ...] = ()


def _folder_data(root: Path, seed: int) -> ProbeData:
    from geossl.datasets.scenes import LabelledScenes

    scenes = LabelledScenes(root)
    parts = stratified_split(scenes.labels, seed)
    splits: dict[str, Dataset[Sample]] = {k: Subset(scenes, v) for k, v in parts.items()}
    return ProbeData(root.name, splits, scenes.classes, 1 / 255)


def _torchgeo_data(name: str, root: Path, in_chans: int) -> ProbeData:
    from torchgeo import datasets

    if name == "eurosat":
        bands = datasets.EuroSAT.rgb_bands if in_chans == 3 else datasets.EuroSAT.all_band_names
        if in_chans not in (3, len(datasets.EuroSAT.all_band_names)):
            raise ValueError(
                f"EuroSAT has 13 bands (or RGB): weights of {in_chans} bands fit neither"
            )
        splits: dict[str, Dataset[Sample]] = {
            split: datasets.EuroSAT(root, split=split, bands=bands)
            for split in ("train", "val", "test")
        }
        # EuroSAT stores reflectance x 10,000 (uint16).
        return ProbeData(name, splits, tuple(splits["train"].classes), 1e-4, tuple(bands))  # type: ignore[attr-defined]
    cls = {"ucmerced": datasets.UCMerced, "resisc45": datasets.RESISC45}[name]
    splits = {split: cls(root, split=split) for split in ("train", "val", "test")}
    return ProbeData(name, splits, tuple(splits["train"].classes), 1 / 255, ("R", "G", "B"))  # type: ignore[attr-defined]


def load_probe_data(
    data: str | os.PathLike[str], dataset: str = "folder", *, in_chans: int = 3, seed: int = 0
) -> ProbeData:
    """Open a probe dataset.

    Args:
        data: the scene folder, or the root of a torchgeo dataset (read, never downloaded).
        dataset: one of ``PROBE_DATASETS``.
        in_chans: the weights' band count (EuroSAT: 3 reads B04, B03, B02; 13 reads all).
        seed: the scene folder's split seed.

    Returns:
        The splits, classes and scale.

    Raises:
        ValueError: for an unknown ``dataset`` or bands that do not fit.
        FileNotFoundError: if the data is not there (torchgeo's or geossl's message).
    """
    if dataset not in PROBE_DATASETS:
        raise ValueError(
            f"unknown --dataset {dataset!r}: choose one of {', '.join(PROBE_DATASETS)}"
        )
    root = Path(data)
    if dataset == "folder":
        return _folder_data(root, seed)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset} root folder does not exist: {root}")
    return _torchgeo_data(dataset, root, in_chans)
