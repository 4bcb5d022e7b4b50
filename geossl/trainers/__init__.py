"""geossl.trainers: LightningModules for pretraining."""

from .pretrain import (
    GeoSSLTask,
    LossTerm,
    LossTermContext,
    NonFiniteLossError,
    StepOutputs,
    TermOutput,
    create_loss_term,
    list_loss_terms,
    register_loss_term,
    resolve_loss_options,
)

__all__ = [
    "GeoSSLTask",
    "LossTerm",
    "LossTermContext",
    "NonFiniteLossError",
    "StepOutputs",
    "TermOutput",
    "create_loss_term",
    "list_loss_terms",
    "register_loss_term",
    "resolve_loss_options",
]
from geossl.trainers import scrl as scrl  # registers the "scrl" term
