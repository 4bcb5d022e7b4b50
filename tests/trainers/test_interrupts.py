"""SIGTERM and Ctrl-C stop at a step boundary with a resumable checkpoint and exit 143 / 130."""

import signal
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments.slurm import SLURMEnvironment

from geossl.trainers.interrupts import InterruptCheckpoint, interrupt_checkpoint_path
from tests.interrupt_helpers import CtrlCWhileSaving, SignalsInStep, TinyRegression, tiny_trainer


def _fit_until(tmp_path: Path, *signals: int, **kwargs: object) -> SystemExit:
    trainer = tiny_trainer(
        tmp_path, InterruptCheckpoint(), SignalsInStep(list(signals), 2), **kwargs
    )
    with pytest.raises(SystemExit) as raised:
        trainer.fit(TinyRegression())
    return raised.value


def test_sigterm_saves_after_the_step_and_exits_143(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGINT)
    stopped = _fit_until(tmp_path, signal.SIGTERM)
    assert stopped.code == 143  # Lightning alone: SystemExit without a status, exit 0
    path = tmp_path / "checkpoints" / "last.ckpt"
    # The step that was running when the signal came finished: 3 steps, not 2 and a half.
    assert torch.load(path, weights_only=True)["global_step"] == 3
    err = capfd.readouterr().err
    assert f"stopped by SIGTERM at epoch 0, step 3; checkpoint saved to {path}" in err
    assert f"resume with --ckpt_path {path}" in err
    assert signal.getsignal(signal.SIGINT) == before
    resumed = tiny_trainer(tmp_path / "resumed", max_steps=5)
    resumed.fit(TinyRegression(), ckpt_path=path, weights_only=True)
    assert resumed.global_step == 5


def test_ctrl_c_stops_after_the_step_and_exits_130(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGINT)
    stopped = _fit_until(tmp_path, signal.SIGINT)
    assert stopped.code == 130  # Lightning alone: KeyboardInterrupt mid-step, exit 1
    path = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(path, weights_only=True)["global_step"] == 3
    err = capfd.readouterr().err
    assert "stopping after this step to save a checkpoint; Ctrl-C again to abort" in err
    assert f"stopped by SIGINT at epoch 0, step 3; checkpoint saved to {path}" in err
    # After the fit Ctrl-C is Python's KeyboardInterrupt again.
    assert signal.getsignal(signal.SIGINT) == before
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_second_ctrl_c_aborts_without_a_checkpoint(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGINT)
    stopped = _fit_until(tmp_path, signal.SIGINT, signal.SIGINT)
    assert stopped.code == 130
    assert not (tmp_path / "checkpoints").exists()  # the half-done step is not saved
    assert "aborted by a second Ctrl-C in the middle of a step" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) == before


def test_ctrl_c_during_the_save_keeps_the_previous_checkpoint(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from geossl.trainers.checkpoint_io import use_atomic_checkpoints

    every_two = ModelCheckpoint(save_last=True, every_n_train_steps=2)
    trainer = tiny_trainer(
        tmp_path,
        every_two,
        InterruptCheckpoint(),
        SignalsInStep([signal.SIGTERM], 2),
        CtrlCWhileSaving(),
    )
    use_atomic_checkpoints(trainer)
    with pytest.raises(SystemExit) as raised:
        trainer.fit(TinyRegression())
    assert raised.value.code == 130
    folder = tmp_path / "checkpoints"
    # last.ckpt is ModelCheckpoint's of step 2, not half of the interrupt's save of step 3.
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    assert "saving aborted by Ctrl-C" in capfd.readouterr().err


def test_slurm_requeue_still_saves_and_sigterm_still_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_NAME": "geossl",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: the requeue call fails, logged
    environment = SLURMEnvironment(auto_requeue=True)
    stopped = _fit_until(tmp_path, signal.SIGUSR1, signal.SIGTERM, plugins=[environment])
    # SIGUSR1: Lightning's requeue checkpoint; then SIGTERM: the run's own, and exit 143.
    assert (tmp_path / "hpc_ckpt_1.ckpt").is_file()
    assert stopped.code == 143
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_the_checkpoint_goes_where_the_callback_saves_last(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = tiny_trainer(tmp_path, callback)
    (tmp_path / "last.ckpt").write_bytes(b"another run's")  # kept, as Lightning keeps it
    assert interrupt_checkpoint_path(trainer) == tmp_path / "last-v1.ckpt"
    assert callback.last_model_path == str(tmp_path / "last-v1.ckpt")  # and saves there next
    assert interrupt_checkpoint_path(trainer) == tmp_path / "last-v1.ckpt"
    bare = tiny_trainer(tmp_path / "bare", enable_checkpointing=False)
    assert interrupt_checkpoint_path(bare) == tmp_path / "bare" / "checkpoints" / "last.ckpt"
