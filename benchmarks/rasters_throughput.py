"""Co-registered GeoTIFF time series: pair reading (pairs/s) and pretraining (samples/s).

On the real stacks in ``../shared/data/real/timeseries`` (Landsat Pucallpa, 8 dates; NAIP North
Dakota, 10 dates; 4 uint8 bands each):

1. ``pairs``: :class:`~geossl.samplers.TemporalGeoPairSampler` +
   :class:`~geossl.datasets.RasterTemporalPairs` through a DataLoader (two dates of one patch per
   sample, nodata check included), after one warm-up batch.
2. ``pretrain``: ``geossl pretrain --dataset rasters`` for a few steps, steady-state samples/s
   from :class:`~geossl.trainers.callbacks.RunSummary` (data loading, device augmentation and the
   full step included).

Writes ``benchmarks/results/rasters_throughput.json`` and re-renders docs/benchmarks.md::

    python -m benchmarks.rasters_throughput
"""

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.pretrain_throughput import machine
from benchmarks.update_docs import main as update_docs
from geossl.cli.pretrain_cli import run_pretrain
from geossl.datamodules import RasterTimeSeriesDataModule
from geossl.trainers.callbacks import RunSummary

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real" / "timeseries"
STACKS = ("landsat_pucallpa", "naip_north_dakota")


def date_options(folder: Path) -> tuple[str, str]:
    """``(filename_regex, date_format)`` of a stack (bare years or NAIP's YYYYMMDD)."""
    if all(re.fullmatch(r"\d{4}\.tif", p.name) for p in folder.glob("*.tif")):
        return r"^(?P<date>\d{4})\.tif$", "%Y"
    return r"^.*_(?P<date>\d{8})\.tif$", "%Y%m%d"


def pairs_per_second(
    folder: Path, patch: int, batch: int, workers: int, batches: int
) -> dict[str, Any]:
    """Read ``batches`` batches of pairs through the datamodule's loader; return the rate."""
    regex, date_format = date_options(folder)
    dm = RasterTimeSeriesDataModule(
        paths=[str(folder)],
        filename_regex=regex,
        date_format=date_format,
        patch_size=patch,
        batch_size=batch,
        num_workers=workers,
        num_geo_clusters=4,
        length=batch * (batches + 1),
        persistent_workers=False,
    )
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    loader: DataLoader[Any] = dm.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # warm-up: worker start, file handles
    start = time.perf_counter()
    count = sum(len(b["image"]) for _, b in zip(range(batches), iterator, strict=False))
    elapsed = time.perf_counter() - start
    return {
        "stack": folder.name,
        "what": "pairs",
        "patch": patch,
        "batch_size": batch,
        "workers": workers,
        "setup_s": round(setup_s, 2),
        "per_s": round(count / elapsed, 1),
    }


def pretrain_samples_per_second(
    folder: Path, work: Path, backbone: str, crop: int, batch: int, steps: int, recipe: str
) -> dict[str, Any]:
    """Train ``steps`` steps through the CLI; return the steady-state samples/s."""
    regex, date_format = date_options(folder)
    args = [
        "--config",
        str(REPO / "configs" / "pretrain" / "rasters.yaml"),
        "--config",
        str(REPO / "configs" / "pretrain" / "ablations" / f"{recipe}.yaml"),
        f"--data.paths=[{folder}]",
        f"--data.filename_regex={regex}",
        f"--data.date_format={date_format}",
        f"--data.patch_size={crop}",
        f"--data.batch_size={batch}",
        "--data.num_workers=2",
        "--data.num_geo_clusters=4",
        f"--data.length={batch * steps}",
        f"--model.backbone={backbone}",
        f"--model.crop_size={crop}",
        "--model.queue_size=4096",
        "--model.mean=[0.5, 0.5, 0.5, 0.5]",
        "--model.std=[0.25, 0.25, 0.25, 0.25]",
        "--model.channels_last=false",
        f"--trainer.max_steps={steps}",
        "--trainer.accelerator=cpu",
        f"--trainer.logger.init_args.save_dir={work / 'runs'}",
        "--trainer.enable_checkpointing=false",
        "--trainer.callbacks=[]",
    ]
    if recipe in ("all", "tp_geo_scrl"):
        args.append("--model.loss_options={scrl: {min_size: 16}}")
    cli = run_pretrain(args)
    summary = next(c for c in getattr(cli.trainer, "callbacks", []) if isinstance(c, RunSummary))
    return {
        "stack": folder.name,
        "what": f"pretrain {recipe}",
        "patch": crop,
        "batch_size": batch,
        "backbone": backbone,
        "per_s": round(summary.samples_per_second, 2),
        "command": "geossl pretrain " + " ".join(args).replace(f"{REPO}/", ""),
    }


def main() -> None:
    """Run both measurements on both stacks and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/geossl-bench"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "rasters_throughput.json"
    )
    args = parser.parse_args()
    if not REAL.is_dir():
        raise SystemExit(f"{REAL}: the real time series are absent (see its README)")
    torch.manual_seed(0)
    results = []
    for name in STACKS:
        folder = REAL / name
        for patch, workers in [(64, 0), (64, 2), (256, 2)]:
            results.append(pairs_per_second(folder, patch, 32, workers, batches=20))
            print(results[-1])
        for recipe in ("tp_geo", "all"):
            results.append(
                pretrain_samples_per_second(
                    folder, args.work_dir, "resnet18", 64, 32, args.steps, recipe
                )
            )
            print({k: v for k, v in results[-1].items() if k != "command"})
    out = {
        "machine": machine(),
        "settings": {"bands": 4, "dtype": "uint8", "precision": "fp32"},
        "command": "python -m benchmarks.rasters_throughput",
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")
    update_docs()


if __name__ == "__main__":
    main()
