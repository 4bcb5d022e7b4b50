"""The xView chip dataset: `XView` reads one chip and its boxes per item.

The chips come from the cached chip index of
[`load_xview_chips`][geossl.datasets.xview.chips.load_xview_chips] over the train or test images of
[`split_xview_images`][geossl.datasets.xview.labels.split_xview_images];
[`read_xview_chip`][geossl.datasets.xview.dataset.read_xview_chip] reads one window of an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from rasterio.windows import Window
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from geossl.datasets.errors import BadDatasetError
from geossl.datasets.plotting import image_figure, rgb_image
from geossl.datasets.xview.chips import XViewChipParams, load_xview_chips
from geossl.datasets.xview.constants import (
    _DTYPE_SCALE,
    XVIEW_CLASS_NAMES,
    XVIEW_IMAGES_DIR,
    XVIEW_TEST_FRACTION,
    IntArray,
    Sample,
)
from geossl.datasets.xview.labels import XViewReport, split_xview_images

__all__ = ["XView", "read_xview_chip"]


def read_xview_chip(path: str | os.PathLike[str], window: Sequence[int]) -> Tensor:
    """Read one chip of an image through a rasterio window (never the whole image).

    Args:
        path: the GeoTIFF.
        window: ``(col_off, row_off, width, height)``; the part past the image edge is zero.

    Returns:
        float32 ``[3, height, width]`` in ``[0, 1]`` (bands 1-3; 8-bit divided by 255, 16-bit by
        2047, WorldView's 11-bit range, and clipped).

    Raises:
        BadDatasetError: if the image has fewer than 3 bands or an unsupported data type.
    """
    x0, y0, w, h = (int(v) for v in window)
    with rasterio.open(path) as src:
        if src.count < 3:
            raise BadDatasetError(path, f"{src.count} band(s); xView images have 3 (RGB)")
        dtype = str(src.dtypes[0])
        scale = _DTYPE_SCALE.get(dtype)
        if scale is None:
            raise BadDatasetError(path, f"unsupported data type {dtype} (uint8 or uint16)")
        read_w = max(min(w, src.width - x0), 0)
        read_h = max(min(h, src.height - y0), 0)
        out = np.zeros((3, h, w), dtype=np.float32)
        if read_w and read_h:
            data = src.read(indexes=[1, 2, 3], window=Window(x0, y0, read_w, read_h))
            out[:, :read_h, :read_w] = data.astype(np.float32) * scale
    return torch.from_numpy(np.clip(out, 0.0, 1.0, out=out))


class XView(NonGeoDataset):
    """xView chips of one split, with their boxes (the protocol: `geossl.datasets.xview`).

    A sample is a dict:

    - ``image``: float32 ``[3, chip_size, chip_size]`` in ``[0, 1]``;
    - ``bbox_xyxy``: float32 ``[N, 4]`` chip-pixel ``x_min, y_min, x_max, y_max``;
    - ``label``: int64 ``[N]`` class ``0..59`` (`XVIEW_CLASS_NAMES`);
    - ``image_id``: the source image (``"NNNN.tif"``);
    - ``window``: int64 ``[4]`` ``(col_off, row_off, width, height)`` of the chip in the image.

    Args:
        root: the dataset root (``xView_train.geojson`` and ``train_images/``).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``
            ([`split_xview_images`][geossl.datasets.xview.labels.split_xview_images]).
        chips: the chipping parameters (default: the paper's random 416 px chips).
        test_fraction: share of the images for test (default gives the paper's 146 of 846).
        val_fraction: share of the non-test images for validation.
        split_seed: seed of the image split (independent of the chip seed).
        transforms: called on each sample (e.g. a
            `geossl.transforms.targets.TargetAugmentation`).
        cache_dir: cache folder; default ``root/.geossl-cache``.

    Raises:
        ValueError: on an unknown split.
        DatasetNotFoundError: see `load_xview_labels`.
        BadDatasetError: see `load_xview_labels`.

    Examples:
        >>> import tempfile
        >>> from geossl.datasets.xview import XView, XViewChipParams
        >>> from geossl.synthetic.xview import generate_xview_sample
        >>> with tempfile.TemporaryDirectory() as root:
        ...     _ = generate_xview_sample(root, images=3, image_size=256)
        ...     dataset = XView(root, "all", XViewChipParams(chip_size=128, crops_per_image=2))
        ...     sample = dataset[0]
        >>> len(dataset), sample["image"].shape, sample["image"].dtype
        (6, torch.Size([3, 128, 128]), torch.float32)
        >>> sorted(sample)
        ['bbox_xyxy', 'image', 'image_id', 'label', 'window']
        >>> figure = dataset.plot(sample)  # torchgeo's plot: the chip with its boxes
        >>> len(figure.axes), len(figure.axes[0].patches) == len(sample["bbox_xyxy"])
        (1, True)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "val", "test", "all"] = "train",
        chips: XViewChipParams | None = None,
        *,
        test_fraction: float = XVIEW_TEST_FRACTION,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        transforms: Callable[[Sample], Sample] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.params = chips if chips is not None else XViewChipParams()
        self.transforms = transforms
        self.labels, self.chips = load_xview_chips(root, self.params, cache_dir=cache_dir)
        self.splits = split_xview_images(
            self.labels.image_ids,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            seed=split_seed,
        )
        wanted = set(self.labels.image_ids) if split == "all" else set(self.splits[split])
        in_split = np.asarray([i in wanted for i in self.labels.image_ids], dtype=bool)
        self.indices: IntArray = np.flatnonzero(in_split[self.chips.chip_image]).astype(np.int64)

    @property
    def report(self) -> XViewReport:
        """What was skipped and clipped while reading the labels."""
        return self.labels.report

    @property
    def image_ids(self) -> tuple[str, ...]:
        """The images of this split."""
        if self.split == "all":
            return self.labels.image_ids
        return self.splits[self.split]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        """Chip ``index`` of this split (see the class doc for the keys)."""
        chip = int(self.indices[index])
        image_id = self.chips.image_ids[int(self.chips.chip_image[chip])]
        window = self.chips.windows[chip]
        boxes, labels = self.chips.chip(chip)
        sample: Sample = {
            "image": read_xview_chip(self.root / XVIEW_IMAGES_DIR / image_id, window),
            "bbox_xyxy": torch.from_numpy(boxes.copy()),
            "label": torch.from_numpy(labels.copy()),
            "image_id": image_id,
            "window": torch.from_numpy(window.copy()),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(self, sample: Sample, show_titles: bool = True, suptitle: str | None = None) -> Figure:
        """Draw a chip as RGB with its boxes (torchgeo's ``plot``).

        Args:
            sample: a sample of this dataset; with ``prediction_bbox_xyxy`` (and optionally
                ``prediction_label``) the predicted boxes are drawn on a second axis.
            show_titles: write the image id and the box count above the chip, and the class of
                each box at its corner.
            suptitle: an optional figure title.

        Returns:
            The figure: one axis (two with predictions), one rectangle patch per box.
        """
        rgb = rgb_image(sample["image"])
        where = f"{sample.get('image_id', 'chip')}"
        drawn = [("bbox_xyxy", "label", "boxes")]
        if "prediction_bbox_xyxy" in sample:
            drawn.append(("prediction_bbox_xyxy", "prediction_label", "predictions"))
        titles = [f"{where}: {len(sample[key])} {what}" for key, _, what in drawn]
        figure = image_figure(
            [rgb] * len(drawn), titles, show_titles=show_titles, suptitle=suptitle
        )
        for ax, (key, label_key, _) in zip(figure.axes, drawn, strict=True):
            labels = sample.get(label_key)
            for k, box in enumerate(sample[key].tolist()):
                x0, y0, x1, y1 = box
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="yellow"))
                if show_titles and labels is not None:
                    name = XVIEW_CLASS_NAMES[int(labels[k])]
                    ax.text(x0, y0, name, color="yellow", fontsize=6, va="bottom")
        return figure
