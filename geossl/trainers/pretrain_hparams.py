"""The checks of `GeoSSLTask`'s hyper-parameters, before anything is built.

Every message names the offending key as ``model.<name>`` (the LightningCLI key).
"""

import math
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from geossl.models import check_backbone_name
from geossl.trainers.terms import (
    DEFAULT_LOSSES,
    LossOptionValue,
    LossTermContext,
    get_loss_term,
    list_loss_terms,
    resolve_loss_options,
)
from geossl.utils.checks import check_at_least, check_fraction, check_range

__all__ = ["NORMALIZATIONS", "check_pretrain_hparams", "checkpoint_description"]

#: Values of ``model.normalization`` (see :class:`~geossl.trainers.GeoSSLTask`).
NORMALIZATIONS = ("auto", "imagenet", "data")


def check_pretrain_hparams(hp: Mapping[str, Any]) -> dict[str, float]:
    """Validate the task's hyper-parameters before anything is built.

    Args:
        hp: the task's hyper-parameters.

    Returns:
        The active loss terms (weight > 0) and their weights, in the given order.

    Raises:
        ValueError: naming the offending key as ``model.<name>``.

    Example:
        >>> from geossl.trainers import GeoSSLTask
        >>> import inspect
        >>> hp = {k: p.default for k, p in inspect.signature(GeoSSLTask).parameters.items()}
        >>> check_pretrain_hparams({**hp, "losses": {"tp": 1, "geo": 0}})
        {'tp': 1.0}
        >>> check_pretrain_hparams({**hp, "temperature": 0})
        Traceback (most recent call last):
        ...
        ValueError: model.temperature must be > 0, got 0
    """
    _check_model(hp)
    _check_normalization(hp)
    _check_input_block(hp)
    weights = _check_losses(hp)
    resolved = _check_loss_options(hp, weights)
    probe = LossTermContext(  # the backbone is not built yet: num_features is a placeholder
        num_features=1,
        proj_dim=hp["proj_dim"],
        temperature=hp["temperature"],
        num_geo_clusters=hp["num_geo_clusters"],
        in_chans=hp["in_chans"],
        crop_size=hp["crop_size"],
        hparams=dict(hp),
    )
    for name in weights:
        options = resolved.get(name) or resolve_loss_options(name)
        get_loss_term(name).check_context(replace(probe, options=options))
    return weights


def _check_model(hp: Mapping[str, Any]) -> None:
    """The backbone, sizes, temperature, momenta and optimiser settings."""
    try:
        check_backbone_name(hp["backbone"])
    except ValueError as err:
        raise ValueError(f"model.backbone: {err}") from err
    for name in ["in_chans", "queue_size", "proj_hidden_dim", "proj_dim"]:
        check_at_least(f"model.{name}", hp[name], 1)
    check_at_least("model.crop_size", hp["crop_size"], 2)
    if not (math.isfinite(hp["temperature"]) and hp["temperature"] > 0):
        raise ValueError(f"model.temperature must be > 0, got {hp['temperature']}")
    for name in ["momentum", "sgd_momentum"]:
        check_fraction(f"model.{name}", hp[name], high_open=True)
    check_range("model.min_scale", hp["min_scale"], low=0, high=1, low_open=True)
    if not (math.isfinite(hp["lr"]) and hp["lr"] > 0):
        raise ValueError(f"model.lr must be > 0, got {hp['lr']}")
    if not (math.isfinite(hp["weight_decay"]) and hp["weight_decay"] >= 0):
        raise ValueError(f"model.weight_decay must be >= 0, got {hp['weight_decay']}")
    check_range("model.warmup_epochs", hp["warmup_epochs"], low=0)
    if hp["nan_check_every_n_steps"] < 0:
        raise ValueError(
            "model.nan_check_every_n_steps must be >= 0 (0 disables the check), "
            f"got {hp['nan_check_every_n_steps']}"
        )


def _check_normalization(hp: Mapping[str, Any]) -> None:
    """``normalization``, ``normalization_samples`` and the given ``mean`` / ``std``."""
    if hp["normalization"] not in NORMALIZATIONS:
        raise ValueError(
            f"model.normalization must be one of {list(NORMALIZATIONS)}, "
            f"got {hp['normalization']!r}"
        )
    check_at_least("model.normalization_samples", hp["normalization_samples"], 1)
    given = [name for name in ("mean", "std") if hp[name] is not None]
    if len(given) == 1 and (hp["in_chans"] != 3 or hp["normalization"] == "data"):
        missing = "std" if given == ["mean"] else "mean"
        raise ValueError(
            f"model.{missing} is missing: model.mean and model.std go together for "
            f"model.in_chans={hp['in_chans']} (set both, or neither to estimate both from "
            "the data)"
        )
    if not given and hp["normalization"] == "imagenet" and hp["in_chans"] != 3:
        raise ValueError(
            f"model.normalization=imagenet needs model.in_chans=3 (ImageNet's statistics are "
            f"RGB), got {hp['in_chans']}: use model.normalization=auto (the data's) or set "
            "model.mean and model.std"
        )
    for name in ["mean", "std"]:
        stats = hp[name]
        if stats is not None and len(stats) != hp["in_chans"]:
            raise ValueError(
                f"model.{name} has {len(stats)} values but model.in_chans={hp['in_chans']}"
            )
    if hp["mean"] is not None and not all(math.isfinite(m) for m in hp["mean"]):
        raise ValueError(f"model.mean must be finite, got {hp['mean']}")
    if hp["std"] is not None and any(not (math.isfinite(s) and s > 0) for s in hp["std"]):
        raise ValueError(f"model.std must be finite and > 0, got {hp['std']}")


#: Keys of ``model.input_block``: the data module's, then what checkpoints add.
INPUT_BLOCK_KEYS = frozenset(
    {"dataset", "band_names", "bands", "scale", "mean", "std", "image_size"}
)


def _check_input_block(hp: Mapping[str, Any]) -> None:
    """``input_block``: known keys, one band name per input band, a positive scale."""
    block = hp.get("input_block")
    if block is None:
        return
    if not isinstance(block, Mapping) or set(block) - INPUT_BLOCK_KEYS:
        unknown = sorted(set(block) - INPUT_BLOCK_KEYS) if isinstance(block, Mapping) else block
        raise ValueError(
            f"model.input_block: unknown keys {unknown} (known: {sorted(INPUT_BLOCK_KEYS)})"
        )
    names = block.get("band_names")
    if names is not None and len(names) != hp["in_chans"]:
        raise ValueError(
            f"model.input_block.band_names has {len(names)} names but "
            f"model.in_chans={hp['in_chans']}"
        )
    scale = block.get("scale")
    if scale is not None and not (math.isfinite(float(scale)) and float(scale) > 0):
        raise ValueError(f"model.input_block.scale must be > 0, got {scale}")


def _check_losses(hp: Mapping[str, Any]) -> dict[str, float]:
    """The loss weights: known terms, finite weights >= 0, and what each term needs."""
    losses = DEFAULT_LOSSES if hp["losses"] is None else hp["losses"]
    if not losses:
        raise ValueError(f"model.losses is empty; valid terms: {list_loss_terms()}")
    for name, weight in losses.items():
        if name not in list_loss_terms():
            raise ValueError(
                f"model.losses: unknown loss term {name!r}; valid: {list_loss_terms()}"
            )
        if not (
            isinstance(weight, int | float)
            and not isinstance(weight, bool)
            and math.isfinite(weight)
            and weight >= 0
        ):
            raise ValueError(f"model.losses[{name!r}] must be a finite weight >= 0, got {weight!r}")
    weights = {name: float(w) for name, w in losses.items() if w > 0}
    if not weights:
        raise ValueError(f"model.losses has no term with a positive weight: {dict(losses)}")
    providers = [n for n in list_loss_terms() if get_loss_term(n).queue_key_source is not None]
    has_queue_key = any(get_loss_term(n).queue_key_source is not None for n in weights)
    for name in weights:
        if get_loss_term(name).needs_queue_key and not has_queue_key:
            raise ValueError(
                f"model.losses: {name} needs {' or '.join(providers)} (a term contrasting a "
                f"positive key against the queue) with a weight > 0, got {dict(losses)}"
            )
    return weights


def _check_loss_options(
    hp: Mapping[str, Any], weights: Mapping[str, float]
) -> dict[str, dict[str, LossOptionValue]]:
    """Resolve every given term's options; warn about the options of inactive terms."""
    resolved: dict[str, dict[str, LossOptionValue]] = {}
    for name, options in (hp["loss_options"] or {}).items():
        if name not in list_loss_terms():
            raise ValueError(
                f"model.loss_options.{name}: unknown loss term {name!r}; valid: {list_loss_terms()}"
            )
        if not isinstance(options, Mapping):
            raise ValueError(
                f"model.loss_options.{name} must map option names to values, got {options!r}"
            )
        resolved[name] = resolve_loss_options(name, options)
        if name not in weights:
            losses = DEFAULT_LOSSES if hp["losses"] is None else hp["losses"]
            warnings.warn(
                f"model.loss_options.{name} is set but {name!r} is not an active loss term "
                f"(model.losses: {dict(losses)}); its options are ignored",
                UserWarning,
                stacklevel=4,
            )
    return resolved


def checkpoint_description(
    hp: Mapping[str, Any], active: list[str], mean: list[float], std: list[float]
) -> dict[str, Any]:
    """What a pretraining checkpoint records so that it describes itself.

    Args:
        hp: the task's hyper-parameters.
        active: the active terms.
        mean: the normalisation mean the run trains with.
        std: its std.

    Returns:
        ``losses`` (every given weight, the default when none were given), ``loss_options``
        (every option of every active term, defaults filled in) and ``input_block`` (the data
        module's, plus ``mean``, ``std`` and ``image_size``).

    Example:
        >>> hp = {"losses": None, "loss_options": None, "input_block": None, "in_chans": 3,
        ...       "crop_size": 32}
        >>> described = checkpoint_description(hp, ["tp", "geo"], [0.5] * 3, [0.2] * 3)
        >>> block = described["input_block"]
        >>> described["losses"], tuple(block["band_names"])
        ({'tp': 1.0, 'geo': 1.0}, ('band_1', 'band_2', 'band_3'))
    """
    given = hp["loss_options"] or {}
    block = dict(hp["input_block"] or {})
    block.setdefault("band_names", [f"band_{i + 1}" for i in range(hp["in_chans"])])
    block.setdefault("scale", 1.0 / 255.0)
    block.update(mean=list(mean), std=list(std), image_size=int(hp["crop_size"]))
    return {
        "losses": dict(DEFAULT_LOSSES if hp["losses"] is None else hp["losses"]),
        "loss_options": {name: resolve_loss_options(name, given.get(name)) for name in active},
        "input_block": block,
    }
