from typing import Any

import albumentations as A
import pytest
import torch

from geossl.transforms.targets import TargetAugmentation


def _square_sample(height: int = 64, width: int = 80) -> dict[str, Any]:
    """A white rectangle with its mask and its box: the target of every check below.

    The rectangle is off-centre on both axes, so each of the 8 flip/rotation outcomes moves it
    somewhere different (a centred one would hide the horizontal flip).
    """
    image = torch.zeros(3, height, width)
    image[:, 10:20, 25:50] = 1.0
    mask = torch.zeros(height, width, dtype=torch.long)
    mask[10:20, 25:50] = 1
    return {
        "image": image,
        "mask": mask,
        "bbox_xyxy": torch.tensor([[25.0, 10.0, 50.0, 20.0]]),
        "label": torch.tensor([7]),
        "image_id": "a.tif",
    }


def _pixel_box(image: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("crop_size", [None, 48])
def test_box_and_mask_follow_the_pixels(crop_size: int | None) -> None:
    augment = TargetAugmentation(crop_size=crop_size, colour=False, min_box_visibility=0.0)
    seen = set()
    for _ in range(40):
        out = augment(_square_sample())
        if crop_size is not None:
            assert out["image"].shape == (3, crop_size, crop_size)
            assert out["mask"].shape == (crop_size, crop_size)
        if out["bbox_xyxy"].numel() == 0:  # the crop missed the rectangle entirely
            assert not (out["image"] > 0.5).any()
            continue
        assert out["bbox_xyxy"][0].tolist() == _pixel_box(out["image"])
        assert torch.equal(out["mask"].bool(), out["image"][0] > 0.5)
        assert out["label"].tolist() == [7]
        assert out["image_id"] == "a.tif"
        seen.add(tuple(out["bbox_xyxy"][0].tolist()))
    # The geometry is actually random: without a crop there are 8 outcomes, each drawn with
    # p >= 1/16, so seeing 3 or fewer of them in 40 draws has a probability below 1e-8.
    assert len(seen) > 3


def test_mostly_cropped_boxes_are_dropped_with_their_labels() -> None:
    sample = _square_sample()
    sample["bbox_xyxy"] = torch.tensor([[25.0, 10.0, 50.0, 20.0], [0.0, 0.0, 80.0, 64.0]])
    sample["label"] = torch.tensor([7, 3])
    augment = TargetAugmentation(
        crop_size=32, flips=False, rot90=False, colour=False, min_box_visibility=0.9
    )
    for _ in range(20):
        out = augment(sample)
        labels = out["label"].tolist()
        assert 3 not in labels  # a 32 px crop never shows 90 % of the full-image box
        assert len(labels) == len(out["bbox_xyxy"])
        if labels:
            assert out["bbox_xyxy"][0].tolist() == _pixel_box(out["image"])


def test_degenerate_and_outside_boxes_are_removed_or_clipped() -> None:
    sample = _square_sample()
    sample["bbox_xyxy"] = torch.tensor(
        [[25.0, 10.0, 50.0, 20.0], [5.0, 5.0, 5.0, 9.0], [70.0, 50.0, 95.0, 70.0]]
    )
    sample["label"] = torch.tensor([7, 1, 2])
    out = TargetAugmentation(flips=False, rot90=False, colour=False, min_box_visibility=0.0)(sample)
    assert out["label"].tolist() == [7, 2]
    assert out["bbox_xyxy"][1].tolist() == [70.0, 50.0, 80.0, 64.0]


def test_colour_jitter_is_rgb_only() -> None:
    augment = TargetAugmentation(flips=False, rot90=False)
    rgb = augment._pipeline(rgb=True)
    other = augment._pipeline(rgb=False)
    assert any(isinstance(t, A.ColorJitter) for t in rgb.transforms)
    assert not any(isinstance(t, A.ColorJitter) for t in other.transforms)
    for bands in (1, 4, 13):
        out = augment({"image": torch.rand(bands, 32, 32)})
        assert out["image"].shape == (bands, 32, 32)
        assert float(out["image"].min()) >= 0.0
        assert float(out["image"].max()) <= 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="crop_size"):
        TargetAugmentation(crop_size=0)
    with pytest.raises(ValueError, match="min_box_visibility"):
        TargetAugmentation(min_box_visibility=1.5)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        TargetAugmentation()({"image": torch.rand(32, 32)})


def test_each_process_draws_its_own_stream() -> None:
    augment = TargetAugmentation(crop_size=16, colour=False)
    augment(_square_sample())  # builds the pipeline in this process
    first = augment._pipelines[True]
    augment._pid = -1  # as seen from a forked DataLoader worker
    augment(_square_sample())
    assert augment._pipelines[True] is not first
