"""SpaceNetChips and fit_to_size: torchgeo samples as fixed-size geossl chips."""

from __future__ import annotations

import shutil
from pathlib import Path

import rasterio
import torch
from rasterio.transform import Affine
from torchgeo.datasets import SpaceNet1

from geossl.datasets.spacenet import (
    IGNORE_INDEX,
    SpaceNetChips,
    fit_to_size,
)
from geossl.synthetic.spacenet import SpaceNetSampleSummary


def test_fit_to_size_pads_with_ignore_and_crops_centre() -> None:
    sample = {"image": torch.ones(2, 5, 7), "mask": torch.ones(5, 7, dtype=torch.long)}
    padded = fit_to_size(sample, (8, 8))
    assert padded["image"].shape == (2, 8, 8)
    assert padded["image"][:, 5:].sum() == 0
    assert padded["image"][:, :, 7:].sum() == 0
    assert (padded["mask"][5:] == IGNORE_INDEX).all()
    assert (padded["mask"][:5, :7] == 1).all()
    sample["mask"][2, 3] = 0
    cropped = fit_to_size(sample, (3, 3))
    assert cropped["mask"].shape == (3, 3)
    assert cropped["mask"][1, 1] == 0


def test_chips_adapter_scales_and_pads(sn1: SpaceNetSampleSummary) -> None:
    base = SpaceNet1(sn1.root)
    chips = SpaceNetChips(base, pad_multiple=32)
    sample = chips[0]
    assert sample["image"].shape == (3, 416, 448)
    assert float(sample["image"].min()) >= 0
    assert float(sample["image"].max()) <= 1
    assert torch.allclose(sample["image"][:, :406, :439], base[0]["image"] / 255)
    assert (sample["mask"][406:] == IGNORE_INDEX).all()
    assert torch.equal(sample["mask"][:406, :439], base[0]["mask"])
    fixed = SpaceNetChips(base, size=(256, 256))[0]
    assert fixed["image"].shape == (3, 256, 256)
    assert fixed["mask"].shape == (256, 256)
    assert chips.resampled_masks == 0


def test_chips_adapter_fixes_torchgeo_mask_of_resampled_chip(
    sn1: SpaceNetSampleSummary, tmp_path: Path
) -> None:
    # A 3band chip stored at half resolution (203 x 220): torchgeo resamples it to 406 x 439 but
    # rasterises the polygons with the file's (2x coarser) transform on the 406 x 439 grid.
    root = tmp_path / "sn1"
    shutil.copytree(sn1.root, root)
    tile = next(t for t in sn1.tiles if t.building_pixels > 2000)
    path = root / tile.images["3band"].relative_to(sn1.root)
    with rasterio.open(path) as src:
        data, profile = src.read(), src.profile
    half = data[:, ::2, ::2][:, :203, :220]
    profile.update(height=203, width=220, transform=profile["transform"] @ Affine.scale(2))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(half)
    base = SpaceNet1(root)
    index = [Path(p).name for p in base.images].index(path.name)
    truth = SpaceNet1(sn1.root)[index]["mask"].bool()
    broken = base[index]["mask"].bool()
    chips = SpaceNetChips(base)
    fixed = chips[index]["mask"].bool()
    assert chips.resampled_masks == 1

    def iou(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a & b).sum()) / float((a | b).sum())

    assert iou(broken, truth) < 0.5  # torchgeo's mask is misplaced
    assert iou(fixed, truth) > 0.95  # ours follows the resampled image
