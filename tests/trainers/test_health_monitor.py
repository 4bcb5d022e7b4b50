"""TrainingHealthMonitor: one warning for a collapse held N steps, one for a loss out of range."""

import math
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from geossl.trainers import GeoSSLTask
from geossl.trainers.callbacks import TrainingHealthMonitor
from geossl.trainers.exact_resume import ExactResume


def _step(monitor: TrainingHealthMonitor, step: int, module: Any, **metrics: float) -> None:
    trainer = SimpleNamespace(
        global_step=step,
        callback_metrics={f"train/{k}": torch.tensor(v) for k, v in metrics.items()},
    )
    monitor.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]


def _module(**terms: Any) -> Any:
    return SimpleNamespace(embedding_dim=128, terms=terms)


def test_collapse_warns_once_after_patience_with_step_and_value() -> None:
    monitor = TrainingHealthMonitor(patience_steps=30, check_every_n_steps=10)
    module = _module()
    low = 0.1 * monitor.collapse_threshold(128)
    for step in (0, 10, 20):
        _step(monitor, step, module, embedding_std=low)
    assert monitor.warned == {}
    with pytest.warns(UserWarning, match=r"step 30: train/embedding_std=0\.00044 .* since step 0"):
        _step(monitor, 30, module, embedding_std=low)
    for step in (40, 50):
        _step(monitor, step, module, embedding_std=low)
    assert list(monitor.warned) == ["collapse"]  # once, not at steps 40 and 50


def test_collapse_is_quiet_when_the_std_recovers_within_patience(
    recwarn: pytest.WarningsRecorder,
) -> None:
    monitor = TrainingHealthMonitor(patience_steps=30, check_every_n_steps=10)
    module = _module()
    threshold = monitor.collapse_threshold(128)
    values = [0.5, 0.5, 0.5, 2.0, 0.5, 0.5, 0.5, 2.0]  # never low for 30 steps in a row
    for step, factor in zip(range(0, 80, 10), values, strict=True):
        _step(monitor, step, module, embedding_std=factor * threshold)
    # Steps between checks are not read (no host sync): a low value at step 5 is never seen.
    _step(monitor, 5, module, embedding_std=0.0)
    assert monitor.warned == {}
    assert not [w for w in recwarn if "embedding_std" in str(w.message)]


def test_loss_above_the_terms_ceiling_warns_once() -> None:
    monitor = TrainingHealthMonitor(check_every_n_steps=1)
    geo = SimpleNamespace(loss_ceiling=2 * math.log(100))
    module = _module(geo=geo, moco=SimpleNamespace())  # moco has no ceiling: never checked
    _step(monitor, 1, module, loss_geo=4.6, loss_moco=1e6, embedding_std=1.0)
    assert monitor.warned == {}
    with pytest.warns(UserWarning, match=r"step 4: train/loss_geo=86\.800 is above .* 9\.210"):
        _step(monitor, 4, module, loss_geo=86.8, embedding_std=1.0)
    _step(monitor, 5, module, loss_geo=300.0, embedding_std=1.0)
    assert list(monitor.warned) == ["loss_geo"]


def test_the_task_brings_the_monitor_and_the_geo_ceiling() -> None:
    task = GeoSSLTask(
        backbone="resnet18", losses={"tp": 1.0, "geo": 1.0}, num_geo_clusters=8, queue_size=64
    )
    assert [type(c) for c in task.configure_callbacks()] == [TrainingHealthMonitor, ExactResume]
    assert task.embedding_dim == 128
    assert task.terms["geo"].loss_ceiling == pytest.approx(2 * math.log(8))
    scrl_only = GeoSSLTask(backbone="resnet18", losses={"scrl": 1.0}, queue_size=64)
    assert scrl_only.embedding_dim == 512  # no projection head: the pooled ResNet-18 feature


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="patience_steps >= 1"):
        TrainingHealthMonitor(patience_steps=0)


def _geo_losses(root: Path, cache: Path, normalize_input: bool) -> list[float]:
    """loss_geo of 12 steps of tp + geo (ResNet-18, 32 px, batch 8, lr 0.03, T 0.02)."""
    import lightning.pytorch as pl

    from geossl.datamodules import FMoWDataModule

    pl.seed_everything(0, verbose=False)
    task = GeoSSLTask(
        backbone="resnet18",
        losses={"tp": 1.0, "geo": 1.0},
        loss_options={"geo": {"normalize_input": normalize_input}},
        num_geo_clusters=8,
        queue_size=4096,
        crop_size=32,
    )
    data = FMoWDataModule(
        root=str(root),
        splits=["train"],
        image_size=64,
        batch_size=8,
        num_workers=0,
        num_geo_clusters=8,
        pair_mode="location",
        cache_dir=str(cache),
        pin_memory=False,
        persistent_workers=False,
    )
    losses: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            losses.append(float(trainer.callback_metrics["train/loss_geo"]))

    trainer = pl.Trainer(
        max_steps=12,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, datamodule=data)
    return losses


def test_the_geo_loss_stays_near_ln_k_with_the_default_head(
    fmow_sample: Path, tmp_path: Path
) -> None:
    # The blow-up of the issue: the raw projection's norm grows under the contrastive term and
    # the paper's head on it reads a cross-entropy far above ln K within a few steps.
    ceiling = 2 * math.log(8)
    raw = _geo_losses(fmow_sample, tmp_path, normalize_input=False)
    assert max(raw) > ceiling
    default = _geo_losses(fmow_sample, tmp_path, normalize_input=True)
    assert max(default) < ceiling, default
