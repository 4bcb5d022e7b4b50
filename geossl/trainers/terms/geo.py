"""The ``geo`` term: the geo-location pretext head and its cross-entropy."""

import math
from collections.abc import Mapping
from typing import ClassVar

import torch

from geossl.losses import GeoLocationLoss
from geossl.models import GeoLocationHead
from geossl.trainers.terms.base import (
    LossOptionValue,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
)
from geossl.trainers.terms.registry import register_loss_term


@register_loss_term("geo")
class GeoLocationTerm(LossTerm):
    r"""Geo-location pretext: `GeoLocationHead` on ``q_raw``, cross-entropy on ``geo_label``.

    Reads ``batch["geo_label"]`` (int64 ``[B]``, -1 for an unknown cluster) and logs ``geo_acc``
    (accuracy over the samples with a known cluster).

    Option ``normalize_input`` (default true): the head reads the projection rescaled to norm
    $\sqrt{D}$ (see [`GeoLocationHead`][geossl.models.heads.GeoLocationHead]); false is the paper's
    head on the raw projection, whose cross-entropy can run far above $\ln K$.

    Args:
        input_dim: projection size (128).
        num_clusters: number of geo clusters (100).
        normalize_input: rescale the projection before the head.
    """

    default_options: ClassVar[Mapping[str, LossOptionValue]] = {"normalize_input": True}

    def __init__(
        self, input_dim: int = 128, num_clusters: int = 100, normalize_input: bool = True
    ) -> None:
        super().__init__()
        self.head = GeoLocationHead(input_dim, num_clusters, normalize_input=normalize_input)
        self.loss = GeoLocationLoss(ignore_index=-1)
        #: Cross-entropy over K clusters starts at ln K; above 2 ln K the head is diverging
        #: (TrainingHealthMonitor warns).
        self.loss_ceiling = 2.0 * math.log(num_clusters) if num_clusters > 1 else None

    @classmethod
    def check_context(cls, ctx: LossTermContext) -> None:
        """Require at least 2 geo clusters.

        Args:
            ctx: the task's context.

        Raises:
            ValueError: if ``model.num_geo_clusters`` < 2.
        """
        if ctx.num_geo_clusters < 2:
            raise ValueError(
                f"model.num_geo_clusters must be >= 2 when the 'geo' loss is used, "
                f"got {ctx.num_geo_clusters} (0: the data has no locations, e.g. "
                "ScenesDataModule; drop the geo loss)"
            )

    @classmethod
    def from_context(cls, ctx: LossTermContext) -> "GeoLocationTerm":
        """Build the head on the projection size with the task's cluster count.

        Args:
            ctx: the task's context.

        Returns:
            The term.
        """
        return cls(
            input_dim=ctx.proj_dim,
            num_clusters=ctx.num_geo_clusters,
            normalize_input=bool(ctx.options.get("normalize_input", True)),
        )

    def forward(self, out: StepOutputs) -> TermOutput:
        """Cross-entropy of the head's logits on the geo clusters.

        Args:
            out: the step's shared outputs.

        Returns:
            The loss and ``geo_acc``.
        """
        if "geo_label" not in out.batch:
            raise KeyError("the 'geo' loss needs batch['geo_label'] (int64 [B], -1 if unknown)")
        target = out.batch["geo_label"].long()  # [B]
        logits = self.head(out.q_raw)  # [B, K_geo]
        loss = self.loss(logits, target)
        with torch.no_grad():
            valid = target != -1
            correct = (logits.argmax(dim=1) == target) & valid
            acc = correct.sum() / valid.sum().clamp(min=1)
        return TermOutput(loss, {"geo_acc": acc})
