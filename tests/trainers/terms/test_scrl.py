from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import lightning
import pytest
import torch
from torch.utils.data import DataLoader

from geossl.models import roi_features
from geossl.trainers import GeoSSLTask, LossTermContext, StepOutputs, list_loss_terms
from geossl.trainers.terms.scrl import SCRL_OPTIONS, SCRLTerm
from geossl.transforms import sample_scrl_boxes

TINY: dict[str, Any] = {
    "backbone": "resnet18",
    "crop_size": 64,
    "queue_size": 32,
    "proj_hidden_dim": 32,
    "proj_dim": 16,
}


def make_batch(batch_size: int = 4, size: int = 72) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(batch_size)
    return {
        "image": torch.randint(
            0, 256, (batch_size, 2, 3, size, size), dtype=torch.uint8, generator=g
        )
    }


class Recorder:
    """Stands in for LightningModule.log outside a Trainer."""

    def __init__(self) -> None:
        self.logged: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, value: torch.Tensor, **kwargs: Any) -> None:
        self.logged[name] = value


def make_task(
    monkeypatch: pytest.MonkeyPatch, min_size: float = 8.0, **kwargs: Any
) -> tuple[GeoSSLTask, SCRLTerm, Recorder]:
    task = GeoSSLTask(**{**TINY, **kwargs})
    term = task.loss_terms["scrl"]
    assert isinstance(term, SCRLTerm)
    term.min_size = min_size  # 64 px views: smaller boxes than SCRL's 32 px so every step has some
    recorder = Recorder()
    monkeypatch.setattr(task, "log", recorder)
    return task, term, recorder


def online_params(term: SCRLTerm) -> list[torch.nn.Parameter]:
    return [*term.projector.parameters(), *term.predictor.parameters()]


def test_registered_with_what_it_needs():
    assert "scrl" in list_loss_terms()
    assert SCRLTerm.online_sources == {"query", "same"}
    assert SCRLTerm.key_sources == {"query", "same"}
    same = frozenset({"query", "same"})
    temporal = frozenset({"query", "temporal"})
    assert SCRLTerm.view_sources(SCRL_OPTIONS) == (same, same)
    assert SCRLTerm.view_sources({**SCRL_OPTIONS, "temporal": True}) == (temporal, temporal)
    assert SCRLTerm.needs_feature_map
    assert SCRLTerm.needs_view_params
    assert not SCRLTerm.uses_queue


def test_moco_plus_scrl_step(monkeypatch):
    torch.manual_seed(0)
    task, term, recorder = make_task(monkeypatch, losses={"moco": 1.0, "scrl": 1.0})
    assert task.needs.online_sources == {"query", "same"}
    assert task.needs.key_sources == {"query", "same"}
    loss = task.training_step(make_batch(), 0)
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    logged = recorder.logged
    assert {"train/loss_moco", "train/loss_scrl", "train/scrl_boxes"} <= set(logged)
    assert 0 < logged["train/loss_scrl"].item() <= 8
    assert logged["train/scrl_boxes"].item() > 1
    torch.testing.assert_close(
        logged["train_loss"].detach(), logged["train/loss_moco"] + logged["train/loss_scrl"]
    )
    loss.backward()
    for p in online_params(term):
        assert p.grad is not None
    assert all(p.grad.abs().sum() > 0 for p in term.predictor.parameters() if p.grad is not None)
    assert task.backbone.get_parameter("conv1.weight").grad is not None
    for p in term.projector_momentum.parameters():
        assert not p.requires_grad
        assert p.grad is None
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert {id(p) for p in online_params(term)} <= trainable
    assert not trainable & {id(p) for p in term.projector_momentum.parameters()}


def test_scrl_alone_trains_the_backbone(monkeypatch):
    torch.manual_seed(1)
    task, _, recorder = make_task(monkeypatch, losses={"scrl": 1.0})
    assert task.queue is None  # no contrastive term: no queue
    assert task.backbone_momentum is not None  # the target branch's EMA backbone
    loss = task.training_step(make_batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    grad = task.backbone.get_parameter("conv1.weight").grad
    assert grad is not None
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in task.backbone_momentum.parameters())
    assert set(recorder.logged) >= {"train_loss", "train/loss_scrl", "train/scrl_boxes"}
    # Every trainable parameter gets a gradient (DDP without find_unused_parameters needs it):
    # no MoCo projection head is built for a recipe that never reads it.
    unused = [n for n, p in task.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    assert not any(n.startswith("projection_head.") for n, _ in task.named_parameters())


@pytest.mark.parametrize("temporal", [False, True])
def test_loss_is_the_formula_on_the_right_branches(monkeypatch, temporal):
    torch.manual_seed(2)
    options = {"scrl": {"temporal": temporal}}
    task, term, _ = make_task(monkeypatch, losses={"scrl": 1.0}, loss_options=options)
    second = "temporal" if temporal else "same"
    assert term.pair_sources == ("query", second)
    assert task.needs.online_sources == task.needs.key_sources == {"query", second}
    with torch.no_grad():  # make the target branch differ from the online one
        assert task.backbone_momentum is not None
        for p in [*task.backbone_momentum.parameters(), *term.projector_momentum.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    batch = make_batch()
    batch["image"][:, 1] = 255 - batch["image"][:, 1]  # view 1 (the other acquisition) differs
    out: StepOutputs = task.compute_step_outputs(batch)
    torch.manual_seed(5)
    result = term(out)

    torch.manual_seed(5)  # the same boxes
    boxes = sample_scrl_boxes(out.view_params["query"], out.view_params[second], min_size=8.0)
    n = boxes.num_boxes
    maps = [
        out.online["query"].feature_map,
        out.online[second].feature_map,
        out.momentum["query"].feature_map,
        out.momentum[second].feature_map,
    ]
    online1, online2, target1, target2 = (m for m in maps if m is not None)
    rois = torch.cat(
        [roi_features(online1, boxes.boxes1, 64), roi_features(online2, boxes.boxes2, 64)]
    )
    targets = torch.cat(
        [roi_features(target1, boxes.boxes1, 64), roi_features(target2, boxes.boxes2, 64)]
    )
    p = term.predictor(term.projector(rois)).detach()
    z = term.projector_momentum(targets).detach()
    expected = 0.0
    for i in range(n):  # per box: view-1 prediction vs view-2 target, and the other way round
        cos12 = torch.nn.functional.cosine_similarity(p[i], z[n + i], dim=0)
        cos21 = torch.nn.functional.cosine_similarity(p[n + i], z[i], dim=0)
        expected += float((2 - 2 * cos12) + (2 - 2 * cos21))
    assert result.loss.item() == pytest.approx(expected / n, rel=1e-4)
    assert result.metrics["scrl_boxes"].item() == pytest.approx(n / 4)


def test_temporal_scrl_with_tp_step(monkeypatch):
    torch.manual_seed(4)
    options = {"scrl": {"temporal": True}}
    task, term, recorder = make_task(
        monkeypatch, losses={"tp": 1.0, "scrl": 1.0}, loss_options=options
    )
    assert term.needs_shared_canvas
    assert task.needs.online_sources == {"query", "temporal"}  # no second view-0 augmentation
    assert task.needs.key_sources == {"query", "temporal"}
    loss = task.training_step(make_batch(), 0)
    assert torch.isfinite(loss)
    assert recorder.logged["train/scrl_boxes"].item() > 1
    loss.backward()
    assert task.backbone.get_parameter("conv1.weight").grad is not None


@pytest.mark.parametrize(("shares", "fails"), [(False, True), (True, False), (None, False)])
def test_temporal_scrl_refuses_separate_canvases(monkeypatch, shares, fails):
    task = GeoSSLTask(
        **TINY, losses={"tp": 1.0, "scrl": 1.0}, loss_options={"scrl": {"temporal": True}}
    )
    datamodule = SimpleNamespace() if shares is None else SimpleNamespace(pairs_share_canvas=shares)
    monkeypatch.setattr(GeoSSLTask, "trainer", SimpleNamespace(datamodule=datamodule))
    if fails:
        with pytest.raises(ValueError, match=r"scrl .*data\.shared_canvas: true"):
            task.on_fit_start()
    else:
        task.on_fit_start()
    plain = GeoSSLTask(**TINY, losses={"tp": 1.0, "scrl": 1.0})
    plain.on_fit_start()  # same-acquisition SCRL does not care


def test_momentum_update_moves_only_the_ema_projector(monkeypatch):
    torch.manual_seed(3)
    task, term, _ = make_task(monkeypatch, losses={"scrl": 1.0}, momentum=0.9)
    for online, ema in zip(
        term.projector.parameters(), term.projector_momentum.parameters(), strict=True
    ):
        torch.testing.assert_close(online, ema)  # starts as a copy
    with torch.no_grad():
        for p in term.projector.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    before = [p.detach().clone() for p in term.projector_momentum.parameters()]
    predictor_before = [p.detach().clone() for p in term.predictor.parameters()]
    task.momentum_update()
    for old, new, online in zip(
        before, term.projector_momentum.parameters(), term.projector.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online)
    for old, new in zip(predictor_before, term.predictor.parameters(), strict=True):
        torch.testing.assert_close(old, new)


def test_no_boxes_gives_an_attached_zero(monkeypatch):
    torch.manual_seed(4)
    task, term, recorder = make_task(monkeypatch, losses={"scrl": 1.0}, min_size=1000.0)
    loss = task.training_step(make_batch(), 0)
    assert loss.item() == 0.0
    assert recorder.logged["train/scrl_boxes"].item() == 0.0
    loss.backward()  # every online parameter gets a (zero) gradient: DDP ranks stay in step
    for p in [*online_params(term), task.backbone.get_parameter("conv1.weight")]:
        assert p.grad is not None
        assert torch.equal(p.grad, torch.zeros_like(p.grad))


def test_crop_too_small_for_the_boxes():
    with pytest.raises(ValueError, match=r"model\.crop_size=32 .*'scrl'"):
        GeoSSLTask(**{**TINY, "crop_size": 32, "losses": {"scrl": 1.0}})


def context(**options: float) -> Any:
    return SimpleNamespace(num_features=8, crop_size=64, options=options)


def test_options_and_defaults():
    term = SCRLTerm.from_context(context())
    assert (term.num_boxes, term.min_size, term.max_tries, term.iou_threshold) == (
        10,
        32.0,
        50,
        0.5,
    )
    assert SCRLTerm.default_options == SCRL_OPTIONS
    plain = LossTermContext(
        num_features=8, proj_dim=4, temperature=0.1, num_geo_clusters=3, in_chans=3, crop_size=64
    )
    assert SCRLTerm.from_context(plain).num_boxes == 10
    term = SCRLTerm.from_context(
        context(num_boxes=3.0, min_size=8.0, hidden_dim=64.0, output_dim=16.0, iou_threshold=0.7)
    )
    assert (term.num_boxes, term.min_size, term.iou_threshold) == (3, 8.0, 0.7)
    assert term.predictor(term.projector(torch.randn(2, 8))).shape == (2, 16)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"nope": 1.0}, r"unknown options \['nope'\]"),
        ({"num_boxes": 0.0}, r"scrl\.num_boxes"),
        ({"num_boxes": 2.5}, r"scrl\.num_boxes"),
        ({"hidden_dim": 0.0}, r"scrl\.hidden_dim"),
        ({"min_size": -1.0}, r"scrl\.min_size"),
        ({"iou_threshold": 0.0}, r"scrl\.iou_threshold"),
        ({"max_tries": 0.0}, r"scrl\.max_tries"),
        ({"min_size": 63.0}, r"model\.crop_size"),
        ({"temporal": 1.0}, r"scrl\.temporal must be true or false"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        SCRLTerm.check_context(context(**options))


def test_loss_options_reach_the_term():
    task = GeoSSLTask(
        **TINY,
        losses={"scrl": 1.0},
        loss_options={"scrl": {"num_boxes": 4, "min_size": 12, "hidden_dim": 64, "output_dim": 8}},
    )
    term = task.loss_terms["scrl"]
    assert isinstance(term, SCRLTerm)
    assert (term.num_boxes, term.min_size) == (4, 12.0)
    assert term.predictor(term.projector(torch.randn(2, 512))).shape == (2, 8)
    with pytest.raises(ValueError, match=r"model\.loss_options\.scrl"):
        GeoSSLTask(**TINY, losses={"scrl": 1.0}, loss_options={"scrl": {"boxes": 4}})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"view_size": 1}, "view_size"),
        ({"num_boxes": 0}, "num_boxes"),
        ({"min_size": 0.0}, "min_size"),
        ({"min_size": 300.0}, "min_size"),
        ({"max_tries": 0}, "max_tries"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"hidden_dim": 0}, "hidden_dim"),
    ],
)
def test_constructor_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCRLTerm(input_dim=8, **kwargs)


def test_fit_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    task = GeoSSLTask(**TINY, losses={"moco": 1.0, "scrl": 1.0})
    g = torch.Generator().manual_seed(0)
    samples = [
        {"image": torch.randint(0, 256, (2, 3, 72, 72), dtype=torch.uint8, generator=g)}
        for _ in range(8)
    ]
    loader: DataLoader[dict[str, torch.Tensor]] = DataLoader(samples, batch_size=4)  # type: ignore[arg-type]
    trainer = lightning.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, train_dataloaders=loader)
    assert "train/loss_scrl" in trainer.callback_metrics
    path = tmp_path / "scrl.ckpt"
    trainer.save_checkpoint(path)
    restored = GeoSSLTask.load_from_checkpoint(path)
    key = "loss_terms.scrl.projector_momentum.mlp.layers.0.weight"
    torch.testing.assert_close(restored.state_dict()[key], task.state_dict()[key])


def test_bf16_autocast_term(monkeypatch):
    torch.manual_seed(6)
    task, term, _ = make_task(monkeypatch, losses={"scrl": 1.0})
    out = task.compute_step_outputs(make_batch())  # float32 encoders: bf16 convs are slow on CPU
    for outputs in (out.online, out.momentum):
        for source, encoded in outputs.items():
            assert encoded.feature_map is not None
            outputs[source] = replace(encoded, feature_map=encoded.feature_map.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = term(out)
    assert result.loss.dtype == torch.float32
    assert torch.isfinite(result.loss)
    result.loss.backward()
    assert all(p.grad is not None for p in online_params(term))
