"""The loss-term interface: what a term declares, the step outputs it reads, its context."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from geossl.transforms import ViewParams

#: The paper's full method (TP + Geo, weights 1 and 1), used when ``losses`` is ``None``.
DEFAULT_LOSSES: dict[str, float] = {"tp": 1.0, "geo": 1.0}

#: The type of a loss term option value (``loss_options.<term>.<option>``): a number or a switch.
LossOptionValue = float | bool

#: View sources: name -> index of the acquisition in ``batch["image"]`` ``[B, 2, C, H, W]``.
#: ``"query"`` and ``"same"`` are two independent augmentations of view 0 (the anchor);
#: ``"temporal"`` is an augmentation of view 1 (another acquisition of the same location, or the
#: anchor again when the location has a single image).
VIEW_SOURCES: dict[str, int] = {"query": 0, "same": 0, "temporal": 1}


@dataclass
class EncoderOutput:
    """What one encoder (query or key) computed for one view.

    Attributes:
        features: ``[B, F]`` pooled backbone features (``F = 2048`` for ResNet-50).
        projection: ``[B, D]`` projection head output before normalisation (``D = proj_dim``).
        embedding: ``[B, D]`` float32 L2-normalised ``projection``.
        feature_map: ``[B, F, h, w]`` backbone map before pooling (C5, stride 32 for ResNets)
            when a term sets ``needs_feature_map``, else ``None``.
    """

    features: Tensor
    projection: Tensor
    embedding: Tensor
    feature_map: Tensor | None = None


@dataclass
class StepOutputs:
    """The outputs of a training step shared by every loss term, computed once.

    Attributes:
        batch: the collated batch (``image`` ``[B, 2, C, H, W]``, ``geo_label`` ``[B]``, ...).
        views: source name -> ``[B, C, S, S]`` normalised augmented view.
        online: source name -> query-encoder output (gradient flows); always has ``"query"``.
        momentum: source name -> key-encoder output (no gradient; shuffle-BN).
        negatives: ``[K, D]`` detached snapshot of the queue taken before this step's enqueue,
            or ``None`` when no active term uses the queue.
        view_params: source name -> crop/flip geometry of the view, when a term sets
            ``needs_view_params`` (empty otherwise).
        primary_key_source: the key source whose keys are enqueued (that of the first active
            queue-based term), e.g. for a regulariser such as CO2 that reuses the positive key.
    """

    batch: Mapping[str, Tensor]
    views: dict[str, Tensor]
    online: dict[str, EncoderOutput]
    momentum: dict[str, EncoderOutput] = field(default_factory=dict)
    negatives: Tensor | None = None
    view_params: dict[str, ViewParams] = field(default_factory=dict)
    primary_key_source: str | None = None

    @property
    def q_raw(self) -> Tensor:
        """``[B, D]`` the query's projection before L2 normalisation (the geo head's input)."""
        return self.online["query"].projection

    @property
    def q(self) -> Tensor:
        """``[B, D]`` float32 L2-normalised query."""
        return self.online["query"].embedding

    @property
    def keys(self) -> dict[str, Tensor]:
        """Source name -> ``[B, D]`` float32 L2-normalised key from the key encoder."""
        return {source: out.embedding for source, out in self.momentum.items()}


@dataclass
class TermOutput:
    """What a loss term returns.

    Attributes:
        loss: scalar loss (unweighted; the task multiplies it by the term's weight).
        metrics: extra scalars logged as ``train/<name>`` (e.g. ``geo_acc``).
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class LossTermContext:
    """What the task knows when it builds its loss terms (from its hyper-parameters).

    Attributes:
        num_features: pooled backbone feature size ``F``.
        proj_dim: projection size ``D`` (128).
        temperature: InfoNCE temperature (0.02).
        num_geo_clusters: number of geo clusters (100).
        in_chans: number of input bands.
        crop_size: side of the augmented views.
        hparams: every hyper-parameter of the task.
        options: this term's options (``GeoSSLTask(loss_options={name: {...}})``) merged over its
            `LossTerm.default_options`; `create_loss_term` fills it for each term, so a
            term reads ``ctx.options["temperature"]`` without knowing the task.
    """

    num_features: int
    proj_dim: int
    temperature: float
    num_geo_clusters: int
    in_chans: int
    crop_size: int
    hparams: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, LossOptionValue] = field(default_factory=dict)


class LossTerm(nn.Module):
    """Base class of a loss term: declares what it needs from the step and computes one loss.

    Class attributes tell the task what to compute for this term (the union over active terms is
    computed once per step):

    - ``online_sources``: views the *query* encoder must encode (``"query"`` always is).
    - ``key_sources``: views the *key* (momentum) encoder must encode, e.g. ``{"same"}``.
    - ``queue_key_source``: the key source this term contrasts against the queue; the first
      active term (in ``losses`` order) that has one decides which keys are enqueued.
    - ``uses_queue``: the term reads ``StepOutputs.negatives``.
    - ``needs_queue_key``: the term reads ``keys[primary_key_source]``, the positive key of the
      queue-based term (e.g. CO2), so an active term with a ``queue_key_source`` (``moco`` or
      ``tp``) is required; the task refuses the ``losses`` otherwise.
    - ``needs_feature_map``: encoders also return un-pooled backbone maps.
    - ``needs_view_params``: the augmentation also returns each view's crop/flip geometry.
    - ``needs_projection``: the term reads the MoCo projection (``q``, ``q_raw``, ``keys``); when no
      active term does, the task builds no projection head.
    - ``default_options``: the options the term accepts in ``GeoSSLTask(loss_options={name:
      {option: value}})`` with their defaults; it reads them from ``ctx.options`` in
      [`check_context`][geossl.trainers.terms.base.LossTerm.check_context] /
      [`from_context`][geossl.trainers.terms.base.LossTerm.from_context]. Unknown options are
      refused.

    A term may own parameters (trained with the query branch; freeze EMA copies with
    ``deactivate_requires_grad``) and implement
    [`momentum_update`][geossl.trainers.terms.base.LossTerm.momentum_update] for them.

    An instance sets ``needs_shared_canvas`` when it relates pixels of view 0 to pixels of view 1
    (temporal SCRL): the task then refuses a datamodule whose pairs are not on one canvas.
    """

    needs_shared_canvas: bool = False

    online_sources: ClassVar[frozenset[str]] = frozenset({"query"})
    key_sources: ClassVar[frozenset[str]] = frozenset()
    queue_key_source: ClassVar[str | None] = None
    uses_queue: ClassVar[bool] = False
    needs_queue_key: ClassVar[bool] = False
    needs_feature_map: ClassVar[bool] = False
    needs_view_params: ClassVar[bool] = False
    needs_projection: ClassVar[bool] = True
    default_options: ClassVar[Mapping[str, LossOptionValue]] = {}

    @classmethod
    def view_sources(
        cls, options: Mapping[str, LossOptionValue]
    ) -> tuple[frozenset[str], frozenset[str]]:
        """The views this term needs encoded, given its resolved options.

        The default is the class attributes; a term whose options change its views (SCRL's
        ``temporal``) overrides this.

        Args:
            options: the term's options merged over its defaults.

        Returns:
            ``(online_sources, key_sources)``.
        """
        return cls.online_sources, cls.key_sources

    @classmethod
    def check_context(cls, ctx: LossTermContext) -> None:
        """Validate the task's hyper-parameters for this term (before any model is built).

        Args:
            ctx: the task's context.

        Raises:
            ValueError: naming the config key as ``model.<name>`` when a value does not fit.
        """

    @classmethod
    def from_context(cls, ctx: LossTermContext) -> "LossTerm":
        """Build the term from the task's context.

        Args:
            ctx: the task's context.

        Returns:
            The term.
        """
        raise NotImplementedError(f"{cls.__name__} must implement from_context")

    def forward(self, out: StepOutputs) -> TermOutput:
        """Compute the term's loss from the step's shared outputs.

        Args:
            out: the step's shared outputs.

        Returns:
            The loss and its metrics.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """EMA-update the term's own target parts, called once per step before the encoders run.

        Args:
            momentum: the task's momentum ``m`` (``ema = m * ema + (1 - m) * online``).
        """
