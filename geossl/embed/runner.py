"""The model on its device: batches of chips in, embeddings out, across block boundaries."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from geossl.embed.chips import ChipBlock

__all__ = ["describe_pooling"]


def describe_pooling(model: nn.Module) -> str:
    """How a timm backbone pools its feature map (for the output's metadata).

    Args:
        model: the backbone.

    Returns:
        timm's pool type (``"avg"`` for ResNets, ``"token"``/``"avg"`` for ViTs), or
        ``"model output"`` when the model does not say.
    """
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str) and pool:
        return pool
    kind = getattr(pool, "pool_type", None)
    return str(kind) if kind else "model output"


class _Model:
    """The backbone on its device: ``[N, C, H, W]`` float32 numpy in, ``[N, D]`` float32 out."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.device = device

    def __call__(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = self.model(x)
            else:
                out = self.model(x)
            if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"the model must return pooled features [B, D] (a timm model with "
                    f"num_classes=0); got {shape} for a batch of {len(x)}"
                )
            result: npt.NDArray[np.float32] = out.float().cpu().numpy()
        return result


@dataclass(slots=True)
class _Pending:
    block: ChipBlock
    next: int = 0  # next chip to put in a batch
    filled: int = 0  # chips embedded


def _embed_blocks(
    blocks: Iterator[ChipBlock], run: _Model, batch_size: int, dim: int
) -> Iterator[ChipBlock]:
    """Batch the kept chips of consecutive blocks; yield each block, embedded, in order."""
    pending: deque[_Pending] = deque()
    waiting = 0  # chips read but not yet embedded

    def run_batch() -> None:
        nonlocal waiting
        parts: list[tuple[_Pending, int, int]] = []
        size = 0
        for entry in pending:
            left = entry.block.num_kept - entry.next
            if left <= 0:
                continue
            take = min(left, batch_size - size)
            parts.append((entry, entry.next, entry.next + take))
            entry.next += take
            size += take
            if size == batch_size:
                break
        pixels = np.concatenate([p.block.pixels[a:b] for p, a, b in parts])
        out = run(pixels)
        offset = 0
        for entry, a, b in parts:
            embeddings = entry.block.embeddings
            if embeddings is not None:
                embeddings[a:b] = out[offset : offset + b - a]
            entry.filled += b - a
            offset += b - a
        waiting -= size

    def ready() -> Iterator[ChipBlock]:
        while pending and pending[0].filled == pending[0].block.num_kept:
            block = pending.popleft().block
            block.pixels = block.pixels[:0]  # free the pixels early
            yield block

    for block in blocks:
        block.embeddings = np.empty((block.num_kept, dim), np.float32)
        pending.append(_Pending(block))
        waiting += block.num_kept
        while waiting >= batch_size:
            run_batch()
        yield from ready()
    while waiting > 0:
        run_batch()
    yield from ready()


def _probe_dim(run: _Model, channels: int, chip_size: int) -> int:
    """Embedding size D from one forward pass on zeros (also checks the output's shape)."""
    out = run(np.zeros((1, channels, chip_size, chip_size), np.float32))
    return int(out.shape[1])
