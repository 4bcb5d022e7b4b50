"""torchgeo's SpaceNet chips as geossl samples: scaled, fitted to a fixed size, masks fixed.

[`SpaceNetChips`][geossl.datasets.spacenet.chips.SpaceNetChips] adapts torchgeo's samples;
[`fit_to_size`][geossl.datasets.spacenet.chips.fit_to_size] and
[`padded_size`][geossl.datasets.spacenet.chips.padded_size] are the size helpers that make batches
stack.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import rasterio
import torch
from matplotlib.figure import Figure
from rasterio.transform import Affine
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from geossl.datasets.plotting import mask_figure
from geossl.datasets.spacenet.constants import IGNORE_INDEX, default_scale
from geossl.datasets.spacenet.labels import rasterize_buildings, read_building_labels
from geossl.utils.checks import check_at_least

__all__ = ["SpaceNetChips", "fit_to_size", "padded_size"]


def fit_to_size(
    sample: dict[str, Any],
    size: tuple[int, int],
    *,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Any]:
    """Centre-crop or pad ``image`` ``[C, H, W]`` and ``mask`` ``[H, W]`` to ``size``.

    Padding goes to the bottom / right: ``image`` with 0, ``mask`` with ``ignore_index`` (padded
    pixels count neither in the loss nor in the metrics). Cropping keeps the centre.

    Args:
        sample: a sample with ``image`` and optionally ``mask``.
        size: ``(height, width)``.
        ignore_index: the mask value of padded pixels.

    Returns:
        A new dict; other keys pass through.
    """
    image: Tensor = sample["image"]
    height, width = image.shape[-2:]
    out_h, out_w = size
    top = max(0, (height - out_h) // 2)
    left = max(0, (width - out_w) // 2)
    result = dict(sample)
    crop = image[..., top : top + out_h, left : left + out_w]
    pad = (0, out_w - crop.shape[-1], 0, out_h - crop.shape[-2])
    result["image"] = torch.nn.functional.pad(crop, pad, value=0.0)
    if "mask" in sample:
        mask: Tensor = sample["mask"][..., top : top + out_h, left : left + out_w]
        result["mask"] = torch.nn.functional.pad(mask, pad, value=ignore_index)
    return result


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``multiple`` (32 for a 5-stage encoder)."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


class _TorchGeoSpaceNet(Protocol):
    """What `SpaceNetChips` uses of a torchgeo ``SpaceNet`` dataset."""

    images: list[str]
    masks: list[str]
    split: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Tensor]: ...


class SpaceNetChips(NonGeoDataset):
    """torchgeo's SpaceNet samples (``SpaceNet1``, ``SpaceNet2``, ...) as geossl samples.

    A torchgeo sample is ``image`` float32 of raw digital numbers and ``mask`` int64; this
    adapter returns ``image`` float32 ``[C, H, W]`` in ``[0, 1]`` (``clip(dn * scale, 0, 1)``,
    ``scale`` from the first image's dtype by default) and ``mask`` int64 ``[H, W]``, then
    optionally fits both to a fixed size
    ([`fit_to_size`][geossl.datasets.spacenet.chips.fit_to_size]) so that batches stack: SpaceNet-1
    ``3band`` chips are 406 x 439, which a 5-stage encoder cannot take unpadded.

    torchgeo defect fixed here: ``SpaceNet._load_image`` resamples an image to the collection's
    ``chip_size`` (SpaceNet-1: 406 x 439, 102 x 110; SpaceNet-2 ``MUL``: 163 x 163) but returns the
    file's own transform, with which ``_load_mask`` rasterises the polygons on the resampled
    shape: for a chip of another size the mask is shifted / cropped against the image. When the
    file's size differs from the sample's, the mask is rasterised again on the resampled grid
    (transform scaled by file size / sample size); `resampled_masks` counts those (per
    process).

    Args:
        base: a torchgeo SpaceNet dataset of the ``train`` split (the only one with labels).
        scale: raw value -> ``[0, 1]`` factor; None for
            [`default_scale`][geossl.datasets.spacenet.constants.default_scale] of the files' dtype.
        size: ``(height, width)`` to crop / pad every sample to; None keeps the size.
        pad_multiple: pad (bottom / right) to multiples of this when ``size`` is None; None
            keeps the size.
        ignore_index: mask value of padded pixels.

    Raises:
        ValueError: if ``base`` is not a ``train`` split or is empty.
    """

    def __init__(
        self,
        base: _TorchGeoSpaceNet,
        *,
        scale: float | None = None,
        size: tuple[int, int] | None = None,
        pad_multiple: int | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if getattr(base, "split", "train") != "train":
            raise ValueError(f"SpaceNet split {base.split!r} has no labels; use split='train'")
        if len(base) == 0:
            raise ValueError("the torchgeo SpaceNet dataset is empty")
        if pad_multiple is not None:
            check_at_least("pad_multiple", pad_multiple, 1)
        self.base = base
        if scale is None:
            with rasterio.open(base.images[0]) as src:
                scale = default_scale(src.dtypes[0])
        self.scale = float(scale)
        self.size = size
        self.pad_multiple = pad_multiple
        self.ignore_index = ignore_index
        #: Samples whose mask was rasterised again because torchgeo resampled the image.
        self.resampled_masks = 0

    def __len__(self) -> int:
        """Number of chips."""
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """Chip ``index``: ``image`` float ``[C, H, W]`` in ``[0, 1]``, ``mask`` long ``[H, W]``."""
        sample = self.base[index]
        image = (sample["image"].float() * self.scale).clamp_(0.0, 1.0)
        mask = sample["mask"].long()
        height, width = image.shape[-2:]
        with rasterio.open(self.base.images[index]) as src:
            file_shape, transform, crs = (src.height, src.width), src.transform, src.crs
        if file_shape != (height, width):
            grid = transform @ Affine.scale(file_shape[1] / width, file_shape[0] / height)
            labels = read_building_labels(self.base.masks[index])
            fixed = rasterize_buildings(labels, transform=grid, crs=crs, shape=(height, width))
            mask = torch.from_numpy(fixed.astype(np.int64))
            self.resampled_masks += 1
        out: dict[str, Tensor] = {"image": image, "mask": mask}
        if self.size is not None:
            return fit_to_size(out, self.size, ignore_index=self.ignore_index)
        if self.pad_multiple is not None:
            target = padded_size(height, width, self.pad_multiple)
            return fit_to_size(out, target, ignore_index=self.ignore_index)
        return out

    def plot(
        self, sample: dict[str, Tensor], show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Draw a chip as RGB (its first three bands) with the building mask overlaid.

        torchgeo's ``plot`` contract (torchgeo's own SpaceNet ``plot`` shows the raw digital
        numbers of the base; this one the scaled chip); a ``prediction`` mask goes on a second
        axis. Padded pixels (``ignore_index``) are not drawn.

        Args:
            sample: a sample of this dataset.
            show_titles: write a title above the image.
            suptitle: an optional figure title.

        Returns:
            The figure: one axis, two with a prediction.

        Examples:
            >>> import tempfile
            >>> from torchgeo.datasets import SpaceNet1
            >>> from geossl.synthetic.spacenet import generate_spacenet_sample
            >>> root = tempfile.mkdtemp()
            >>> _ = generate_spacenet_sample(root, tiles=1, seed=0)
            >>> chips = SpaceNetChips(SpaceNet1(root), pad_multiple=32)
            >>> len(chips.plot(chips[0]).axes)
            1
        """
        return mask_figure(sample, "buildings", show_titles=show_titles, suptitle=suptitle)
