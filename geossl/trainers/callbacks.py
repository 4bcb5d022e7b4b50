"""Callbacks shared by geossl's training commands."""

import math
import time
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from rich.console import Console
from rich.table import Table

from geossl.trainers.loss_curve import find_loss_curve

__all__ = ["RichProgressBar", "RunSummary", "TQDMProgressBar", "TrainingHealthMonitor"]


def _without_version(items: dict[str, Any]) -> dict[str, Any]:
    """Drop ``v_num``: the logger's version number says nothing about the run's progress."""
    items.pop("v_num", None)
    return items


class RichProgressBar(callbacks.RichProgressBar):
    """Lightning's rich progress bar without the logger's ``v_num`` (shown as ``v_num: 0.000``).

    It takes Lightning's arguments; the pretraining presets name it::

        trainer:
          callbacks:
            - class_path: geossl.trainers.callbacks.RichProgressBar
    """

    def get_metrics(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> dict[str, Any]:
        """The bar's items: the logged progress-bar metrics, without ``v_num``."""
        return _without_version(super().get_metrics(trainer, pl_module))


class TQDMProgressBar(callbacks.TQDMProgressBar):
    """Lightning's tqdm progress bar without the logger's ``v_num``.

    The fine-tuning presets name it (``geossl.trainers.callbacks.TQDMProgressBar``).
    """

    def get_metrics(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> dict[str, Any]:
        """The bar's items: the logged progress-bar metrics, without ``v_num``."""
        return _without_version(super().get_metrics(trainer, pl_module))


def _batch_size(batch: Any) -> int:
    """Return the number of samples in a collated batch (dict of tensors, tensor or sequence)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    return 0


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RunSummary(Callback):
    """Measure steady-state training throughput and print a one-screen summary when ``fit`` ends.

    The summary names the run folder, the checkpoints, the config and metric files, the loss curve
    ([`LossCurve`][geossl.trainers.loss_curve.LossCurve], when the trainer has one), the steps and
    samples seen, the wall time, the steady-state throughput (samples/s over all ranks, data
    loading included, excluding the first ``warmup_steps`` steps whose time is dominated by
    start-up, worker spawning and allocator warm-up) and the last logged loss terms.

    Lightning's ``Throughput`` (``lightning.fabric.utilities.throughput``) computes the samples/s
    (per device, times the world size) from two readings: when the warm-up steps are done and
    when training ends. Lightning's ``ThroughputMonitor`` callback is not used for the readings:
    it calls ``torch.cuda.synchronize()`` after every batch (the host then cannot queue the next
    step while the GPU works, which lowers the throughput it measures), its window is the last
    ``window_size`` batches rather than every step after the warm-up, and it only sends the
    values to the logger on logging steps (the summary and the benchmarks read them here). This
    callback synchronises twice per run.

    Args:
        warmup_steps: Steps excluded from the throughput measurement.
    """

    def __init__(self, warmup_steps: int = 3) -> None:
        self.warmup_steps = warmup_steps
        self.samples = 0
        self.steps = 0
        self.fit_seconds = 0.0
        self._fit_start = 0.0
        self._timer_start = 0.0
        self._timed_batches = 0
        self._timed_device_samples = 0  # this rank's: Throughput scales by the world size
        self._samples_per_second = 0.0

    @property
    def samples_per_second(self) -> float:
        """Steady-state training throughput over all ranks (0 until a timed step has run)."""
        return self._samples_per_second

    def on_fit_start(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        """Start the wall clock."""
        self._fit_start = time.perf_counter()

    def on_train_batch_start(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Start the throughput clock when the warm-up steps are done."""
        if self.steps == self.warmup_steps and self._timer_start == 0.0:
            _synchronize(pl_module.device)
            self._timer_start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count the samples of the step (over all ranks)."""
        size = _batch_size(batch)
        self.samples += size * trainer.world_size
        self.steps += 1
        if self._timer_start > 0.0:
            self._timed_batches += 1
            self._timed_device_samples += size

    def on_train_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        """Stop the throughput clock (one device sync at the end, none per step)."""
        if self._timer_start == 0.0:
            return
        _synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._timer_start
        if elapsed <= 0.0 or self._timed_device_samples < max(1, self._timed_batches):
            return  # nothing timed (or batches of unknown size): Throughput needs both to grow
        throughput = Throughput(world_size=trainer.world_size, window_size=2)
        throughput.update(time=0.0, batches=0, samples=0)
        throughput.update(
            time=elapsed, batches=self._timed_batches, samples=self._timed_device_samples
        )
        metrics = throughput.compute()
        # "samples_per_sec" (all ranks) only exists with several ranks; one rank: the device's.
        self._samples_per_second = float(
            metrics.get("samples_per_sec", metrics["device/samples_per_sec"])
        )

    def on_fit_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        """Print the summary on the main process."""
        self.fit_seconds = time.perf_counter() - self._fit_start
        # Drawn now whichever callback Lightning runs first, so the table can name the file.
        if (curve := find_loss_curve(trainer)) is not None:
            curve.write(trainer)
        # Built on every rank: trainer.log_dir is a collective (a broadcast) under DDP.
        table = self.table(trainer)
        if trainer.is_global_zero:
            Console(stderr=True).print(table)

    def table(self, trainer: lightning.Trainer) -> Table:
        """Build the summary table.

        Args:
            trainer: The trainer that ran the fit.

        Returns:
            A rich table.
        """
        table = Table(title="geossl run summary", show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        # Folded, not cut with an ellipsis: the paths are there to be copied.
        table.add_column("value", overflow="fold")
        log_dir = trainer.log_dir
        table.add_row("run folder", str(log_dir))
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                last = callback.last_model_path or callback.best_model_path
                table.add_row("checkpoint", last or f"(none written yet) {callback.dirpath}")
        if log_dir is not None:
            for name in ("config.yaml", "metrics.csv"):
                path = Path(log_dir) / name
                if path.exists():
                    table.add_row(name, str(path))
        curve = find_loss_curve(trainer)
        if curve is not None and curve.path is not None:
            table.add_row("loss curve", str(curve.path))
        table.add_row("steps / epochs", f"{trainer.global_step} / {trainer.current_epoch}")
        table.add_row("samples seen", f"{self.samples:,}")
        table.add_row("wall time", f"{self.fit_seconds:.1f} s")
        if self._samples_per_second > 0:
            table.add_row(
                "throughput",
                f"{self.samples_per_second:,.1f} samples/s "
                f"(steady state: {self.steps - self.warmup_steps} steps "
                f"after {self.warmup_steps} warm-up)",
            )
        # ``loss`` is the progress bar's copy of ``train_loss`` (GeoSSLTask): shown once.
        losses = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if ("loss" in k or k.startswith("train/")) and k != "loss"
        }
        if losses:
            table.add_row(
                "last metrics", "  ".join(f"{k}={v:.4g}" for k, v in sorted(losses.items()))
            )
        return table


class TrainingHealthMonitor(Callback):
    r"""Warn once when pretraining goes wrong without failing: collapse, or a loss out of range.

    Every ``check_every_n_steps`` optimiser steps it reads the step's logged values (one host
    sync per check, none in between):

    * **collapse**: ``train/embedding_std`` (the mean per-dimension std of the batch's unit
      query embeddings: about $1/\sqrt{D}$ when spread out, 0 when every image maps to one
      point) below ``collapse_fraction / sqrt(D)`` at every check for ``patience_steps`` steps;
    * **a term out of range**: ``train/loss_<name>`` above the term's ``loss_ceiling`` (a term
      that has one: the geo head's cross-entropy starts at $\ln K$ and has no reason to
      exceed $2 \ln K$).

    Each kind warns once per run, naming the step and the value. A healthy ResNet-18 MoCo-v2 run
    at temperature 0.02 on SIRI-WHU logged 0.0045 at step 24 and 0.017 at step 584 for
    $D = 128$; the default threshold, $0.05/\sqrt{128} = 0.0044$ for 200 steps,
    stays quiet on it. [`GeoSSLTask`][geossl.trainers.GeoSSLTask] adds this callback itself
    (``configure_callbacks``).

    Args:
        collapse_fraction: the collapse threshold as a share of $1/\sqrt{D}$.
        patience_steps: steps the std must stay below it.
        check_every_n_steps: steps between two checks.

    Examples:
        >>> monitor = TrainingHealthMonitor()
        >>> round(monitor.collapse_threshold(128), 4)
        0.0044
    """

    def __init__(
        self,
        collapse_fraction: float = 0.05,
        patience_steps: int = 200,
        check_every_n_steps: int = 10,
    ) -> None:
        if not collapse_fraction > 0 or patience_steps < 1 or check_every_n_steps < 1:
            raise ValueError(
                "collapse_fraction > 0, patience_steps >= 1 and check_every_n_steps >= 1 are "
                f"needed, got {collapse_fraction}, {patience_steps}, {check_every_n_steps}"
            )
        self.collapse_fraction = collapse_fraction
        self.patience_steps = patience_steps
        self.check_every_n_steps = check_every_n_steps
        self._low_since: int | None = None
        #: The kinds already warned about ("collapse", "loss_<name>") and their messages.
        self.warned: dict[str, str] = {}

    def collapse_threshold(self, dim: int) -> float:
        """The embedding std below which a ``dim``-dimensional embedding counts as collapsed."""
        return float(self.collapse_fraction / math.sqrt(dim))

    def _warn(self, kind: str, message: str) -> None:
        from lightning.pytorch.utilities import rank_zero_warn

        self.warned[kind] = message
        rank_zero_warn(message)

    def on_train_batch_end(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Check the step's logged values (every ``check_every_n_steps`` steps)."""
        step = trainer.global_step
        if step % self.check_every_n_steps:
            return
        metrics = trainer.callback_metrics
        std = metrics.get("train/embedding_std")
        dim = int(getattr(pl_module, "embedding_dim", 0))
        if std is not None and dim > 0 and "collapse" not in self.warned:
            value, threshold = float(std), self.collapse_threshold(dim)
            if value >= threshold:
                self._low_since = None
            else:
                self._low_since = step if self._low_since is None else self._low_since
                if step - self._low_since >= self.patience_steps:
                    self._warn(
                        "collapse",
                        f"step {step}: train/embedding_std={value:.5f} has stayed below "
                        f"{threshold:.5f} (= {self.collapse_fraction} / sqrt({dim})) since step "
                        f"{self._low_since}: the embeddings may have collapsed to one point; "
                        "lower model.lr, raise model.temperature or check the loss weights",
                    )
        for name, term in getattr(pl_module, "terms", {}).items():
            ceiling = getattr(term, "loss_ceiling", None)
            value_t = metrics.get(f"train/loss_{name}")
            if ceiling is None or value_t is None or f"loss_{name}" in self.warned:
                continue
            if float(value_t) > ceiling:
                self._warn(
                    f"loss_{name}",
                    f"step {step}: train/loss_{name}={float(value_t):.3f} is above its expected "
                    f"ceiling {ceiling:.3f}: the {name} term is diverging (check model.lr and "
                    f"model.loss_options.{name})",
                )
