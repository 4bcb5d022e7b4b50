"""Downstream tasks at smoke scale: ``geossl compare`` from random init and from geossl weights.

For each task, the generated sample in the task's real layout (and, for SpaceNet, the real
SpaceNet-4 tile) is fine-tuned from every starting point with the same settings through the real
CLI (``python -m geossl compare``, one subprocess per task), and the test metrics are collected.
The geossl weights are pretrained here first, on the generated fMoW sample, with the ablation's
base config (ResNet-18 at 64 px; ``configs/pretrain/fmow_demo.yaml``): MoCo-v2 alone and
MoCo-v2 + TP + Geo. ImageNet weights need the network and are left out.

These are smoke-scale numbers (a few hundred images, a few epochs, CPU): they show that every
task runs end to end from every kind of weights, not how the methods rank at full scale.

Usage (from the repository root; writes ``benchmarks/results/downstream_<task>.json``, then
``python -m benchmarks.update_docs`` renders the tables into docs/finetune.md)::

    python -m benchmarks.downstream fmow --epochs 8
"""

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.ablation import BASE_CONFIG, pretrain
from geossl import __version__

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: Pretraining recipes whose weights are compared with random init.
RECIPES = ("moco", "tp_geo")


def pretrained_weights(workdir: Path, epochs: int, seed: int) -> dict[str, Path]:
    """Pretrain :data:`RECIPES` on the generated fMoW sample; recipe -> checkpoint."""
    from geossl.datasets import generate_fmow_sample
    from geossl.datasets.fmow_constants import FMOW_CATEGORIES

    root = fmow_root(workdir, seed)
    if not (root / "train").is_dir():
        generate_fmow_sample(
            root,
            locations=240,
            seed=seed,
            categories=FMOW_CATEGORIES[:10],
            split_fractions={"train": 0.8, "val": 0.2},
        )
    base = ["--config", str(BASE_CONFIG), "--data.root", str(root), "--data.num_workers", "1"]
    checkpoints: dict[str, Path] = {}
    for recipe in RECIPES:
        existing = workdir / "pretrain" / "runs" / recipe / f"seed{seed}" / "checkpoints"
        if (existing / "last.ckpt").is_file():
            checkpoints[recipe] = existing / "last.ckpt"
            continue
        (workdir / "pretrain").mkdir(parents=True, exist_ok=True)
        ckpt, wall, _ = pretrain(recipe, base, workdir / "pretrain", epochs, seed, fmow=True)
        print(f"pretrained {recipe} in {wall:.0f} s: {ckpt}", file=sys.stderr)
        checkpoints[recipe] = ckpt
    return checkpoints


def fmow_root(workdir: Path, seed: int) -> Path:
    """The generated fMoW sample (10 categories, 240 locations, 80/20 train/val)."""
    return workdir / f"fmow-sample-{seed}"


def compare(
    task: str, weights: dict[str, str], args: Sequence[str], workdir: Path
) -> tuple[list[dict[str, Any]], str, float]:
    """Run ``geossl compare`` in a subprocess; rows of (weights, metrics), the command, wall s."""
    out = workdir / f"compare-{task}"
    command = [
        sys.executable,
        "-m",
        "geossl",
        "compare",
        "--task",
        task,
        "--weights",
        *weights.values(),
        "--output",
        str(out),
        *args,
        "--trainer.logger.init_args.save_dir",
        str(workdir / "runs"),
        "--trainer.enable_progress_bar",
        "false",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{task}: geossl compare failed:\n{done.stderr[-4000:]}")
    saved = json.loads((out / "comparison.json").read_text())
    names = list(weights)
    rows = []
    for name, row in zip(names, saved["rows"], strict=True):
        # The task's metrics in its order (headline first), in percent; the loss is left out.
        metrics = {
            k.removeprefix("test_"): 100 * row["metrics"][k]
            for k in saved["metrics"]
            if k in row["metrics"]
        }
        rows.append({"task": task, "weights": name, **metrics})
    text = shlex.join(["python", *command[1:]]).replace(f"{REPO}/", "").replace(str(workdir), "$W")
    return rows, text, wall


def run_fmow(workdir: Path, epochs: int, pretrain_epochs: int, seed: int) -> dict[str, Any]:
    """Linear probe and fine-tuning on the generated fMoW sample."""
    checkpoints = pretrained_weights(workdir, pretrain_epochs, seed)
    weights = {"random init": "random", **{f"geossl {r}": str(p) for r, p in checkpoints.items()}}
    shared = [
        "--model.init_args.backbone",
        "resnet18",
        "--data.init_args.root",
        str(fmow_root(workdir, seed)),
        "--data.init_args.image_size",
        "64",
        "--data.init_args.batch_size",
        "32",
        "--data.init_args.num_workers",
        "1",
        "--data.init_args.num_geo_clusters",
        "8",
        "--trainer.max_epochs",
        str(epochs),
        "--seed_everything",
        str(seed),
    ]
    results: list[dict[str, Any]] = []
    commands: list[str] = []
    for task, extra in (
        ("fmow-linear", ["--model.init_args.lr_milestones", f"[{int(epochs * 0.6)}]"]),
        ("fmow-cls", []),
    ):
        rows, command, wall = compare(task, weights, [*shared, *extra], workdir)
        for row in rows:
            row["epochs"] = epochs
        results += rows
        commands.append(command)
        print(f"{task}: {len(rows)} runs in {wall:.0f} s", file=sys.stderr)
    return {
        "dataset": {
            "name": "generated fMoW sample",
            "categories": 10,
            "locations": 240,
            "split": "80/20 train/val by location; metrics on val",
        },
        "settings": {
            "backbone": "resnet18",
            "image_size": 64,
            "batch_size": 32,
            "pretraining": f"{pretrain_epochs} epochs of fmow_demo.yaml per recipe",
        },
        "notes": [
            "Smoke scale: a few hundred generated images, CPU, a few epochs. These show that every "
            "path runs end to end, not how the methods rank at full scale.",
        ],
        "results": results,
        "command": [
            f"python -m benchmarks.downstream fmow --epochs {epochs} "
            f"--pretrain-epochs {pretrain_epochs}",
            *commands,
        ],
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": __import__("os").cpu_count(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only",
        "torch": torch.__version__,
        "geossl": __version__,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run one task's comparison and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["fmow"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geossl-downstream"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = run_fmow(args.workdir, args.epochs, args.pretrain_epochs, args.seed)
    data = {"machine": machine(), **data, "wall_s": round(time.perf_counter() - start)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"downstream_{args.task}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
