"""Errors of geossl that stop a run; light to import (the CLI catches them before torch loads)."""

__all__ = ["NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """A loss term (or the total) became NaN or Inf: the run stops.

    Raised from [`GeoSSLTask.training_step`][geossl.trainers.pretrain.GeoSSLTask.training_step]
    before the backward pass, so the weights of the bad step never change and Lightning writes no
    checkpoint from it (it re-raises the error out of ``Trainer.fit``); the last checkpoint on disk
    is the one from before.
    """
