"""Callbacks that the interrupt tests give a ``geossl`` subprocess by ``class_path``."""

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset


class StepMarker(Callback):
    """Write ``path`` (the step number) once ``step`` optimizer steps are done."""

    def __init__(self, path: str, step: int = 1) -> None:
        self.path, self.step = Path(path), step

    def on_train_batch_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, *args: Any
    ) -> None:
        if trainer.is_global_zero and trainer.global_step >= self.step and not self.path.exists():
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(str(trainer.global_step))
            os.replace(tmp, self.path)  # the test polls for it: never half written


class SignalsInStep(Callback):
    """Send ``signals`` to this process at the start of the step after ``step`` steps.

    Each SIGINT / SIGTERM is handled before the next signal is sent (two SIGINTs are not
    merged into one); other signals' handlers run at once, in this thread.
    """

    def __init__(self, signals: list[int], step: int = 1) -> None:
        self.signals, self.step = signals, step

    def on_train_batch_start(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, *args: Any
    ) -> None:
        if trainer.global_step != self.step:
            return
        for signum in self.signals:
            os.kill(os.getpid(), signum)
            deadline = time.monotonic() + 10
            stops = signum in (signal.SIGINT, signal.SIGTERM)
            while stops and not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.01)  # the handler runs in this thread, between bytecodes


class CtrlCWhileSaving(Callback):
    """Send SIGINT from inside a checkpoint save that follows a stop signal (a second Ctrl-C)."""

    def __init__(self) -> None:
        self.trainer: lightning.Trainer | None = None

    def setup(self, trainer: lightning.Trainer, *args: Any, **kwargs: Any) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        if self.trainer is not None and self.trainer.received_sigterm:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises here, in the middle of the save
        return {}


class TinyRegression(lightning.LightningModule):
    """A 4-to-1 linear regression on 32 seeded samples (8 steps an epoch): a fit in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        return torch.nn.functional.mse_loss(self.layer(inputs), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(32, 4, generator=generator)
        return DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True)), batch_size=4)


def tiny_trainer(root: Path, *callbacks: Callback, **kwargs: Any) -> lightning.Trainer:
    """A CPU trainer for `TinyRegression` saving into ``root`` (``root/checkpoints``)."""
    options: dict[str, Any] = {
        "default_root_dir": root,
        "accelerator": "cpu",
        "max_epochs": 100,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": list(callbacks),
    }
    return lightning.Trainer(**{**options, **kwargs})


def save_until_killed(folder: str, limit: int) -> None:
    """Save a small checkpoint, then one past a file-size limit that kills this process.

    The kernel stops a process that writes past ``RLIMIT_FSIZE`` with SIGXFSZ (Python ignores
    it by default; restored here): like ``kill -9`` in the middle of a save, no cleanup runs.
    """
    import resource

    from geossl.trainers.checkpoint_io import AtomicCheckpointIO

    target = Path(folder) / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, target)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    io.save_checkpoint({"step": 2, "weights": torch.zeros(16 * limit, dtype=torch.uint8)}, target)


__all__ = [
    "CtrlCWhileSaving",
    "SignalsInStep",
    "StepMarker",
    "TinyRegression",
    "save_until_killed",
    "tiny_trainer",
]
