"""Joint augmentation of images with their boxes and masks (albumentations), for fine-tuning.

Detection and segmentation targets must follow the pixels: a flip, 90-degree rotation or crop
applied to the image is applied to the boxes (``bbox_xyxy``) and the mask with the same
parameters. albumentations does this for one sample at a time on the CPU, in the data loader
workers: downstream fine-tuning batches are small (tens of 416 px chips) and the detector's step
dominates, so the batched on-device augmentation of pretraining (`geossl.transforms`) is not
needed here.
"""

import os
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import Tensor

from geossl.utils.checks import check_at_least, check_fraction

__all__ = ["TargetAugmentation"]


class TargetAugmentation:
    """Flip, rotate by 90 degrees, crop and colour-jitter a sample together with its targets.

    The sample is a dict with ``image`` (float ``[C, H, W]`` in ``[0, 1]``) and optionally
    ``mask`` (long ``[H, W]``), ``bbox_xyxy`` (float ``[N, 4]``, pixel ``x_min, y_min, x_max,
    y_max``) and ``label`` (long ``[N]``, one per box); other keys pass through unchanged.

    - Geometry: horizontal and vertical flips (p = 0.5 each), a random multiple of 90 degrees
      (p = 0.5), then a random ``crop_size`` crop (zero-padded first when the image is smaller).
      Masks use nearest-neighbour interpolation (albumentations does so for ``mask``).
    - Boxes: clipped to the image; a box keeping less than ``min_box_visibility`` of its area
      after a crop is dropped together with its label.
    - Colour: on 3-band images albumentations' ColorJitter (brightness, contrast, saturation 0.2,
      hue 0.05); on any other band count only band-agnostic brightness / contrast (0.2), since
      saturation and hue mean nothing for, e.g., a pan band or 13 Sentinel-2 bands.

    Args:
        crop_size: side of the random square crop; None keeps the size.
        flips: horizontal and vertical flips.
        rot90: random 90-degree rotations.
        colour: photometric jitter (p = 0.8).
        min_box_visibility: smallest visible fraction of a box kept after cropping.

    Raises:
        ValueError: if ``crop_size`` < 1 or ``min_box_visibility`` is outside ``[0, 1]``.
    """

    def __init__(
        self,
        crop_size: int | None = None,
        flips: bool = True,
        rot90: bool = True,
        colour: bool = True,
        min_box_visibility: float = 0.3,
    ) -> None:
        if crop_size is not None:
            check_at_least("crop_size", crop_size, 1)
        check_fraction("min_box_visibility", min_box_visibility)
        self.crop_size = crop_size
        self.flips = flips
        self.rot90 = rot90
        self.colour = colour
        self.min_box_visibility = min_box_visibility
        self._pipelines: dict[bool, A.Compose] = {}
        self._pid = os.getpid()
        self._geometric = flips or rot90 or crop_size is not None

    def _pipeline(self, rgb: bool) -> A.Compose:
        """The albumentations pipeline for RGB or other band sets (built once per process).

        albumentations draws from a generator seeded from OS entropy when the pipeline is built;
        a pipeline built before DataLoader workers fork would give every worker the same stream,
        so each process builds its own.
        """
        if self._pid != os.getpid():
            self._pipelines.clear()
            self._pid = os.getpid()
        if rgb in self._pipelines:
            return self._pipelines[rgb]
        steps: list[Any] = []
        if self.flips:
            steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
        if self.rot90:
            steps.append(A.RandomRotate90(p=0.5))
        if self.crop_size is not None:
            size = self.crop_size
            steps += [
                A.PadIfNeeded(min_height=size, min_width=size, border_mode=0, fill=0, fill_mask=0),
                A.RandomCrop(height=size, width=size),
            ]
        if self.colour:
            jitter: Any
            if rgb:
                jitter = A.ColorJitter(
                    brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.8
                )
            else:
                jitter = A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8)
            steps.append(jitter)
        # Without a geometric step there is nothing to do to the boxes (and albumentations warns).
        bbox_params = (
            A.BboxParams(
                format="pascal_voc",
                label_fields=["box_labels"],
                min_visibility=self.min_box_visibility,
                clip=True,
            )
            if self._geometric
            else None
        )
        pipeline = A.Compose(steps, bbox_params=bbox_params)
        self._pipelines[rgb] = pipeline
        return pipeline

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Augment ``sample`` (see the class doc); returns a new dict."""
        image: Tensor = sample["image"]
        if image.ndim != 3:
            raise ValueError(f"image must be [C, H, W], got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        inputs: dict[str, Any] = {
            "image": np.ascontiguousarray(image.permute(1, 2, 0).float().numpy()),
        }
        has_mask = "mask" in sample
        if has_mask:
            inputs["mask"] = sample["mask"].numpy()
        has_boxes = "bbox_xyxy" in sample
        boxes = np.zeros((0, 4), dtype=np.float32)
        labels = np.zeros((0,), dtype=np.int64)
        if has_boxes:
            boxes = sample["bbox_xyxy"].reshape(-1, 4).float().numpy().copy()
            labels = sample["label"].reshape(-1).long().numpy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
            # albumentations refuses degenerate boxes; a box with no area marks nothing anyway.
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, labels = boxes[keep], labels[keep]
        if self._geometric:
            inputs["bboxes"] = boxes
            inputs["box_labels"] = labels
        out = self._pipeline(rgb=image.shape[0] == 3)(**inputs)
        if not self._geometric:
            out["bboxes"], out["box_labels"] = boxes, labels

        result = dict(sample)
        augmented = np.clip(out["image"], 0.0, 1.0)
        result["image"] = torch.from_numpy(np.ascontiguousarray(augmented)).permute(2, 0, 1)
        if has_mask:
            result["mask"] = torch.as_tensor(np.ascontiguousarray(out["mask"])).to(
                sample["mask"].dtype
            )
        if has_boxes:
            out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            out_labels = np.asarray(out["box_labels"], dtype=np.int64).reshape(-1)
            result["bbox_xyxy"] = torch.from_numpy(out_boxes)
            result["label"] = torch.from_numpy(out_labels).to(sample["label"].dtype)
        return result
