"""Ctrl-C and SIGTERM stop training at a step boundary, save a checkpoint and exit 130 / 143.

SIGTERM is what SLURM and Kubernetes send before they stop a job; Lightning notes it and its
loops raise ``SIGTERMException`` (a ``SystemExit`` without a status: exit 0) after the step
in progress. [`InterruptCheckpoint`][geossl.trainers.interrupts.InterruptCheckpoint] saves the
run there, where the model, the optimizer, the schedule and the MoCo queue agree, and gives the
exit the shell's status for the signal, so ``geossl pretrain && geossl export`` stops. A first
Ctrl-C does the same (it only asks the loop to stop, as SIGTERM does); a second one aborts at
once, without a checkpoint, since the step it interrupts is half done.
"""

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["EXIT_CODES", "InterruptCheckpoint", "TrainingAborted", "interrupt_checkpoint_path"]

#: The exit status for each signal: 128 + the signal number, the shell's convention.
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingAborted(SystemExit):
    """Raised by a second Ctrl-C: training stops at once, without a checkpoint (exit 130)."""

    def __init__(self) -> None:
        super().__init__(EXIT_CODES[signal.SIGINT])


def _say(line: str) -> None:
    """Write one line to stderr without Python's buffers (safe inside a signal handler)."""
    os.write(sys.stderr.fileno(), (line + "\n").encode())


def interrupt_checkpoint_path(trainer: lightning.Trainer) -> Path:
    """Where an interrupted run is saved: the ``last.ckpt`` a user resumes from.

    That is the checkpoint callback's last checkpoint (``last_model_path``), else ``last.ckpt``
    in its folder (``last-v1.ckpt`` if another run's ``last.ckpt`` is there, as Lightning
    names it), else ``checkpoints/last.ckpt`` in the run folder when no callback saves any.

    Args:
        trainer: the trainer being fitted (after setup: the callback knows its folder).

    Returns:
        The checkpoint path.
    """
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
        return Path(str(trainer.log_dir or trainer.default_root_dir)) / "checkpoints" / "last.ckpt"
    if callback.last_model_path:
        return Path(callback.last_model_path)
    metrics = dict(trainer.callback_metrics)
    metrics["epoch"] = torch.tensor(trainer.current_epoch)
    metrics["step"] = torch.tensor(trainer.global_step)
    name = callback.CHECKPOINT_NAME_LAST
    path = Path(callback.format_checkpoint_name(metrics, name))
    version = callback.STARTING_VERSION
    while path.exists():
        path = Path(callback.format_checkpoint_name(metrics, name, ver=version))
        version += 1
    if callback.save_last:
        # The callback writes its next last checkpoint here (and the resumed run does too).
        callback.last_model_path = str(path)
    return path


class InterruptCheckpoint(Callback):
    """Save a resumable checkpoint on SIGINT / SIGTERM and exit with 130 / 143.

    ``geossl pretrain`` and ``geossl finetune`` add it to every config. On a signal the step
    in progress finishes, then every rank saves through ``trainer.save_checkpoint``
    ([`interrupt_checkpoint_path`][geossl.trainers.interrupts.interrupt_checkpoint_path]) and
    rank zero prints one line with the path and the ``--ckpt_path`` that resumes it. With several
    ranks they agree at the end of every step whether any was signalled, so that all stop after
    the same step. A second Ctrl-C raises
    [`TrainingAborted`][geossl.trainers.interrupts.TrainingAborted] (during the save too: the
    previous file stays). Lightning's SLURM auto-requeue (SIGUSR1) is untouched; only SIGINT
    gets a handler, during ``fit``.

    Examples:
        >>> trainer = lightning.Trainer(callbacks=[InterruptCheckpoint()], logger=False)
        >>> any(isinstance(c, InterruptCheckpoint) for c in trainer.callbacks)
        True
    """

    def __init__(self) -> None:
        self._trainer: lightning.Trainer | None = None
        self._previous: Any = None
        self._pid = 0
        self._stop_signal: int | None = None

    def on_fit_start(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        """Take over SIGINT for the fit (before the loaders fork: their workers inherit it)."""
        self._trainer, self._stop_signal = trainer, None
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)

    def on_fit_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        """Give SIGINT back (Lightning's teardown has put this handler back before)."""
        self._release()

    def _release(self, trainer: lightning.Trainer | None = None) -> None:
        self._trainer = None
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)
        # After an exception Lightning's teardown puts back the handlers it found when the loop
        # started, this one among them: make it put back the one from before the fit.
        found = getattr(getattr(trainer, "_signal_connector", None), "_original_handlers", None)
        if isinstance(found, dict) and found.get(signal.SIGINT) == self._on_sigint:
            found[signal.SIGINT] = self._previous

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked data loader worker: the main process decides
            return
        trainer = self._trainer
        if trainer is None:  # left installed after an exception: behave as before the fit
            if callable(self._previous):
                self._previous(signum, frame)
            elif self._previous != signal.SIG_IGN:
                raise KeyboardInterrupt
            return
        if self._stop_signal is not None or trainer.received_sigterm:
            raise TrainingAborted
        self._stop_signal = signal.SIGINT
        if trainer.world_size == 1:  # Lightning's SIGTERM flag: the loop stops after this step
            trainer._signal_connector.received_sigterm = True
        if trainer.is_global_zero:
            _say(
                "geossl: Ctrl-C: stopping after this step to save a checkpoint; "
                "Ctrl-C again to abort"
            )

    def on_train_batch_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, *args: Any
    ) -> None:
        """With several ranks, stop them all after this step when any of them was signalled.

        A signal reaches each rank at its own point of the step; a rank that stopped alone
        would wait for the others in its save while they go on with the next step.
        """
        if trainer.world_size == 1:
            return
        asked = self._stop_signal is not None or trainer.received_sigterm
        if trainer.strategy.reduce_boolean_decision(asked, all=False):
            trainer._signal_connector.received_sigterm = True

    def on_exception(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        exception: BaseException,
    ) -> None:
        """Save the run on a signal's stop (every rank), set the exit status, print the path."""
        if isinstance(exception, TrainingAborted):
            self._release(trainer)
            _stop_started_ranks(trainer)
            _say_on_zero(
                trainer, "aborted by a second Ctrl-C in the middle of a step: no checkpoint saved"
            )
            return
        if not isinstance(exception, SIGTERMException):
            self._release(trainer)
            return
        signum = self._stop_signal or signal.SIGTERM
        exception.code = EXIT_CODES[signum]
        name = signal.Signals(signum).name
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            self._release(trainer)
            _say_on_zero(trainer, f"stopped by {name} before training steps: no checkpoint saved")
            return
        path = interrupt_checkpoint_path(trainer)
        where = f"stopped by {name} at epoch {trainer.current_epoch}, step {trainer.global_step}"
        try:  # Ctrl-C stays ours during the save: a second one aborts it (TrainingAborted)
            trainer.save_checkpoint(path, weights_only=False)
        except TrainingAborted:
            _stop_started_ranks(trainer)
            _say_on_zero(trainer, f"{where}; saving aborted by Ctrl-C: {path} is as it was")
            exception.code = EXIT_CODES[signal.SIGINT]
            return
        except OSError as error:  # a full disk: say so, keep the exit status and the old file
            _say_on_zero(trainer, f"{where}; could not save {path}: {error}")
            return
        finally:
            self._release(trainer)
        _say_on_zero(
            trainer, f"{where}; checkpoint saved to {path}; resume with --ckpt_path {path}"
        )


def _say_on_zero(trainer: lightning.Trainer, message: str) -> None:
    """``geossl: message`` on stderr, from rank zero only."""
    if trainer.is_global_zero:
        _say(f"geossl: {message}")


def _stop_started_ranks(trainer: lightning.Trainer) -> None:
    """Kill the ranks this process started (they may be waiting for it in a collective)."""
    launcher = trainer.strategy.launcher
    if launcher is not None:  # as Lightning does on KeyboardInterrupt
        launcher.kill(signal.SIGKILL)
