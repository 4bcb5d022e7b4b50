"""Exact resume of ``geossl pretrain``: kill -9 at a step, ``--ckpt_path last.ckpt``, same curve."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from geossl.cli.pretrain_cli import run_pretrain
from geossl.cli.resume import continue_run_folder, keep_rows_before
from geossl.trainers.loss_curve import LOSS_CURVE_NAME, LossCurve
from tests.cli.test_pretrain_cli import REPO, tiny_args

STEPS = 5
BATCHES_PER_EPOCH = 3  # steps 1-3 in epoch 0, 4-5 in epoch 1
CHECKPOINT_EVERY_STEP: dict[str, object] = {
    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
    "init_args": {"every_n_train_steps": 1, "save_last": True},
}


def _config(path: Path, kill_after: int | None = None) -> Path:
    callbacks: list[dict[str, object]] = [CHECKPOINT_EVERY_STEP]
    if kill_after is not None:
        kill = "tests.resume_helpers.KillAfterStep"
        callbacks.append({"class_path": kill, "init_args": {"step": kill_after}})
    trainer = {
        "max_steps": STEPS,
        "max_epochs": 2,
        "limit_train_batches": BATCHES_PER_EPOCH,
        "callbacks": callbacks,
    }
    path.write_text(yaml.safe_dump({"trainer": trainer}))
    return path


def _args(root: Path, runs: Path, config: Path, *extra: str) -> list[str]:
    # One index for every run (later flags override tiny_args').
    cache = runs.parent / "index"
    return [*tiny_args(root, runs), "--data.cache_dir", str(cache), "--config", str(config), *extra]


def _killed_run(args: list[str]) -> None:
    """Run ``geossl pretrain`` in a child process that kills itself with SIGKILL."""
    code = "import sys; from geossl.cli.pretrain_cli import run_pretrain as r; r(sys.argv[1:])"
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def _losses(trainer: Trainer) -> list[tuple[int, float]]:
    callbacks = trainer.callbacks  # type: ignore[attr-defined]
    (recorder,) = (c for c in callbacks if isinstance(c, LossCurve))
    return list(recorder.history["train_loss"])


def _csv_losses(path: Path) -> list[tuple[int, float]]:
    with path.open(newline="") as file:
        return [(int(row["step"]), float(row["train_loss"])) for row in csv.DictReader(file)]


def test_kill_9_and_resume_gives_the_uninterrupted_curve(fmow_sample: Path, tmp_path: Path) -> None:
    baseline = run_pretrain(_args(fmow_sample, tmp_path / "a", _config(tmp_path / "a.yaml")))
    expected = _losses(baseline.trainer)
    assert [step for step, _ in expected] == list(range(1, STEPS + 1))

    runs = tmp_path / "b"
    last = runs / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    # Killed mid-epoch (after step 2 of 3), resumed and killed at the epoch's end (step 3), then
    # resumed to the end: the data position and every random stream come back each time.
    _killed_run(_args(fmow_sample, runs, _config(tmp_path / "kill2.yaml", kill_after=2)))
    resume = ["--ckpt_path", str(last)]
    _killed_run(_args(fmow_sample, runs, _config(tmp_path / "kill3.yaml", kill_after=3), *resume))
    resumed = run_pretrain(_args(fmow_sample, runs, _config(tmp_path / "b.yaml"), *resume))

    steps = torch.tensor([step for step, _ in _losses(resumed.trainer)])
    assert steps.tolist() == [step for step, _ in expected]
    torch.testing.assert_close(
        torch.tensor([loss for _, loss in _losses(resumed.trainer)]),
        torch.tensor([loss for _, loss in expected]),
        rtol=1e-5,
        atol=1e-6,
    )
    # One run folder, whose metrics.csv holds every step once, as the uninterrupted run's does.
    assert [p.name for p in (runs / "tiny").iterdir()] == ["version_0"]
    assert Path(str(resumed.trainer.log_dir)) == last.parent.parent
    assert (last.parent.parent / LOSS_CURVE_NAME).is_file()  # drawn from the history above
    written = _csv_losses(last.parent.parent / "metrics.csv")
    reference = _csv_losses(Path(str(baseline.trainer.log_dir)) / "metrics.csv")
    assert [step for step, _ in written] == [step for step, _ in reference] == list(range(STEPS))
    torch.testing.assert_close(
        torch.tensor([loss for _, loss in written]),
        torch.tensor([loss for _, loss in reference]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_keep_rows_before_drops_the_steps_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n0,0,3.0\n0,1,2.0\n0,2,9.0\n0,3,8.0\n")
    assert keep_rows_before(path, 2) == (["epoch", "step", "train_loss"], 2)
    assert _csv_losses(path) == [(0, 3.0), (1, 2.0)]
    assert not list(tmp_path.glob(".*.tmp"))


def _trainer(runs: Path, **logger_kwargs: object) -> Trainer:
    logger = CSVLogger(runs, name="tiny", **logger_kwargs)  # type: ignore[arg-type]
    return Trainer(logger=logger, enable_checkpointing=False, enable_progress_bar=False)


@pytest.mark.parametrize(
    ("checkpoint", "kwargs", "version"),
    [
        ("tiny/version_3/checkpoints/last.ckpt", {}, 3),  # the checkpoint's run
        ("tiny/custom/checkpoints/last.ckpt", {}, "custom"),
        ("tiny/version_3/checkpoints/last.ckpt", {"version": 7}, 7),  # explicit: kept
        ("other/version_3/checkpoints/last.ckpt", {}, 4),  # another name: a new version
        ("tiny/version_3/last.ckpt", {}, 4),  # not in a run's checkpoints folder
    ],
)
def test_continue_run_folder_picks_the_checkpoints_version(
    tmp_path: Path, checkpoint: str, kwargs: dict[str, object], version: int | str
) -> None:
    for folder in ("tiny/version_3/checkpoints", "other/version_3/checkpoints"):
        (tmp_path / folder).mkdir(parents=True)
    trainer = _trainer(tmp_path, **kwargs)
    continue_run_folder(trainer, tmp_path / checkpoint)
    assert trainer.logger is not None
    assert trainer.logger.version == version
