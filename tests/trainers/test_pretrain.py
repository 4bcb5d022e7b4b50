import math
from pathlib import Path
from typing import Any, ClassVar

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from rich.console import Console
from torch.utils.data import DataLoader

from geossl.models import KeyQueue
from geossl.trainers import (
    GeoSSLTask,
    LossTerm,
    LossTermContext,
    NonFiniteLossError,
    StepOutputs,
    TermOutput,
    create_loss_term,
    list_loss_terms,
    register_loss_term,
)
from geossl.trainers.callbacks import RunSummary
from geossl.trainers.schedule import warmup_cosine_scheduler
from geossl.trainers.terms import registry

TINY: dict[str, Any] = {
    "backbone": "resnet18",
    "crop_size": 32,
    "queue_size": 64,
    "proj_hidden_dim": 64,
    "proj_dim": 16,
    "num_geo_clusters": 5,
}


def make_batch(batch_size: int = 4, size: int = 40, in_chans: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(batch_size)
    return {
        "image": torch.randint(
            0, 256, (batch_size, 2, in_chans, size, size), dtype=torch.uint8, generator=g
        ),
        "geo_label": torch.tensor([0, 1, -1, 4, 2, 3, 0, 1][:batch_size]),
        "label": torch.zeros(batch_size, dtype=torch.long),
    }


class Recorder:
    """Stands in for LightningModule.log outside a Trainer."""

    def __init__(self) -> None:
        self.logged: dict[str, torch.Tensor] = {}
        self.options: dict[str, dict[str, Any]] = {}

    def __call__(self, name: str, value: torch.Tensor, **kwargs: Any) -> None:
        self.logged[name] = value
        self.options[name] = kwargs


def make_task(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[GeoSSLTask, Recorder]:
    task = GeoSSLTask(**{**TINY, **kwargs})
    recorder = Recorder()
    monkeypatch.setattr(task, "log", recorder)
    return task, recorder


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"queue_size": 0}, r"model\.queue_size"),
        ({"queue_size": -5}, r"model\.queue_size"),
        ({"temperature": 0.0}, r"model\.temperature"),
        ({"temperature": -1.0}, r"model\.temperature"),
        ({"momentum": 1.0}, r"model\.momentum"),
        ({"momentum": -0.1}, r"model\.momentum"),
        ({"backbone": "resnet5O"}, r"model\.backbone.*resnet50"),
        ({"losses": {"mocco": 1.0}}, r"model\.losses.*'mocco'.*valid: \['co2', 'geo', 'moco'"),
        ({"losses": {"moco": -1.0}}, r"model\.losses\['moco'\]"),
        ({"losses": {"moco": float("nan")}}, r"model\.losses\['moco'\]"),
        ({"losses": {"moco": 0.0, "geo": 0.0}}, r"model\.losses has no term with a positive"),
        ({"losses": {}}, r"model\.losses is empty"),
        ({"num_geo_clusters": 1}, r"model\.num_geo_clusters"),
        ({"in_chans": 0}, r"model\.in_chans"),
        ({"in_chans": 4, "mean": [0.5] * 4}, r"model\.std is missing: .*go together"),
        ({"std": [0.2] * 3, "normalization": "data"}, r"model\.mean is missing"),
        ({"in_chans": 4, "normalization": "imagenet"}, r"model\.normalization=imagenet needs"),
        ({"normalization": "dataset"}, r"model\.normalization must be one of"),
        ({"normalization_samples": 0}, r"model\.normalization_samples"),
        ({"in_chans": 4, "mean": [0.5] * 4, "std": [0.2] * 3}, r"model\.std has 3 values"),
        ({"mean": [0.5] * 4}, r"model\.mean has 4 values"),
        ({"std": [0.2, 0.0, 0.2]}, r"model\.std must be"),
        ({"proj_dim": 0}, r"model\.proj_dim"),
        ({"proj_hidden_dim": 0}, r"model\.proj_hidden_dim"),
        ({"crop_size": 1}, r"model\.crop_size"),
        ({"min_scale": 1.5}, r"model\.min_scale"),
        ({"lr": 0.0}, r"model\.lr"),
        ({"sgd_momentum": 1.0}, r"model\.sgd_momentum"),
        ({"weight_decay": -1e-4}, r"model\.weight_decay"),
        ({"warmup_epochs": -1}, r"model\.warmup_epochs"),
        # non-finite values fail before training, naming the key
        ({"losses": {"moco": float("inf")}}, r"model\.losses\['moco'\] must be a finite weight"),
        ({"losses": {"moco": float("-inf")}}, r"model\.losses\['moco'\]"),
        ({"losses": {"moco": "1"}}, r"model\.losses\['moco'\]"),
        ({"temperature": float("nan")}, r"model\.temperature"),
        ({"temperature": float("inf")}, r"model\.temperature"),
        ({"momentum": float("nan")}, r"model\.momentum"),
        ({"lr": float("nan")}, r"model\.lr"),
        ({"weight_decay": float("nan")}, r"model\.weight_decay"),
        ({"weight_decay": float("inf")}, r"model\.weight_decay"),
        ({"min_scale": float("nan")}, r"model\.min_scale"),
        ({"mean": [0.5, float("nan"), 0.5]}, r"model\.mean must be finite"),
        ({"std": [0.2, float("inf"), 0.2]}, r"model\.std must be"),
        ({"nan_check_every_n_steps": -1}, r"model\.nan_check_every_n_steps"),
        (
            {"losses": {"tp": 1.0, "co2": 10.0}, "loss_options": {"co2": {"temperature": 0.0}}},
            r"model\.loss_options\.co2\.temperature",
        ),
        (
            {"losses": {"tp": 1.0, "co2": 10.0}, "loss_options": {"co2": {"temperature": -1e-3}}},
            r"model\.loss_options\.co2\.temperature",
        ),
        (
            {"losses": {"tp": 1.0, "co2": 1.0}, "loss_options": {"co2": {"temperature": math.nan}}},
            r"model\.loss_options\.co2\.temperature",
        ),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeoSSLTask(**kwargs)  # the default resnet50 is never built: validation comes first


def test_geo_clusters_unchecked_without_geo():
    GeoSSLTask(**{**TINY, "losses": {"moco": 1.0}, "num_geo_clusters": 0})


def test_defaults_are_the_paper_recipe():
    task = GeoSSLTask(**{**TINY, "losses": None})
    assert task.loss_weights == {"tp": 1.0, "geo": 1.0}
    assert task.hparams["temperature"] == 0.02
    assert task.hparams["momentum"] == 0.999
    assert task.needs.key_sources == {"temporal"}


def test_zero_weight_terms_are_dropped():
    task = GeoSSLTask(**{**TINY, "losses": {"moco": 1.0, "geo": 0.0}})
    assert list(task.loss_terms) == ["moco"]


# --- training step ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "losses",
    [{"moco": 1.0}, {"tp": 1.0}, {"moco": 1.0, "geo": 1.0}, {"tp": 1.0, "geo": 0.5}],
    ids=["moco", "tp", "moco+geo", "tp+geo"],
)
def test_training_step_recipes(monkeypatch, losses):
    torch.manual_seed(0)
    task, recorder = make_task(monkeypatch, losses=losses)
    loss = task.training_step(make_batch(), 0)
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    loss.backward()
    expected = {"train_loss", "loss", "train/embedding_std"} | {f"train/loss_{n}" for n in losses}
    if "geo" in losses:
        expected.add("train/geo_acc")
    assert set(recorder.logged) == expected
    weighted = sum(w * recorder.logged[f"train/loss_{n}"] for n, w in losses.items())
    torch.testing.assert_close(recorder.logged["train_loss"].detach(), weighted)
    # Only the bar's copy is a progress-bar metric, and it is the host value the check read:
    # Lightning calls .item() on every prog_bar tensor at the end of every step.
    assert [n for n, o in recorder.options.items() if o.get("prog_bar")] == ["loss"]
    assert recorder.logged["loss"].device.type == "cpu"
    assert recorder.logged["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
    std = recorder.logged["train/embedding_std"].item()
    assert 0 < std <= 1
    assert task.backbone.get_parameter("conv1.weight").grad is not None


def test_key_encoder_no_grad_and_ema(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"moco": 1.0, "geo": 1.0}, momentum=0.9)
    assert task.backbone_momentum is not None
    key_params = list(task.backbone_momentum.parameters()) + list(
        task.projection_head_momentum.parameters()  # type: ignore[union-attr]
    )
    assert all(not p.requires_grad for p in key_params)
    task.training_step(make_batch(), 0).backward()
    assert all(p.grad is None for p in key_params)
    assert any(p.grad is not None for p in task.backbone.parameters())
    # an optimiser step moves the query encoder; the next EMA update follows it
    with torch.no_grad():
        for p in task.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    before = [p.detach().clone() for p in task.backbone_momentum.parameters()]
    task.momentum_update()
    for old, new, q in zip(
        before, task.backbone_momentum.parameters(), task.backbone.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * q)
    # the optimiser only holds trainable parameters: query branch + geo head
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in key_params}
    assert {id(p) for p in task.loss_terms["geo"].parameters()} <= trainable


def test_queue_advances_and_is_in_state_dict(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"tp": 1.0, "moco": 1.0}, queue_size=10)
    assert task.queue is not None
    assert task.needs.queue_key_source == "temporal"  # the first contrastive term's keys
    state = task.state_dict()
    assert "queue.queue" in state
    assert "queue.ptr" in state
    for step, ptr in enumerate([4, 8, 2]):
        task.training_step(make_batch(), step)
        assert task.queue.ptr.item() == ptr


def test_enqueued_keys_are_this_steps_keys(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"moco": 1.0})
    captured: list[StepOutputs] = []
    original = task.compute_step_outputs

    def spy(batch):
        out = original(batch)
        captured.append(out)
        return out

    monkeypatch.setattr(task, "compute_step_outputs", spy)
    task.training_step(make_batch(), 0)
    assert task.queue is not None
    torch.testing.assert_close(task.queue.queue[:4], captured[0].keys["same"])
    assert captured[0].primary_key_source == "same"
    torch.testing.assert_close(captured[0].keys["same"].norm(dim=1), torch.ones(4))


def test_bf16_autocast_step(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"tp": 1.0, "geo": 1.0})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task.training_step(make_batch(), 0)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert task.queue is not None
    assert task.queue.queue.dtype == torch.float32


def test_channels_last_and_no_shuffle_bn(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"moco": 1.0}, channels_last=True, shuffle_bn=False)
    assert task.backbone.get_parameter("conv1.weight").is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.isfinite(task.training_step(make_batch(), 0))


def test_multispectral_task(monkeypatch):
    torch.manual_seed(0)
    task, _ = make_task(
        monkeypatch, losses={"moco": 1.0}, in_chans=4, mean=[0.4] * 4, std=[0.2] * 4
    )
    assert torch.isfinite(task.training_step(make_batch(in_chans=4), 0))


def test_bad_image_shape(monkeypatch):
    task, _ = make_task(monkeypatch, losses={"moco": 1.0})
    batch = make_batch()
    batch["image"] = batch["image"][:, 0]
    with pytest.raises(ValueError, match=r"batch\['image'\]"):
        task.training_step(batch, 0)


def test_forward_returns_backbone_features():
    task = GeoSSLTask(**{**TINY, "losses": {"moco": 1.0}}).eval()
    assert task(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_geo_only_has_no_key_encoder_nor_queue(monkeypatch):
    task, recorder = make_task(monkeypatch, losses={"geo": 1.0})
    assert task.backbone_momentum is None
    assert task.queue is None
    assert torch.isfinite(task.training_step(make_batch(), 0))
    assert "train/geo_acc" in recorder.logged


# --- loss-term registry -----------------------------------------------------------------------


def test_registry_lists_and_rejects():
    assert {"moco", "tp", "geo"} <= set(list_loss_terms())
    ctx = LossTermContext(
        num_features=8, proj_dim=4, temperature=0.1, num_geo_clusters=3, in_chans=3, crop_size=8
    )
    assert create_loss_term("geo", ctx).head.linear.out_features == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"unknown loss term 'nope'; valid: \["):
        create_loss_term("nope", ctx)
    with pytest.raises(ValueError, match="already registered"):
        register_loss_term("moco")(LossTerm)
    with pytest.raises(ValueError, match=r"without '\.'"):
        register_loss_term("a.b")(LossTerm)

    class BadSources(LossTerm):
        key_sources: ClassVar[frozenset[str]] = frozenset({"nowhere"})

    with pytest.raises(ValueError, match="unknown view sources"):
        register_loss_term("_bad")(BadSources)
    assert "_bad" not in list_loss_terms()


@pytest.fixture
def probe_term():
    """A term that asks for everything (as SCRL will) and records what it gets."""
    seen: list[StepOutputs] = []

    @register_loss_term("_probe")
    class ProbeTerm(LossTerm):
        online_sources: ClassVar[frozenset[str]] = frozenset({"query", "temporal"})
        key_sources: ClassVar[frozenset[str]] = frozenset({"query", "temporal"})
        needs_feature_map = True
        needs_view_params = True

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.updates: list[float] = []

        @classmethod
        def from_context(cls, ctx: LossTermContext) -> "ProbeTerm":
            return cls()

        def forward(self, out: StepOutputs) -> TermOutput:
            seen.append(out)
            fmap = out.online["temporal"].feature_map
            assert fmap is not None
            return TermOutput(self.scale * fmap.mean() ** 2, {"probe_metric": fmap.std()})

        def momentum_update(self, momentum: float) -> None:
            self.updates.append(momentum)

    yield seen
    del registry._LOSS_TERMS["_probe"]


def test_new_term_plugs_in(monkeypatch, probe_term):
    torch.manual_seed(0)
    task, recorder = make_task(monkeypatch, losses={"moco": 1.0, "_probe": 2.0})
    loss = task.training_step(make_batch(), 0)
    loss.backward()
    out = probe_term[0]
    assert set(out.views) == {"query", "same", "temporal"}
    assert set(out.online) == {"query", "temporal"}
    assert set(out.keys) == {"query", "same", "temporal"}
    for source in ("query", "temporal"):
        assert out.online[source].feature_map.shape == (4, 512, 1, 1)
        assert out.momentum[source].feature_map.shape == (4, 512, 1, 1)
        assert out.view_params[source].transform.shape == (4, 3, 3)
    assert out.negatives is not None
    assert out.negatives.shape == (64, 16)
    assert task.loss_terms["_probe"].updates == [task.hparams["momentum"]]
    assert task.loss_terms["_probe"].scale.grad is not None
    assert {"train/loss__probe", "train/probe_metric"} <= set(recorder.logged)


# --- optimiser / schedule ---------------------------------------------------------------------


def _factors(warmup_steps: int, total_steps: int, steps: int) -> list[float]:
    """The learning-rate factors of ``steps`` optimiser steps (base lr 1)."""
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine_scheduler(sgd, warmup_steps, total_steps)
    factors = []
    for _ in range(steps):
        factors.append(float(sgd.param_groups[0]["lr"]))
        sgd.step()
        scheduler.step()
    return factors


def test_warmup_cosine_schedule():
    schedule = _factors(warmup_steps=4, total_steps=12, steps=101)
    assert schedule[:4] == [0.25, 0.5, 0.75, 1.0]
    assert schedule[4] == pytest.approx(1.0)
    assert schedule[8] == pytest.approx(0.5)
    assert schedule[12] == pytest.approx(0.0)
    assert schedule[100] == pytest.approx(0.0)
    no_warmup = _factors(warmup_steps=0, total_steps=10, steps=6)
    assert no_warmup[0] == 1.0
    assert no_warmup[5] == pytest.approx(0.5)


def test_warmup_cosine_schedule_resumes_from_its_state_dict():
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine_scheduler(sgd, 4, 12)
    for _ in range(6):  # past the warm-up, into the cosine
        sgd.step()
        scheduler.step()
    resumed_sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = warmup_cosine_scheduler(resumed_sgd, 4, 12)
    resumed_sgd.load_state_dict(sgd.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    expected = _factors(4, 12, 14)
    for step in range(6, 14):
        assert resumed_sgd.param_groups[0]["lr"] == pytest.approx(expected[step])
        resumed_sgd.step()
        resumed.step()


# --- Lightning fit and checkpoint --------------------------------------------------------------


def _loader(n: int = 12, batch_size: int = 4) -> DataLoader[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    samples = [
        {
            "image": torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g),
            "geo_label": torch.tensor(i % 5),
            "lat": torch.tensor(0.0),
        }
        for i in range(n)
    ]
    return DataLoader(samples, batch_size=batch_size, drop_last=True)  # type: ignore[arg-type]


@pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)
def test_progress_bar_shows_the_checked_loss_and_the_summary_lists_it_once():
    summary = RunSummary(warmup_steps=0)
    trainer = lightning.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[summary],
    )
    trainer.fit(GeoSSLTask(**{**TINY, "losses": {"tp": 1.0}}), train_dataloaders=_loader())
    # Only the host copy is a progress-bar metric (a device one costs a sync every step).
    assert set(trainer.progress_bar_metrics) == {"loss"}
    assert trainer.progress_bar_metrics["loss"] == pytest.approx(
        float(trainer.callback_metrics["train_loss"])
    )
    console = Console(record=True, width=200)
    console.print(summary.table(trainer))
    text = console.export_text()
    assert "train_loss=" in text
    assert " loss=" not in text.replace("train_loss=", "")
    # Lightning's Throughput over the timed steps (here all: no warm-up steps).
    assert summary.samples_per_second > 0
    assert "steady state: 2 steps after 0 warm-up" in text


# Lightning 2.6's utilities/_pytree.py builds LeafSpec(), which torch 2.14 deprecates: not our code.
@pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)
def test_fit_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    task = GeoSSLTask(**{**TINY, "losses": {"tp": 1.0, "geo": 1.0}, "warmup_epochs": 1})
    trainer = lightning.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, train_dataloaders=_loader())
    metrics = trainer.callback_metrics
    for name in [
        "train_loss",
        "train/loss_tp",
        "train/loss_geo",
        "train/embedding_std",
        "train/geo_acc",
    ]:
        assert name in metrics
        assert math.isfinite(float(metrics[name]))
    assert task.queue is not None
    assert task.queue.ptr.item() == 12
    # warm-up of one epoch (3 steps) then cosine: lr rose to the base value
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(task.hparams["lr"] * _factors(3, 3, 4)[3])
    assert trainer.optimizers[0].param_groups[0]["fused"]  # one kernel per update

    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    restored = GeoSSLTask.load_from_checkpoint(path)
    assert isinstance(restored.queue, KeyQueue)
    torch.testing.assert_close(restored.queue.queue, task.queue.queue)
    assert restored.queue.ptr.item() == task.queue.ptr.item()
    torch.testing.assert_close(
        restored.backbone_momentum.state_dict()["conv1.weight"],  # type: ignore[union-attr]
        task.backbone_momentum.state_dict()["conv1.weight"],  # type: ignore[union-attr]
    )


# --- non-finite loss guard --------------------------------------------------------------------


def _poison(
    monkeypatch: pytest.MonkeyPatch, term: torch.nn.Module, bad_calls: set[int], value: float
) -> list[int]:
    """Make ``term`` return ``value`` (times its real loss) on the given 0-based calls."""
    calls: list[int] = []
    original = term.forward

    def forward(out: StepOutputs) -> TermOutput:
        result: TermOutput = original(out)
        calls.append(len(calls))
        if calls[-1] in bad_calls:
            return TermOutput(result.loss * value, result.metrics)
        return result

    monkeypatch.setattr(term, "forward", forward)
    return calls


@pytest.mark.parametrize(("value", "kind"), [(float("nan"), "nan"), (float("inf"), "inf")])
def test_nonfinite_term_stops_before_backward(monkeypatch, value, kind):
    torch.manual_seed(0)
    task, _ = make_task(monkeypatch, losses={"tp": 1.0, "co2": 10.0})
    _poison(monkeypatch, task.loss_terms["co2"], {0}, value)
    before = task.backbone.get_parameter("conv1.weight").detach().clone()
    with pytest.raises(
        NonFiniteLossError,
        match=rf"^train/loss_co2 became {kind} at step 0; stopping \(the last checkpoint is kept",
    ):
        task.training_step(make_batch(), 0)
    assert task.backbone.get_parameter("conv1.weight").grad is None
    torch.testing.assert_close(task.backbone.get_parameter("conv1.weight"), before)


def test_overflowing_total_is_named(monkeypatch):
    task, _ = make_task(monkeypatch, losses={"moco": 10.0})
    big = torch.tensor(3e38)  # finite in float32, but 10 * 3e38 is not
    monkeypatch.setattr(task.loss_terms["moco"], "forward", lambda out: TermOutput(big))
    with pytest.raises(NonFiniteLossError, match=r"^train_loss became inf at step 0"):
        task.training_step(make_batch(), 0)


def test_nan_check_disabled(monkeypatch):
    task, _ = make_task(monkeypatch, losses={"moco": 1.0}, nan_check_every_n_steps=0)
    _poison(monkeypatch, task.loss_terms["moco"], {0}, float("nan"))
    assert torch.isnan(task.training_step(make_batch(), 0))


def test_nan_check_every_n_steps_keeps_the_flag(monkeypatch):
    task, _ = make_task(monkeypatch, losses={"moco": 1.0}, nan_check_every_n_steps=3)
    _poison(monkeypatch, task.loss_terms["moco"], {1}, float("nan"))
    task.training_step(make_batch(), 0)
    task.training_step(make_batch(), 1)  # bad, unchecked: no sync, no error yet
    with pytest.raises(NonFiniteLossError, match=r"^train/loss_moco became nan at step 0"):
        task.training_step(make_batch(), 2)  # the check sees the flag of the earlier step
    task.training_step(make_batch(), 3)  # the flags were reset by the check


def _fit_until_nan(
    tmp_path: Path, bad_step: int, every: int, max_steps: int = 6
) -> tuple[GeoSSLTask, NonFiniteLossError]:
    torch.manual_seed(0)
    task = GeoSSLTask(
        **{**TINY, "backbone": "test_resnet"},  # 0.4 M parameters: small checkpoints
        losses={"tp": 1.0, "co2": 10.0},
        nan_check_every_n_steps=every,
    )
    with pytest.MonkeyPatch.context() as mp:
        _poison(mp, task.loss_terms["co2"], {bad_step}, float("nan"))
        trainer = lightning.Trainer(
            max_steps=max_steps,
            accelerator="cpu",
            logger=False,
            callbacks=[
                ModelCheckpoint(
                    dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_top_k=-1
                )
            ],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with pytest.raises(NonFiniteLossError) as info:
            trainer.fit(task, train_dataloaders=_loader(n=8))
    return task, info.value


def _assert_last_checkpoint(tmp_path: Path, task: GeoSSLTask, step: int, clean: bool) -> None:
    steps = sorted(int(p.stem.split("step=")[1]) for p in tmp_path.glob("epoch=*-step=*.ckpt"))
    assert steps == list(range(1, step + 1))  # nothing saved after the bad step
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == step
    state = last["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    if clean:  # the bad step never updated the weights (its forward did move BN statistics)
        for name, value in task.backbone.named_parameters():
            torch.testing.assert_close(state[f"backbone.{name}"], value.detach())


# Lightning 2.6's utilities/_pytree.py builds LeafSpec(), which torch 2.14 deprecates: not our code.
@pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)
def test_nan_stops_fit_and_keeps_last_checkpoint(tmp_path):
    task, error = _fit_until_nan(tmp_path, bad_step=3, every=1)
    expected = "train/loss_co2 became nan at step 3; stopping (the last checkpoint is kept)"
    assert str(error) == expected
    _assert_last_checkpoint(tmp_path, task, step=3, clean=True)


@pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)
def test_unchecked_nan_blocks_the_next_checkpoint(tmp_path):
    # checked every 5 steps only: the bad step 1 updates the weights, but the checkpoint due
    # after it checks the pending flags first and stops the run without writing
    task, error = _fit_until_nan(tmp_path, bad_step=1, every=5)
    assert str(error).startswith("train/loss_co2 became nan at step 1;")
    _assert_last_checkpoint(tmp_path, task, step=1, clean=False)
