"""``geossl pretrain`` / ``finetune`` stopped by SIGTERM or Ctrl-C: a checkpoint, 143 / 130, resume.

Real processes get real signals: SIGTERM from outside once the first step is done (as SLURM or
Kubernetes send it), Ctrl-C as the terminal sends it, then ``--ckpt_path`` finishes the run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from geossl.cli.finetune_cli import run_finetune
from geossl.cli.pretrain_cli import run_pretrain
from tests.cli.test_finetune_cli import tiny_args as tiny_finetune_args
from tests.cli.test_pretrain_cli import tiny_args

REPO = Path(__file__).resolve().parents[2]
SAVED = re.compile(r"checkpoint saved to (\S+); resume with --ckpt_path (\S+)")


def _callback(class_name: str, **init_args: object) -> str:
    spec = {"class_path": f"tests.interrupt_helpers.{class_name}", "init_args": init_args}
    return "--trainer.callbacks+=" + json.dumps(spec)


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "geossl", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _saved_checkpoint(stderr: str) -> Path:
    found = SAVED.search(stderr)
    assert found is not None, stderr[-3000:]
    assert found.group(1) == found.group(2)
    path = Path(found.group(1))
    assert path.is_file()
    return path


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"]
)
def test_pretrain_stopped_by_a_signal_saves_and_resumes(
    fmow_sample: Path, tmp_path: Path, signum: int, status: int
) -> None:
    marker = tmp_path / "step-done"
    endless = ["--trainer.max_steps", "10000", "--trainer.max_epochs", "10000"]
    process = _start(
        "pretrain",
        *tiny_args(fmow_sample, tmp_path, *endless),
        _callback("StepMarker", path=str(marker)),
    )
    while not marker.exists():  # the first step is done
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=600)
    # Before: SIGTERM exited 0 (so `geossl pretrain && geossl export` went on), Ctrl-C 1.
    assert process.returncode == status, stderr[-3000:]
    path = _saved_checkpoint(stderr)
    assert path.relative_to(tmp_path).parts[-2:] == ("checkpoints", "last.ckpt")
    if signum == signal.SIGINT:
        assert "stopping after this step to save a checkpoint; Ctrl-C again to abort" in stderr
    step = int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    assert step >= int(marker.read_text())
    if signum == signal.SIGINT:
        return  # the same checkpoint as SIGTERM's: one resume is enough (the slowest part)
    more = ["--trainer.max_steps", str(step + 1), "--trainer.max_epochs", "10000"]
    resumed = run_pretrain(
        tiny_args(fmow_sample, tmp_path / "resumed", *more, "--ckpt_path", str(path))
    )
    assert resumed.trainer.global_step == step + 1


@pytest.mark.slow  # tests/trainers/test_interrupts.py checks the same in the test process
def test_pretrain_aborted_by_a_second_ctrl_c(fmow_sample: Path, tmp_path: Path) -> None:
    twice = _callback("SignalsInStep", signals=[int(signal.SIGINT)] * 2, step=1)
    process = _start("pretrain", *tiny_args(fmow_sample, tmp_path), twice)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr[-3000:]
    assert "aborted by a second Ctrl-C in the middle of a step: no checkpoint saved" in stderr
    assert list(tmp_path.rglob("*.ckpt")) == []


def test_finetune_stopped_by_sigterm_saves_and_resumes(fmow_sample: Path, tmp_path: Path) -> None:
    sigterm = _callback("SignalsInStep", signals=[int(signal.SIGTERM)], step=1)
    args = tiny_finetune_args(fmow_sample, tmp_path)
    process = _start("finetune", "--task", "fmow-cls", "--weights", "random", *args, sigterm)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 143, stderr[-3000:]
    path = _saved_checkpoint(stderr)
    assert torch.load(path, map_location="cpu", weights_only=True)["global_step"] == 2
    result = run_finetune("fmow-cls", "random", [*args, "--ckpt_path", str(path)])
    assert "test_top1" in result.metrics
    assert result.run_dir is not None
    last = result.run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4


@pytest.mark.slow  # two processes with the gloo backend (as tests/test_ddp.py)
def test_ddp_ctrl_c_from_a_terminal_stops_every_rank_after_the_same_step(
    fmow_sample: Path, tmp_path: Path
) -> None:
    # A terminal sends SIGINT to the whole process group: both ranks and their data workers.
    marker = tmp_path / "step-done"
    args = tiny_args(fmow_sample, tmp_path, "--trainer.max_steps", "10000")
    args += ["--trainer.max_epochs", "10000", "--trainer.devices", "2"]
    args += ["--trainer.strategy", "ddp", "--data.num_workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geossl",
            "pretrain",
            *args,
            _callback("StepMarker", path=str(marker)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        while not marker.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:  # a rank waiting for the other: the bug this test is about
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-3000:]
    path = _saved_checkpoint(stderr)
    assert stderr.count("checkpoint saved to") == 1  # rank zero speaks for both
    assert torch.load(path, map_location="cpu", weights_only=True)["global_step"] >= 1
