"""The registry of loss terms: ``register_loss_term`` / ``get_loss_term`` / ``create_loss_term``."""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from geossl.trainers.terms.base import VIEW_SOURCES, LossOptionValue, LossTerm, LossTermContext

_T = TypeVar("_T", bound=type[LossTerm])
_LOSS_TERMS: dict[str, type[LossTerm]] = {}


def register_loss_term(name: str) -> Callable[[_T], _T]:
    """Class decorator that registers a `LossTerm` under ``name`` (the ``losses`` key).

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
    """Validate a term's options and merge them over its `LossTerm.default_options`.

    Only the generic checks happen here (the option exists, its value has the default's type: a
    bool for a bool option, a finite number otherwise); the term's
    [`LossTerm.check_context`][geossl.trainers.terms.base.LossTerm.check_context] checks the ranges
    (e.g. a temperature > 0).

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


@dataclass(frozen=True)
class TermNeeds:
    """What a recipe's active terms need from the step, in union.

    Attributes:
        online_sources: views the query encoder encodes (always ``"query"``).
        key_sources: views the key encoder encodes.
        needs_feature_map: encoders also return un-pooled backbone maps.
        needs_view_params: the augmentation also returns each view's geometry.
        needs_projection: some term reads the MoCo projection.
        uses_queue: some term reads the queue's negatives.
        queue_key_source: the key source enqueued (the first term's that has one).
    """

    online_sources: frozenset[str]
    key_sources: frozenset[str]
    needs_feature_map: bool
    needs_view_params: bool
    needs_projection: bool
    uses_queue: bool
    queue_key_source: str | None


def term_needs(
    names: list[str], options: Mapping[str, Mapping[str, LossOptionValue] | None]
) -> TermNeeds:
    """What the terms ``names`` with ``options`` need from the step.

    Args:
        names: active term names.
        options: ``loss_options`` (a term's missing entry means its defaults).

    Returns:
        The union of their needs.

    Example:
        >>> needs = term_needs(["tp", "geo"], {})
        >>> sorted(needs.key_sources), needs.uses_queue, needs.needs_feature_map
        (['temporal'], True, False)
    """
    classes = [get_loss_term(name) for name in names]
    sources = [
        cls.view_sources(resolve_loss_options(name, options.get(name)))
        for name, cls in zip(names, classes, strict=True)
    ]
    return TermNeeds(
        online_sources=frozenset({"query"}).union(*(online for online, _ in sources)),
        key_sources=frozenset[str]().union(*(key for _, key in sources)),
        needs_feature_map=any(c.needs_feature_map for c in classes),
        needs_view_params=any(c.needs_view_params for c in classes),
        needs_projection=any(c.needs_projection for c in classes),
        uses_queue=any(c.uses_queue for c in classes),
        queue_key_source=next(
            (c.queue_key_source for c in classes if c.queue_key_source is not None), None
        ),
    )


def create_loss_term(
    name: str, ctx: LossTermContext, options: Mapping[str, LossOptionValue] | None = None
) -> LossTerm:
    """Build a registered loss term.

    Args:
        name: registered name.
        ctx: the task's context (its ``options`` are replaced by this term's resolved options).
        options: the term's options (see
            [`resolve_loss_options`][geossl.trainers.terms.registry.resolve_loss_options]); defaults
            when ``None``.

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
