"""The loss curve of a run: every logged loss term against the step, drawn when ``fit`` ends.

[`LossCurve`][geossl.trainers.loss_curve.LossCurve] records what the task logs (``train_loss``,
``train/loss_<term>``, ``val_loss``, ...) at the logger's cadence, whatever the logger (CSV,
TensorBoard or none), and writes ``loss_curve.png`` into the run folder
([`plot_loss_curves`][geossl.trainers.loss_curve.plot_loss_curves]). ``geossl pretrain`` and
``geossl finetune`` add it to every run and name the file in their end-of-run summary.
"""

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import numpy.typing as npt
from lightning.pytorch.callbacks import Callback

from geossl.utils.io import atomic_output

__all__ = ["LOSS_CURVE_NAME", "LossCurve", "find_loss_curve", "is_loss_key", "plot_loss_curves"]

#: The file name of the loss curve in the run folder.
LOSS_CURVE_NAME = "loss_curve.png"

#: A series of ``(step, value)`` points.
Series = Sequence[tuple[int, float]]


def is_loss_key(key: str, stage: str) -> bool:
    """Whether a logged metric is a loss term of ``stage`` (``train`` or ``val``).

    ``loss`` alone is the progress bar's host copy of ``train_loss`` (not logged), and an
    ``*_epoch`` key read after a training step is the previous epoch's value: neither is a point
    of the step curve.

    Args:
        key: the metric name (``train_loss``, ``train/loss_moco``, ``val_loss``, ...).
        stage: ``train`` or ``val``.

    Returns:
        True for the stage's loss terms.

    Examples:
        >>> [is_loss_key(k, "train") for k in ("train_loss", "train/loss_geo", "loss", "val_loss")]
        [True, True, False, False]
    """
    if not key.startswith(stage) or "loss" not in key:
        return False
    return not (stage == "train" and key.endswith("_epoch"))


def _smoothed(values: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """Centred moving average (edges averaged over what the window holds)."""
    kernel = np.ones(window)
    total = np.convolve(values, kernel, mode="same")
    count = np.convolve(np.ones_like(values), kernel, mode="same")
    smoothed: npt.NDArray[np.float64] = total / count
    return smoothed


def plot_loss_curves(
    history: Mapping[str, Series], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Draw every loss series against the step and write the PNG atomically.

    Training terms are drawn as thin lines with a moving average over them when they have many
    points (per-step losses are noisy); validation terms as lines with markers. The y axis is
    logarithmic when every value is positive and they span more than a decade.

    Args:
        history: series name -> ``(step, value)`` points (non-finite values are skipped).
        path: the PNG to write.
        title: the figure title.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, whatever matplotlib's global backend
    axes = figure.subplots()
    finite: list[float] = []
    for index, (name, points) in enumerate(sorted(history.items())):
        data = np.array([(s, v) for s, v in points if math.isfinite(v)], dtype=np.float64)
        if len(data) == 0:
            continue
        steps, values = data[:, 0], data[:, 1]
        finite += values.tolist()
        colour = f"C{index % 10}"
        if name.startswith("val"):
            axes.plot(steps, values, "o-", color=colour, label=name, markersize=4)
        elif len(values) >= 20:
            axes.plot(steps, values, color=colour, alpha=0.3, linewidth=0.8)
            window = max(5, len(values) // 20)
            axes.plot(steps, _smoothed(values, window), color=colour, label=f"{name} (smoothed)")
        else:
            axes.plot(steps, values, ".-", color=colour, label=name)
    positive = [v for v in finite if v > 0]
    if positive and len(positive) == len(finite) and max(positive) > 10 * min(positive):
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title(title or "loss curve")
    if finite:
        axes.legend(loc="best", fontsize=8)
    else:
        axes.text(
            0.5, 0.5, "no loss was logged", ha="center", va="center", transform=axes.transAxes
        )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return target


class LossCurve(Callback):
    """Record the logged loss terms during ``fit`` and draw them when it ends.

    Training terms are read after each step the loggers write (``trainer.log_every_n_steps``,
    so no extra host sync), validation terms after each validation run (not the sanity check).
    The points are kept in the checkpoint, so a resumed run draws the whole curve.

    Args:
        filename: the PNG's name in the run folder (``trainer.log_dir``).
    """

    def __init__(self, filename: str = LOSS_CURVE_NAME) -> None:
        self.filename = filename
        self.history: dict[str, list[tuple[int, float]]] = {}
        #: The PNG written by :meth:`write` (None before).
        self.path: Path | None = None

    def _record(self, trainer: lightning.Trainer, stage: str) -> None:
        step = int(trainer.global_step)
        for key, value in trainer.callback_metrics.items():
            if is_loss_key(key, stage):
                self.history.setdefault(key, []).append((step, float(value)))

    def on_train_batch_end(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Record the step's training losses when the loggers write this step."""
        # Lightning's own test for a logging step (its loggers read the values then anyway).
        if trainer._logger_connector.should_update_logs:
            self._record(trainer, "train")

    def on_validation_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        """Record the validation losses (epoch means) after a validation run."""
        if not trainer.sanity_checking:
            self._record(trainer, "val")

    def on_fit_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        """Write the PNG (main process)."""
        self.write(trainer)

    def write(self, trainer: lightning.Trainer) -> Path | None:
        """Write the PNG into the run folder once; later calls return the same path.

        [`RunSummary`][geossl.trainers.callbacks.RunSummary] calls it before it prints, whichever of
        the two callbacks Lightning runs first.

        Args:
            trainer: the trainer of the fit.

        Returns:
            The PNG (None on the other ranks of a multi-process run).
        """
        # Read on every rank: trainer.log_dir is a collective (a broadcast) under DDP.
        log_dir = trainer.log_dir
        if self.path is not None or not trainer.is_global_zero:
            return self.path
        folder = Path(log_dir if log_dir is not None else trainer.default_root_dir)
        title = f"{type(trainer.lightning_module).__name__}: {trainer.global_step} steps"
        self.path = plot_loss_curves(self.history, folder / self.filename, title=title)
        return self.path

    def state_dict(self) -> dict[str, Any]:
        """The recorded points (saved in the checkpoint)."""
        return {"history": {k: [list(p) for p in v] for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the points of a resumed run."""
        saved = state_dict.get("history", {})
        self.history = {k: [(int(s), float(v)) for s, v in points] for k, points in saved.items()}


def find_loss_curve(trainer: lightning.Trainer) -> LossCurve | None:
    """The trainer's `LossCurve` callback, None if it has none.

    Args:
        trainer: a trainer.

    Returns:
        The first [`LossCurve`][geossl.trainers.loss_curve.LossCurve] among ``trainer.callbacks``.
    """
    # ``Trainer.callbacks`` is set by Lightning's callback connector, unseen by the type checker.
    callbacks: list[Callback] = getattr(trainer, "callbacks", [])
    return next((c for c in callbacks if isinstance(c, LossCurve)), None)
