"""The optimiser of pretraining: fused SGD, linear warm-up, then a cosine to 0, per step."""

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

__all__ = ["pretrain_optimizer", "warmup_cosine_scheduler", "warmup_steps"]


def _after_the_run(step: int) -> float:
    """Factor past the run's last step: 0 (a cosine past its ``T_max`` would rise again)."""
    return 0.0


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> SequentialLR:
    r"""Linear warm-up, then cosine annealing to 0, from torch's schedulers (per optimiser step).

    The factor of the base learning rate at step $s$ ($W$ warm-up steps, $T$
    steps in all):

    $$
    f(s) = \begin{cases} (s + 1) / W & s < W \\
    \tfrac12 \left(1 + \cos\left(\pi \min\left(1, \frac{s - W}{T - W}\right)\right)
    \right) & s \ge W \end{cases}
    $$

    torch's ``SequentialLR`` chains ``LinearLR`` (from $1/W$ up to 1 over the first
    $W$ steps: the first step already trains, as lightly's ``cosine_warmup_schedule``
    does), ``CosineAnnealingLR`` ($T - W$ steps down to 0) and a ``LambdaLR`` at 0 after
    step $T$. lightly's ``CosineWarmupScheduler`` is not used: its cosine reaches 0 one
    step early (it divides by $T - W - 1$) and warns past $T$. A checkpoint keeps
    the scheduler's ``state_dict`` (each phase's and the step count), so a resumed run goes on
    where it stopped. MoCo-v2 / GeoSSL anneal with a cosine over the whole run (no warm-up);
    geossl steps it per optimiser step rather than per epoch.

    Args:
        optimizer: the optimiser whose learning rates it scales.
        warmup_steps: $W$ (0: none).
        total_steps: $T$.

    Returns:
        The scheduler, to step once per optimiser step.

    Example:
        >>> sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> scheduler = warmup_cosine_scheduler(sgd, warmup_steps=2, total_steps=6)
        >>> factors = []
        >>> for _ in range(8):
        ...     factors.append(round(scheduler.get_last_lr()[0], 3))
        ...     sgd.step()
        ...     scheduler.step()
        >>> factors
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """
    phases: list[LRScheduler] = []
    milestones: list[int] = []
    if warmup_steps > 0:
        # total_iters = W - 1: the factor is 1/W at step 0 and 1 at step W - 1.
        warmup = LinearLR(optimizer, 1.0 / warmup_steps, 1.0, total_iters=warmup_steps - 1)
        phases.append(warmup)
        milestones.append(warmup_steps)
    cosine_steps = max(1, total_steps - warmup_steps)  # T_max = 0 would divide by 0
    phases.append(CosineAnnealingLR(optimizer, T_max=cosine_steps, eta_min=0.0))
    milestones.append(warmup_steps + cosine_steps)
    phases.append(LambdaLR(optimizer, _after_the_run))
    return SequentialLR(optimizer, phases, milestones)


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
    scheduler = warmup_cosine_scheduler(optimizer, warmup, int(total))
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }
