"""The one validated per-band normalisation value (mean, std on the ``[0, 1]`` scale).

Data modules produce it, the pretraining task, downstream tasks, the augmentation, the embedding
pipeline and the weights metadata take it: each checks its statistics through
[`Normalization.of`][geossl.utils.normalization.Normalization.of], so a wrong length, a NaN or a
zero std is the same one-line error everywhere, naming where the values came from.

Example:
    >>> from geossl.utils.normalization import Normalization
    >>> norm = Normalization.of([0.4, 0.4, 0.3], [0.2, 0.2, 0.2], channels=3, where="model")
    >>> norm.channels, norm.mean
    (3, (0.4, 0.4, 0.3))
    >>> Normalization.of([0.4, 0.4], [0.2, 0.0], where="model")
    Traceback (most recent call last):
    ...
    ValueError: model: std must be finite and > 0, got [0.2, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Normalization"]


@dataclass(frozen=True, slots=True)
class Normalization:
    """Per-band ``mean`` and ``std``: ``x' = (x - mean) / std``, one value per band.

    Build it with [`of`][geossl.utils.normalization.Normalization.of], which validates; the fields
    are plain tuples of floats.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(
        cls,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        channels: int | None = None,
        where: str = "normalization",
    ) -> Normalization:
        """Validate and build: one finite mean and one finite ``std > 0`` per band.

        Args:
            mean: per-band means.
            std: per-band standard deviations.
            channels: the bands the values must cover, None for any number (at least one).
            where: what the values belong to (``model``, a weights file), the error's prefix.

        Raises:
            ValueError: ``{where}: ...`` naming the length, the non-finite or non-positive values.
        """
        mean_t = tuple(float(m) for m in mean)
        std_t = tuple(float(s) for s in std)
        if not mean_t or len(mean_t) != len(std_t):
            raise ValueError(
                f"{where}: mean and std need one value per band, got {len(mean_t)} and {len(std_t)}"
            )
        if channels is not None and len(mean_t) != channels:
            raise ValueError(
                f"{where}: mean and std have {len(mean_t)} values, expected {channels} "
                "(one per band)"
            )
        if not all(math.isfinite(m) for m in mean_t):
            raise ValueError(f"{where}: mean must be finite, got {list(mean_t)}")
        if not all(math.isfinite(s) and s > 0 for s in std_t):
            raise ValueError(f"{where}: std must be finite and > 0, got {list(std_t)}")
        return cls(mean_t, std_t)

    @property
    def channels(self) -> int:
        """Bands covered."""
        return len(self.mean)

    def tensors(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``mean`` and ``std`` as ``[C, 1, 1]`` tensors, ready to broadcast over images."""
        shape = (self.channels, 1, 1)
        return (
            torch.tensor(self.mean, device=device, dtype=dtype).view(shape),
            torch.tensor(self.std, device=device, dtype=dtype).view(shape),
        )
