"""The ``co2`` loss term (see also tests/trainers/test_pretrain.py)."""

import pytest
import torch

from geossl.trainers import (
    GeoSSLTask,
    StepOutputs,
)
from tests.trainers.test_pretrain import TINY, make_batch, make_task

CO2_RECIPE: dict[str, float] = {"tp": 1.0, "co2": 10.0}


@pytest.mark.parametrize(
    "losses",
    [{"tp": 1.0, "co2": 10.0}, {"moco": 1.0, "geo": 1.0, "co2": 10.0}],
    ids=["tp+co2", "moco+geo+co2"],
)
def test_co2_recipes_train_a_step(monkeypatch, losses):
    torch.manual_seed(0)
    task, recorder = make_task(monkeypatch, losses=losses)
    loss = task.training_step(make_batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert "train/loss_co2" in recorder.logged
    co2 = recorder.logged["train/loss_co2"]
    assert torch.isfinite(co2)
    assert co2.item() > 0  # q and its positive key disagree on the random queue
    weighted = sum(w * recorder.logged[f"train/loss_{n}"] for n, w in losses.items())
    torch.testing.assert_close(recorder.logged["train_loss"].detach(), weighted)


def test_co2_reads_the_primary_key_and_the_queue(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"tp": 1.0, "moco": 1.0, "co2": 10.0})
    captured: list[StepOutputs] = []
    original = task.compute_step_outputs

    def spy(batch):
        captured.append(original(batch))
        return captured[-1]

    monkeypatch.setattr(task, "compute_step_outputs", spy)
    task.training_step(make_batch(), 0)
    out = captured[0]
    assert out.primary_key_source == "temporal"  # tp comes first in losses
    assert out.negatives is not None
    term = task.loss_terms["co2"]
    expected = term.loss(out.q, out.keys["temporal"], out.negatives)  # type: ignore[operator]
    torch.testing.assert_close(term(out).loss, expected)
    other = term.loss(out.q, out.keys["same"], out.negatives)  # type: ignore[operator]
    assert not torch.allclose(expected, other)


def _backbone_grads(losses: dict[str, float]) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # same weights and queue
    task = GeoSSLTask(**{**TINY, "losses": losses})
    task.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    torch.manual_seed(1)  # same augmented views
    task.training_step(make_batch(), 0).backward()
    return {n: p.grad.clone() for n, p in task.backbone.named_parameters() if p.grad is not None}


def test_co2_changes_query_encoder_gradients():
    """Guards against a detached CO2 loss (the torch.tensor(...) bug), which trains nothing."""
    tp = _backbone_grads({"tp": 1.0})
    tp_co2 = _backbone_grads(CO2_RECIPE)
    assert tp.keys() == tp_co2.keys()
    diff = sum((tp_co2[n] - tp[n]).norm() ** 2 for n in tp) ** 0.5
    norm = sum(g.norm() ** 2 for g in tp.values()) ** 0.5
    assert diff / norm > 1e-3
    assert all(torch.isfinite(g).all() for g in tp_co2.values())


@pytest.mark.parametrize(
    "losses",
    [{"co2": 1.0}, {"geo": 1.0, "co2": 10.0}, {"moco": 0.0, "co2": 10.0}],
    ids=["alone", "with-geo", "moco-off"],
)
def test_co2_needs_moco_or_tp(losses):
    with pytest.raises(ValueError, match=r"model\.losses: co2 needs moco or tp"):
        GeoSSLTask(losses=losses)  # refused before the default resnet50 is built


def test_co2_temperature_default_and_option():
    task = GeoSSLTask(**{**TINY, "losses": CO2_RECIPE})
    assert task.loss_terms["co2"].loss.temperature == 0.04  # type: ignore[union-attr]
    task = GeoSSLTask(
        **{**TINY, "losses": CO2_RECIPE, "loss_options": {"co2": {"temperature": 0.1}}}
    )
    assert task.loss_terms["co2"].loss.temperature == 0.1  # type: ignore[union-attr]
    assert task.hparams["loss_options"] == {"co2": {"temperature": 0.1}}
    assert task.loss_terms["tp"].loss.temperature == 0.02  # type: ignore[union-attr]
