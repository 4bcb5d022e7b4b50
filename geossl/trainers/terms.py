"""Loss terms of :class:`~geossl.trainers.GeoSSLTask`, the step's shared outputs, the registry.

A term is a small :class:`LossTerm` (an ``nn.Module``) registered under the name used in
``GeoSSLTask(losses={name: weight})``. It declares what it needs from the step (which views the
query and key encoders must encode, the queue, feature maps, view geometry) and the options it
accepts; the task computes the union once into :class:`StepOutputs` and every term reads from it.
Adding a method (CO2, SCRL) is a new registered term; the task does not change.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from geossl.losses import CO2Loss, GeoLocationLoss, MoCoLoss
from geossl.models import GeoLocationHead
from geossl.transforms import ViewParams

__all__ = [
    "DEFAULT_LOSSES",
    "VIEW_SOURCES",
    "ConsistentContrastTerm",
    "EncoderOutput",
    "GeoLocationTerm",
    "InfoNCETerm",
    "LossOptionValue",
    "LossTerm",
    "LossTermContext",
    "MoCoTerm",
    "StepOutputs",
    "TemporalPositiveTerm",
    "TermOutput",
    "create_loss_term",
    "get_loss_term",
    "list_loss_terms",
    "register_loss_term",
    "resolve_loss_options",
]

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
            :attr:`LossTerm.default_options`; :func:`create_loss_term` fills it for each term, so a
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
      :meth:`check_context` / :meth:`from_context`. Unknown options are refused.

    A term may own parameters (trained with the query branch; freeze EMA copies with
    ``deactivate_requires_grad``) and implement :meth:`momentum_update` for them.

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


_T = TypeVar("_T", bound=type[LossTerm])
_LOSS_TERMS: dict[str, type[LossTerm]] = {}


def register_loss_term(name: str) -> Callable[[_T], _T]:
    """Class decorator that registers a :class:`LossTerm` under ``name`` (the ``losses`` key).

    Args:
        name: the key used in ``GeoSSLTask(losses={name: weight})`` and in ``train/loss_<name>``.

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        ValueError: if ``name`` is empty, has a ``.`` (a ``ModuleDict`` key), is already registered,
            or the class is not a ``LossTerm`` asking for known view sources with numeric
            ``default_options``.
    """

    def decorator(cls: _T) -> _T:
        if not name or "." in name:
            raise ValueError(f"loss term names must be non-empty without '.', got {name!r}")
        if name in _LOSS_TERMS:
            raise ValueError(f"loss term {name!r} is already registered ({_LOSS_TERMS[name]})")
        if not issubclass(cls, LossTerm):
            raise ValueError(f"{cls} is not a LossTerm subclass")
        unknown = (cls.online_sources | cls.key_sources) - VIEW_SOURCES.keys()
        if unknown:
            raise ValueError(f"{cls.__name__} asks for unknown view sources {sorted(unknown)}")
        if cls.queue_key_source is not None and cls.queue_key_source not in cls.key_sources:
            raise ValueError(f"{cls.__name__}.queue_key_source must be one of its key_sources")
        for key, value in cls.default_options.items():
            if "." in key or not isinstance(value, int | float):
                raise ValueError(
                    f"{cls.__name__}.default_options: {key!r} must be a name without '.' "
                    f"with a number or a bool as default, got {value!r}"
                )
        _LOSS_TERMS[name] = cls
        return cls

    return decorator


def list_loss_terms() -> list[str]:
    """Names of the registered loss terms.

    Returns:
        Sorted names.
    """
    return sorted(_LOSS_TERMS)


def get_loss_term(name: str) -> type[LossTerm]:
    """Look up a registered loss term class.

    Args:
        name: registered name.

    Returns:
        The class.

    Raises:
        ValueError: if the name is unknown; the message lists the valid names.
    """
    if name not in _LOSS_TERMS:
        raise ValueError(f"unknown loss term {name!r}; valid: {list_loss_terms()}")
    return _LOSS_TERMS[name]


def resolve_loss_options(
    name: str, options: Mapping[str, LossOptionValue] | None = None
) -> dict[str, LossOptionValue]:
    """Validate a term's options and merge them over its :attr:`LossTerm.default_options`.

    Only the generic checks happen here (the option exists, its value has the default's type: a
    bool for a bool option, a finite number otherwise); the term's
    :meth:`LossTerm.check_context` checks the ranges (e.g. a temperature > 0).

    Args:
        name: registered term name.
        options: option -> value, as given in ``GeoSSLTask(loss_options={name: options})``.

    Returns:
        Every option of the term: the given values, the defaults for the others (numbers as
        floats, bools as bools).

    Raises:
        ValueError: if the name is unknown, or naming ``model.loss_options.<name>.<option>`` when
            the term has no such option or the value has the wrong type or is not finite.
    """
    cls = get_loss_term(name)
    resolved: dict[str, LossOptionValue] = {
        key: value if isinstance(value, bool) else float(value)
        for key, value in cls.default_options.items()
    }
    for key, value in (options or {}).items():
        where = f"model.loss_options.{name}.{key}"
        if key not in cls.default_options:
            raise ValueError(
                f"{where}: the {name!r} loss term has no option {key!r}; "
                f"valid: {sorted(cls.default_options)}"
            )
        if isinstance(cls.default_options[key], bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, got {value!r}")
            resolved[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value}")
        resolved[key] = float(value)
    return resolved


def create_loss_term(
    name: str, ctx: LossTermContext, options: Mapping[str, LossOptionValue] | None = None
) -> LossTerm:
    """Build a registered loss term.

    Args:
        name: registered name.
        ctx: the task's context (its ``options`` are replaced by this term's resolved options).
        options: the term's options (see :func:`resolve_loss_options`); defaults when ``None``.

    Returns:
        The term module.

    Raises:
        ValueError: if the name is unknown, an option is invalid or the context does not fit
            the term.
    """
    cls = get_loss_term(name)
    term_ctx = replace(ctx, options=resolve_loss_options(name, options))
    cls.check_context(term_ctx)
    return cls.from_context(term_ctx)


class InfoNCETerm(LossTerm):
    """InfoNCE of the query against one key source and the queue (:class:`MoCoLoss`).

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


@register_loss_term("geo")
class GeoLocationTerm(LossTerm):
    r"""Geo-location pretext: :class:`GeoLocationHead` on ``q_raw``, cross-entropy on ``geo_label``.

    Reads ``batch["geo_label"]`` (int64 ``[B]``, -1 for an unknown cluster) and logs ``geo_acc``
    (accuracy over the samples with a known cluster).

    Option ``normalize_input`` (default true): the head reads the projection rescaled to norm
    :math:`\sqrt{D}` (see :class:`GeoLocationHead`); false is the paper's head on the raw
    projection, whose cross-entropy can run far above :math:`\ln K`.

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


@register_loss_term("co2")
class ConsistentContrastTerm(LossTerm):
    r"""CO2 consistent contrast (Wei et al., ICLR 2021): :class:`CO2Loss` on the positive key.

    Reads ``q``, the positive key ``keys[primary_key_source]`` of the queue-based term (the key
    of ``tp`` or ``moco``, whichever comes first in ``losses``) and the queue ``negatives``:

    .. math::

        \mathcal{L}_{con} = \tfrac12 \mathrm{KL}(P \,\|\, Q) + \tfrac12 \mathrm{KL}(Q \,\|\, P),
        \quad Q_i = \mathrm{softmax}_i(q \cdot n_i / \tau_{con}),
        \quad P_i = \mathrm{softmax}_i(p \cdot n_i / \tau_{con})

    It is a regulariser: it needs ``moco`` or ``tp`` to be active (``needs_queue_key``), e.g.
    ``losses={"tp": 1, "co2": 10}``, whose ``co2`` weight is the paper's :math:`\alpha`.

    Defaults, both (unverified) in REFERENCE.md for CO2 on MoCo: :math:`\alpha = 10` (the weight,
    set in ``losses``) and :math:`\tau_{con} = 0.04` (option ``temperature``, set with
    ``loss_options={"co2": {"temperature": 0.04}}``).

    Args:
        temperature: :math:`\tau_{con}` > 0 (0.04, unverified).
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
