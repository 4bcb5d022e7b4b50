"""Frozen-backbone features of a probe dataset: resized, scaled, normalised, pooled."""

from collections.abc import Callable, Sequence, Sized
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from geossl.evaluation.probe_data import Sample

__all__ = ["extract_features"]


class _Resized(Dataset[Sample]):
    """Samples resized to ``size`` in the loader workers (uint8 stays uint8: a small transfer)."""

    def __init__(self, dataset: Dataset[Sample], size: int) -> None:
        self.dataset = dataset
        self.size = size

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        image = sample["image"]
        if image.shape[-2:] != (self.size, self.size):
            resized = F.interpolate(
                image[None].float(), size=(self.size, self.size), mode="bilinear", antialias=True
            )[0]
            image = (
                resized.round().clamp(0, 255).to(torch.uint8)
                if image.dtype == torch.uint8
                else resized
            )
        return {"image": image, "label": torch.as_tensor(sample["label"], dtype=torch.int64)}


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset[Sample],
    *,
    image_size: int,
    scale: float,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    workers: int = 2,
    device: str | torch.device = "cpu",
    progress: Callable[[int], object] | None = None,
) -> tuple[Tensor, Tensor]:
    """Pooled features of every image of ``dataset`` through the frozen ``backbone``.

    Args:
        backbone: maps ``[B, C, S, S]`` to ``[B, F]`` (a timm model with ``num_classes=0``).
        dataset: ``{"image": [C, H, W], "label"}`` samples.
        image_size: the side images are resized to.
        scale: stored value to ``[0, 1]`` factor.
        mean: per-band mean of the ``[0, 1]`` input.
        std: per-band standard deviation.
        batch_size: images per forward pass.
        workers: loader processes (decode and resize).
        device: where the backbone runs.
        progress: called with the number of images of every batch done.

    Returns:
        ``float32 [N, F]`` features and ``int64 [N]`` labels, on the CPU.
    """
    loader = DataLoader(
        _Resized(dataset, image_size),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=False,
    )
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    try:
        for batch in loader:
            x = batch["image"].to(device).float() * scale
            if x.shape[1] != mean_t.shape[1]:
                raise ValueError(
                    f"the images have {x.shape[1]} bands but the weights expect {mean_t.shape[1]}"
                )
            features.append(backbone((x - mean_t) / std_t).float().flatten(1).cpu())
            labels.append(batch["label"])
            if progress is not None:
                progress(len(x))
    finally:
        backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)
