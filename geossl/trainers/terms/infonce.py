"""The InfoNCE terms: ``moco`` (two augmentations of one image) and ``tp`` (temporal positives)."""

from typing import ClassVar

from geossl.losses import MoCoLoss
from geossl.trainers.terms.base import LossTerm, LossTermContext, StepOutputs, TermOutput
from geossl.trainers.terms.registry import register_loss_term


class InfoNCETerm(LossTerm):
    """InfoNCE of the query against one key source and the queue (`MoCoLoss`).

    Args:
        temperature: InfoNCE temperature (0.02, Geography-aware SSL).
    """

    key_source: ClassVar[str] = "same"
    uses_queue = True

    def __init__(self, temperature: float = 0.02) -> None:
        super().__init__()
        self.loss = MoCoLoss(temperature)

    @classmethod
    def from_context(cls, ctx: LossTermContext) -> "InfoNCETerm":
        """Build the term with the task's temperature.

        Args:
            ctx: the task's context.

        Returns:
            The term.
        """
        return cls(temperature=ctx.temperature)

    def forward(self, out: StepOutputs) -> TermOutput:
        """InfoNCE of ``q`` against ``keys[key_source]`` and the queue snapshot.

        Args:
            out: the step's shared outputs.

        Returns:
            The loss.
        """
        if out.negatives is None:  # pragma: no cover - the task provides it when uses_queue
            raise RuntimeError("InfoNCE needs the queue's negatives")
        return TermOutput(self.loss(out.q, out.keys[self.key_source], out.negatives))


@register_loss_term("moco")
class MoCoTerm(InfoNCETerm):
    """MoCo-v2: the positive key is a second augmentation of the same image (view 0)."""

    key_source = "same"
    key_sources = frozenset({"same"})
    queue_key_source = "same"


@register_loss_term("tp")
class TemporalPositiveTerm(InfoNCETerm):
    """Temporal positives (GeoSSL): the positive key is another acquisition of the location.

    The key is an augmentation of view 1; when the location has a single image, the batch repeats
    the anchor there, so the key is another augmentation of the same image (the paper's fallback).
    """

    key_source = "temporal"
    key_sources = frozenset({"temporal"})
    queue_key_source = "temporal"
