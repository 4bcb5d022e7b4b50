"""The ``co2`` term: CO2 consistent contrast on the positive key."""

import math
from collections.abc import Mapping
from typing import ClassVar

from geossl.losses import CO2Loss
from geossl.trainers.terms.base import (
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
)
from geossl.trainers.terms.registry import register_loss_term


@register_loss_term("co2")
class ConsistentContrastTerm(LossTerm):
    r"""CO2 consistent contrast (Wei et al., ICLR 2021): `CO2Loss` on the positive key.

    Reads ``q``, the positive key ``keys[primary_key_source]`` of the queue-based term (the key
    of ``tp`` or ``moco``, whichever comes first in ``losses``) and the queue ``negatives``:

    $$
    \mathcal{L}_{con} = \tfrac12 \mathrm{KL}(P \,\|\, Q) + \tfrac12 \mathrm{KL}(Q \,\|\, P),
    \quad Q_i = \mathrm{softmax}_i(q \cdot n_i / \tau_{con}),
    \quad P_i = \mathrm{softmax}_i(p \cdot n_i / \tau_{con})
    $$

    It is a regulariser: it needs ``moco`` or ``tp`` to be active (``needs_queue_key``), e.g.
    ``losses={"tp": 1, "co2": 10}``, whose ``co2`` weight is the paper's $\alpha$.

    The CO2 paper's values on MoCo are $\alpha = 10$ (the weight, set in ``losses``) and
    $\tau_{con} = 0.04$ (option ``temperature``, the default, set with
    ``loss_options={"co2": {"temperature": 0.04}}``); the shipped presets train ``co2: 0.3``, the
    weight the NAIP leave-one-out measured to pay (docs/ablation.md).

    Args:
        temperature: $\tau_{con}$ > 0 (0.04, unverified).
    """

    uses_queue = True
    needs_queue_key = True
    default_options: ClassVar[Mapping[str, float]] = {"temperature": 0.04}

    def __init__(self, temperature: float = 0.04) -> None:
        super().__init__()
        self.loss = CO2Loss(temperature)

    @classmethod
    def check_context(cls, ctx: LossTermContext) -> None:
        """Require a finite temperature > 0.

        Args:
            ctx: the task's context.

        Raises:
            ValueError: naming ``model.loss_options.co2.temperature`` if it is not > 0.
        """
        temperature = ctx.options.get("temperature", cls.default_options["temperature"])
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"model.loss_options.co2.temperature must be > 0, got {temperature}")

    @classmethod
    def from_context(cls, ctx: LossTermContext) -> "ConsistentContrastTerm":
        """Build the term with the ``temperature`` option.

        Args:
            ctx: the task's context.

        Returns:
            The term.
        """
        return cls(temperature=ctx.options.get("temperature", cls.default_options["temperature"]))

    def forward(self, out: StepOutputs) -> TermOutput:
        """Symmetric KL of the query's and the positive key's similarities to the queue.

        Args:
            out: the step's shared outputs.

        Returns:
            The loss.
        """
        if out.negatives is None or out.primary_key_source is None:  # pragma: no cover
            raise RuntimeError("co2 needs the queue and the positive key of moco or tp")
        return TermOutput(self.loss(out.q, out.keys[out.primary_key_source], out.negatives))
