"""Pretraining throughput (samples/s) through ``geossl pretrain`` on the generated fMoW sample.

Runs the real command (index, pair sampler, data workers, device augmentation, the task, the
optimizer) for a few
steps per configuration and reads the steady-state rate from
:class:`geossl.trainers.callbacks.RunSummary`
(data loading included, the first steps excluded). Writes
``benchmarks/results/pretrain_throughput.json``.

    python -m benchmarks.pretrain_throughput                      # tiny test config + ResNet-50 at
    224, CPU
    python -m benchmarks.pretrain_throughput --configs resnet50_224 --accelerator gpu --batch-size
    256
"""

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import lightning
import torch

from benchmarks.update_docs import main as update_docs
from geossl import __version__
from geossl.cli.pretrain_cli import run_pretrain
from geossl.synthetic.fmow import generate_fmow_sample
from geossl.trainers.callbacks import RunSummary

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "conf" / "fmow_tiny.yaml"

_RESNET50_224 = [
    "--model.backbone=resnet50",
    "--model.crop_size=224",
    "--model.proj_hidden_dim=2048",
    "--model.proj_dim=128",
    "--model.queue_size=4096",
    "--data.image_size=256",
]

#: name -> (LightningCLI overrides on top of the tiny config, default batch size, default steps)
CONFIGS: dict[str, tuple[list[str], int, int]] = {
    "tiny": ([], 4, 30),
    "tiny_decode_on_device": (["--data.decode_on_device=true"], 4, 30),
    "resnet50_224": (_RESNET50_224, 8, 8),
    # The workers only read the files; the JPEGs are decoded where the model runs (nvJPEG).
    "resnet50_224_decode_on_device": ([*_RESNET50_224, "--data.decode_on_device=true"], 8, 8),
}


def machine() -> dict[str, Any]:
    """Describe the machine and the versions the figures were taken with."""
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or 'x86_64'})"
    )
    return {
        "device": device,
        "cpu_count": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "geossl": __version__,
    }


def run(
    name: str,
    root: Path,
    work: Path,
    batch: int,
    steps: int,
    accelerator: str,
    workers: int,
    precision: str | None = None,
) -> dict[str, Any]:
    """Train ``steps`` steps of one configuration and return its figures."""
    overrides, _, _ = CONFIGS[name]
    args = [
        "--config",
        str(TINY),
        *overrides,
        f"--data.root={root}",
        f"--data.cache_dir={work / 'index'}",
        f"--data.batch_size={batch}",
        f"--data.num_workers={workers}",
        f"--trainer.max_steps={steps}",
        "--trainer.max_epochs=1000",
        f"--trainer.accelerator={accelerator}",
        f"--trainer.logger.init_args.save_dir={work / 'runs'}",
        "--trainer.enable_checkpointing=false",
        "--trainer.callbacks=[]",
        *([f"--trainer.precision={precision}"] if precision else []),
    ]
    cli = run_pretrain(args)
    summary = next(c for c in getattr(cli.trainer, "callbacks", []) if isinstance(c, RunSummary))
    return {
        "config": name,
        "decode_on_device": bool(cli.datamodule.hparams.get("decode_on_device", False)),
        "backbone": cli.model.hparams["backbone"],
        "crop_size": cli.model.hparams["crop_size"],
        "batch_size": batch,
        "steps": steps,
        "timed_steps": steps - summary.warmup_steps,
        "precision": str(cli.trainer.precision),
        "samples_per_s": round(summary.samples_per_second, 2),
        "command": "geossl pretrain " + " ".join(args).replace(f"{REPO}/", ""),
    }


def main() -> None:
    """Run the benchmark and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/geossl-bench"))
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", default=None, help="trainer.precision, e.g. bf16-mixed")
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "pretrain_throughput.json"
    )
    args = parser.parse_args()

    root = args.work_dir / "fmow-sample-train"
    if not (root / "train").is_dir():
        generate_fmow_sample(root, locations=200, seed=0)
    results = []
    for name in args.configs:
        _, batch, steps = CONFIGS[name]
        start = time.perf_counter()
        figures = run(
            name,
            root,
            args.work_dir,
            args.batch_size or batch,
            args.steps or steps,
            args.accelerator,
            args.workers,
            args.precision,
        )
        figures["wall_s"] = round(time.perf_counter() - start, 1)
        results.append(figures)
        print(f"{name}: {figures['samples_per_s']} samples/s (batch {figures['batch_size']})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine(), "results": results}, indent=2) + "\n")
    print(f"wrote {args.output}")
    update_docs()


if __name__ == "__main__":
    main()
