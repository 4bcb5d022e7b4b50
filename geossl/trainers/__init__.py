"""geossl.trainers: LightningModules for pretraining, and the loss terms they combine."""

from geossl.errors import NonFiniteLossError
from geossl.trainers.classification import FMoWClassificationTask
from geossl.trainers.detection import XViewDetectionTask
from geossl.trainers.pretrain import GeoSSLTask
from geossl.trainers.segmentation import SpaceNetSegmentationTask
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
    "FMoWClassificationTask",
    "GeoSSLTask",
    "LossTerm",
    "LossTermContext",
    "NonFiniteLossError",
    "SpaceNetSegmentationTask",
    "StepOutputs",
    "TermOutput",
    "XViewDetectionTask",
    "create_loss_term",
    "list_loss_terms",
    "register_loss_term",
    "resolve_loss_options",
]
