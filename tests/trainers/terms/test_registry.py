"""The loss-term registry and the generic ``loss_options`` path."""

from typing import ClassVar

import pytest

from geossl.trainers import (
    GeoSSLTask,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
    create_loss_term,
    resolve_loss_options,
)
from geossl.trainers.terms import ConsistentContrastTerm, register_loss_term
from geossl.trainers.terms import registry as terms_module
from tests.trainers.terms.test_co2 import CO2_RECIPE
from tests.trainers.test_pretrain import TINY


@pytest.mark.parametrize(
    ("loss_options", "match"),
    [
        ({"nope": {"x": 1.0}}, r"model\.loss_options\.nope: unknown loss term 'nope'; valid: \["),
        ({"co2": {"temp": 0.1}}, r"model\.loss_options\.co2\.temp: .*valid: \['temperature'\]"),
        ({"tp": {"temperature": 0.1}}, r"model\.loss_options\.tp\.temperature: .*valid: \[\]"),
        ({"co2": {"temperature": 0.0}}, r"model\.loss_options\.co2\.temperature must be > 0"),
        ({"co2": {"temperature": -1.0}}, r"model\.loss_options\.co2\.temperature must be > 0"),
        ({"co2": {"temperature": float("nan")}}, r"model\.loss_options\.co2\.temperature .*finite"),
        ({"co2": {"temperature": float("inf")}}, r"model\.loss_options\.co2\.temperature .*finite"),
        ({"co2": {"temperature": "0.1"}}, r"model\.loss_options\.co2\.temperature .*a number"),
        ({"co2": {"temperature": True}}, r"model\.loss_options\.co2\.temperature .*a number"),
        ({"co2": 0.1}, r"model\.loss_options\.co2 must map option names"),
    ],
)
def test_loss_options_validation(loss_options, match):
    with pytest.raises(ValueError, match=match):
        GeoSSLTask(losses=CO2_RECIPE, loss_options=loss_options)


def test_bool_options_take_bools_only():
    assert resolve_loss_options("scrl", {"temporal": True})["temporal"] is True
    assert resolve_loss_options("scrl")["temporal"] is False
    assert resolve_loss_options("scrl", {"num_boxes": 4})["num_boxes"] == 4.0
    with pytest.raises(ValueError, match=r"model\.loss_options\.scrl\.temporal must be true or"):
        resolve_loss_options("scrl", {"temporal": 1})
    with pytest.raises(ValueError, match=r"model\.loss_options\.scrl\.num_boxes must be a number"):
        resolve_loss_options("scrl", {"num_boxes": True})


def test_options_of_an_inactive_term_warn():
    with pytest.warns(UserWarning, match=r"model\.loss_options\.co2 is set but 'co2' is not"):
        task = GeoSSLTask(**{**TINY, "losses": {"tp": 1.0, "co2": 0.0}}, loss_options={"co2": {}})
    assert "co2" not in task.loss_terms
    # the names and the values' types are still checked (a typo is an error, not a warning)
    with pytest.raises(ValueError, match=r"model\.loss_options\.co2\.temprature: "):
        GeoSSLTask(losses={"tp": 1.0}, loss_options={"co2": {"temprature": 0.1}})


@pytest.fixture
def options_term():
    """A term with options of its own (as SCRL's), recording the context it is built with."""
    seen: list[LossTermContext] = []

    @register_loss_term("_opts")
    class OptionsTerm(LossTerm):
        default_options: ClassVar[dict[str, float]] = {"alpha": 1.0, "beta": 2.0}

        @classmethod
        def check_context(cls, ctx: LossTermContext) -> None:
            if ctx.options["beta"] < 0:
                raise ValueError("model.loss_options._opts.beta must be >= 0")

        @classmethod
        def from_context(cls, ctx: LossTermContext) -> "OptionsTerm":
            seen.append(ctx)
            return cls()

        def forward(self, out: StepOutputs) -> TermOutput:
            return TermOutput(out.q.square().mean() * 0)

    yield seen
    del terms_module._LOSS_TERMS["_opts"]


def test_loss_options_reach_any_term(options_term):
    task = GeoSSLTask(
        **{**TINY, "losses": {"moco": 1.0, "_opts": 1.0}},
        loss_options={"_opts": {"beta": 3}},
    )
    assert "_opts" in task.loss_terms
    assert dict(options_term[-1].options) == {"alpha": 1.0, "beta": 3.0}
    with pytest.raises(ValueError, match=r"_opts\.beta must be >= 0"):
        GeoSSLTask(losses={"moco": 1.0, "_opts": 1.0}, loss_options={"_opts": {"beta": -1}})


def test_resolve_and_create_with_defaults():
    assert resolve_loss_options("co2") == {"temperature": 0.04}
    assert resolve_loss_options("co2", {"temperature": 1}) == {"temperature": 1.0}
    assert resolve_loss_options("moco") == {}
    with pytest.raises(ValueError, match=r"model\.loss_options\.geo\.k: "):
        resolve_loss_options("geo", {"k": 1.0})
    ctx = LossTermContext(
        num_features=8, proj_dim=4, temperature=0.1, num_geo_clusters=3, in_chans=3, crop_size=8
    )
    term = create_loss_term("co2", ctx)
    assert isinstance(term, ConsistentContrastTerm)
    assert term.loss.temperature == 0.04
    term = create_loss_term("co2", ctx, {"temperature": 0.5})
    assert isinstance(term, ConsistentContrastTerm)
    assert term.loss.temperature == 0.5


def test_registry_flags_of_co2():
    assert ConsistentContrastTerm.uses_queue
    assert ConsistentContrastTerm.needs_queue_key
    assert not ConsistentContrastTerm.key_sources  # it reuses the key of moco / tp
    assert ConsistentContrastTerm.queue_key_source is None


def test_register_rejects_non_numeric_default_options():
    class BadOptions(LossTerm):
        default_options: ClassVar[dict[str, object]] = {"mode": "fast"}  # type: ignore[assignment]

    with pytest.raises(ValueError, match=r"BadOptions\.default_options: 'mode'"):
        register_loss_term("_bad_options")(BadOptions)
    assert "_bad_options" not in terms_module.list_loss_terms()
