"""The optimiser of pretraining: fused SGD, linear warm-up, then a cosine to 0, per step."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

__all__ = ["WarmupCosineSchedule", "pretrain_optimizer", "warmup_steps"]


@dataclass(frozen=True)
class WarmupCosineSchedule:
    r"""Learning-rate factor: linear warm-up, then cosine annealing to 0 (per optimiser step).

    $$
    f(s) = \begin{cases} (s + 1) / W & s < W \\
    \tfrac12 \left(1 + \cos\left(\pi \min\left(1, \frac{s - W}{T - W}\right)\right)
    \right) & s \ge W \end{cases}
    $$

    MoCo-v2 / GeoSSL anneal with a cosine over the whole run (no warm-up); geossl steps it per
    optimiser step rather than per epoch.

    Attributes:
        warmup_steps: $W$.
        total_steps: $T$.

    Example:
        >>> schedule = WarmupCosineSchedule(warmup_steps=2, total_steps=6)
        >>> tuple(round(schedule(s), 3) for s in range(7))
        (0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0)
    """

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        """Factor for ``step``.

        Args:
            step: optimiser steps done.

        Returns:
            The multiplier of the base learning rate.
        """
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_steps(trainer: Trainer, warmup_epochs: int, total_steps: int) -> int:
    """Optimiser steps in ``warmup_epochs`` epochs of ``trainer``'s run (at most the whole run).

    Args:
        trainer: the trainer, attached to the task (its train loader is set up if need be).
        warmup_epochs: epochs of warm-up (0: none).
        total_steps: optimiser steps of the whole run.

    Returns:
        The warm-up length in optimiser steps.

    Raises:
        ValueError: if the length of an epoch is unknown.
    """
    if warmup_epochs <= 0:
        return 0
    batches = trainer.num_training_batches
    if not math.isfinite(batches):  # max_steps-only runs do not load the data first
        trainer.fit_loop.setup_data()
        batches = trainer.num_training_batches
    if not math.isfinite(batches):
        raise ValueError(
            "model.warmup_epochs needs a known epoch length (a sized train dataloader)"
        )
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    return min(int(warmup_epochs) * per_epoch, int(total_steps))


def pretrain_optimizer(
    module: LightningModule, hp: Mapping[str, Any]
) -> OptimizerLRSchedulerConfig:
    """SGD (fused) over every trainable parameter, cosine schedule per step with warm-up.

    The trainable parameters are the query backbone, its projection head and the terms' own
    modules (e.g. the geo head); the key encoder is frozen and never in the optimiser.

    Args:
        module: the task, attached to its trainer.
        hp: its hyper-parameters (``lr``, ``sgd_momentum``, ``weight_decay``, ``warmup_epochs``).

    Returns:
        The optimiser and its per-step scheduler.

    Raises:
        ValueError: if the run's length is unknown (infinite) or, with warm-up, the length of
            an epoch is unknown.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    # One fused kernel for the whole update instead of several multi-tensor ones (the same
    # arithmetic), where PyTorch has it: CPU and CUDA.
    fused = all(p.device.type in {"cpu", "cuda"} and p.is_floating_point() for p in params)
    optimizer = torch.optim.SGD(
        params,
        lr=hp["lr"],
        momentum=hp["sgd_momentum"],
        weight_decay=hp["weight_decay"],
        fused=fused or None,
    )
    total = module.trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ValueError("the cosine schedule needs a finite run: set max_epochs or max_steps")
    warmup = warmup_steps(module.trainer, int(hp["warmup_epochs"]), int(total))
    schedule = WarmupCosineSchedule(warmup_steps=warmup, total_steps=int(total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }
