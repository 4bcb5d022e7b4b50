"""geossl.trainers: LightningModules for pretraining."""

from .pretrain import (
    GeoSSLTask,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
    create_loss_term,
    list_loss_terms,
    register_loss_term,
)

__all__ = [
    "GeoSSLTask",
    "LossTerm",
    "LossTermContext",
    "StepOutputs",
    "TermOutput",
    "create_loss_term",
    "list_loss_terms",
    "register_loss_term",
]
