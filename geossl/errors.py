"""Errors of geossl that stop a run; light to import (the CLI catches them before torch loads)."""

import os

__all__ = ["CheckpointError", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """A loss term (or the total) became NaN or Inf: the run stops.

    Raised from [`GeoSSLTask.training_step`][geossl.trainers.pretrain.GeoSSLTask.training_step]
    before the backward pass, so the weights of the bad step never change and Lightning writes no
    checkpoint from it (it re-raises the error out of ``Trainer.fit``); the last checkpoint on disk
    is the one from before.
    """


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used, named with what is wrong and what to do.

    Raised where the file is loaded (the caller knows its name; torch's own errors do not say
    it): the safe unpickler refused it, it is truncated or not a torch file, or its tensors do not
    fit the model. A `ValueError`, so code that catches bad input keeps catching it.

    Args:
        path: the file.
        problem: what is wrong with it.
        advice: what to do about it (appended after ``; ``).

    Examples:
        >>> str(CheckpointError("run.ckpt", "truncated", "copy it again"))
        'run.ckpt: truncated; copy it again'
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, advice: str = "") -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.advice = advice
        super().__init__(f"{self.path}: {problem}" + (f"; {advice}" if advice else ""))
