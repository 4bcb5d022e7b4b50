"""Two CPU processes (gloo) through ``geossl pretrain``: both ranks end with the same queue."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
WORLD = 2


def run_two_processes(
    fmow_sample: Path, tmp_path: Path, extra_yaml: str, *args: str, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run the tiny config as 2 DDP processes on the CPU with an extra YAML on top."""
    extra = tmp_path / "ddp.yaml"
    extra.write_text(extra_yaml)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "geossl",
        "pretrain",
        "--config",
        str(REPO / "tests" / "conf" / "fmow_tiny.yaml"),
        "--config",
        str(extra),
        "--data.root",
        str(fmow_sample),
        "--data.cache_dir",
        str(tmp_path / "index"),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        "--trainer.devices",
        str(WORLD),
        "--trainer.strategy",
        "ddp",
        *args,
    ]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_two_process_queues_identical(fmow_sample: Path, tmp_path: Path) -> None:
    dump = tmp_path / "queues"
    steps, batch = 3, 4
    result = run_two_processes(
        fmow_sample,
        tmp_path,
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: tests.ddp_helpers.DumpQueue\n"
        "      init_args:\n"
        f"        output: {dump}\n",
        "--trainer.max_steps",
        str(steps),
        "--data.batch_size",
        str(batch),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0 = torch.load(dump / "rank0.pt", weights_only=True)
    rank1 = torch.load(dump / "rank1.pt", weights_only=True)
    assert int(rank0["world_size"]) == WORLD
    queue_key = next(k for k in rank0 if k.endswith("queue"))
    ptr_key = next(k for k in rank0 if k.endswith("ptr"))
    torch.testing.assert_close(rank0[queue_key], rank1[queue_key], rtol=0, atol=0)
    # Every step enqueues the keys of both ranks: the pointer advanced by steps * batch * world
    # (queue of 64).
    expected = (steps * batch * WORLD) % rank0[queue_key].shape[0]
    assert int(rank0[ptr_key]) == int(rank1[ptr_key]) == expected


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(fmow_sample: Path, tmp_path: Path) -> None:
    # rank 1's co2 loss becomes NaN at step 1: the non-finite flags are all-reduced, so rank 0
    # stops at the same step instead of hanging in the next gradient all-reduce
    result = run_two_processes(
        fmow_sample,
        tmp_path,
        "model:\n"
        "  losses: {tp: 1.0, co2: 10.0}\n"
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: tests.ddp_helpers.PoisonLoss\n"
        "      init_args: {term: co2, rank: 1, step: 1}\n",
        "--trainer.max_steps",
        "3",
        timeout=300,  # a rank left hanging in an all-reduce would hit this
    )
    assert result.returncode != 0
    # The CLI prints the error as one line (no traceback) on each rank.
    message = "geossl: error: train/loss_co2 became nan at step 1"
    assert result.stderr.count(message) == 2, result.stderr[-3000:]  # raised on both ranks
