"""geossl.trainers: LightningModules for pretraining, and the loss terms they combine."""

from geossl.errors import NonFiniteLossError
from geossl.trainers import scrl as scrl  # registers the "scrl" term
from geossl.trainers.pretrain import GeoSSLTask
from geossl.trainers.terms import (
    LossTerm,
    LossTermContext,
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
