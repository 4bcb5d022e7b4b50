"""Step time of each pretraining recipe at the same batch: what CO2 and SCRL cost over MoCo alone.

Times ``GeoSSLTask.training_step`` + backward + SGD step on a fixed random uint8 batch of temporal
pairs (no data loading), for every config in ``configs/pretrain/ablations/``, and writes
``benchmarks/results/loss_terms_cost.json`` with the time relative to the ``moco`` row.

    python -m benchmarks.loss_terms_cost                                   # ResNet-50 at 224, CPU
    python -m benchmarks.loss_terms_cost --device cuda --batch-size 256 --precision bf16
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.update_docs import main as update_docs
from geossl import __version__
from geossl.trainers import GeoSSLTask

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "configs" / "pretrain" / "ablations"
ORDER = ["moco", "tp", "geo", "tp_geo", "tp_geo_co2", "tp_geo_scrl", "all"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_recipe(
    name: str, args: argparse.Namespace, batch: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Build the recipe's task and time its optimiser steps."""
    model = yaml.safe_load((ABLATIONS / f"{name}.yaml").read_text())["model"]
    task = GeoSSLTask(
        backbone=args.backbone,
        crop_size=args.crop_size,
        num_geo_clusters=100,
        channels_last=args.device == "cuda",
        **model,
    ).to(args.device)
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    optimizer = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=0.03)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    times = []
    for step in range(args.warmup + args.steps):
        _synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=args.precision == "bf16"):
            loss = task.training_step(batch, step)
        torch.autograd.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]
    return {
        "recipe": name,
        "losses": ", ".join(f"{k} {v:g}" for k, v in model["losses"].items()),
        "step_s": round(step_s, 4),
        "samples_per_s": round(args.batch_size / step_s, 2),
    }


def main() -> None:
    """Run the benchmark and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--image-size", type=int, default=256, help="side of the decoded pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", default=ORDER, choices=ORDER)
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "loss_terms_cost.json"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    size = args.image_size
    batch = {
        "image": torch.randint(0, 256, (args.batch_size, 2, 3, size, size), dtype=torch.uint8),
        "geo_label": torch.randint(0, 100, (args.batch_size,)),
    }
    batch = {k: v.to(args.device) for k, v in batch.items()}
    rows = []
    for name in args.recipes:
        row = time_recipe(name, args, batch)
        rows.append(row)
        print(f"{name:>12}: {row['step_s']:.3f} s/step, {row['samples_per_s']:.1f} samples/s")
    base = next((r["step_s"] for r in rows if r["recipe"] == "moco"), rows[0]["step_s"])
    for row in rows:
        row["time_vs_moco"] = round(row["step_s"] / base, 2)
    device = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({platform.machine()})"
    )
    result = {
        "machine": {
            "device": device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "geossl": __version__,
        },
        "settings": {
            "backbone": args.backbone,
            "crop_size": args.crop_size,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "timed_steps": args.steps,
        },
        "results": rows,
        "command": "python -m benchmarks.loss_terms_cost " + " ".join(sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    update_docs()


if __name__ == "__main__":
    main()
