"""Sharded embedding: 1 process against N shards side by side, and a rerun that finds all done.

On the 20,000 x 20,000 benchmark raster of [embed_throughput](embed_throughput.py) (generated once
into ``--work-dir``), ``geossl embed``'s library call writes a GeoParquet dataset three ways, each
in fresh child processes so that every figure includes the start-up a job-array task pays:

1. one process, every work unit (``--threads`` torch threads, ``--workers`` reader threads);
2. ``--shards`` processes side by side (``--shard I/N`` each), the threads split between them so
   that both configurations use the same cores;
3. a rerun of the sharded dataset without ``--shard``: every unit is found finished and skipped
   (no previews: the time is that of the scan).

It also times the reader alone (one thread reading, masking and normalising 12 chip rows, no
model): the rate that sizes how many reader threads keep a GPU busy.

For each it reports the chips embedded, the wall time, chips/s over the wall time, the peak
resident memory of each process (``ru_maxrss``) and the dataset's size; it checks that the two
datasets hold the same rows. Writes ``benchmarks/results/embed_shards.json`` and re-renders
``docs/benchmarks.md``.

    python -m benchmarks.embed_shards --work-dir /tmp/geossl-bench
    python -m benchmarks.embed_shards --backbone test_resnet --work-dir /tmp/geossl-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.embed_throughput import _mb, _raster
from benchmarks.update_docs import main as update_docs

RESULTS = Path(__file__).resolve().parent / "results" / "embed_shards.json"
NOTES = [
    "Every run is a fresh process (python, torch, timm, GDAL imports and model creation "
    "included, as a job-array task pays them). chips_per_s is embedded chips over the wall time "
    "of the slowest process of the run. The shards split the same cores as the single process "
    "(torch and reader threads divided between them), so on this 2-core machine the comparison "
    "shows the cost or gain of sharding itself, not of more hardware; on N machines each shard "
    "has its own.",
]


def _worker(args: argparse.Namespace) -> None:
    """One embedding process: print its figures as one JSON line."""
    import timm
    import torch

    from geossl.embed import EmbedOptions, embed_rasters
    from geossl.embed.dataset import Shard

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    # The same weights in every process: a job array's tasks all read one weights file.
    torch.manual_seed(0)
    model = timm.create_model(args.backbone, num_classes=0)
    shard = Shard.parse(args.shard) if args.shard else None
    report = embed_rasters(
        model,
        [args.raster],
        args.dataset,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        scale=1 / 255,
        options=EmbedOptions(
            chip_size=args.chip_size,
            batch_size=args.batch_size,
            workers=args.workers,
            shard=shard,
            preview=False,
            progress=False,
        ),
    )
    figures = {
        "embedded": report.num_embedded,
        "units": report.units,
        "units_done_before": report.units_done_before,
        "embed_s": round(report.seconds, 1),
        "process_s": round(time.perf_counter() - start, 1),
        "ru_maxrss_mb": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
    }
    print(json.dumps(figures))


def _launch(
    args: argparse.Namespace, dataset: Path, shard: str | None, threads: int, workers: int
) -> subprocess.Popen[str]:
    command = [
        *(sys.executable, "-m", "benchmarks.embed_shards", "--worker"),
        *("--raster", str(args.raster), "--dataset", str(dataset)),
        *("--backbone", args.backbone, "--chip-size", str(args.chip_size)),
        *("--batch-size", str(args.batch_size), "--threads", str(threads)),
        *("--workers", str(workers), *(("--shard", shard) if shard else ())),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _run(
    args: argparse.Namespace,
    label: str,
    dataset: Path,
    shards: list[str | None],
    threads: int,
    workers: int,
) -> dict[str, Any]:
    """Run the processes side by side; one result row."""
    start = time.perf_counter()
    processes = [_launch(args, dataset, shard, threads, workers) for shard in shards]
    outputs = [p.communicate()[0] for p in processes]
    wall = time.perf_counter() - start
    if any(p.returncode for p in processes):
        raise SystemExit(f"{label}: a process failed")
    figures = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    embedded = sum(f["embedded"] for f in figures)
    size = sum(p.stat().st_size for p in dataset.glob("*.parquet"))
    return {
        "run": label,
        "processes": len(shards),
        "torch_threads_each": threads,
        "reader_threads_each": workers,
        "embedded": embedded,
        "units": sum(f["units"] for f in figures),
        "units_skipped": sum(f["units_done_before"] for f in figures),
        "wall_s": round(wall, 1),
        "chips_per_s": round(embedded / wall, 1) if embedded else 0.0,
        "ru_maxrss_mb_each": "/".join(f"{f['ru_maxrss_mb']:,.0f}" for f in figures),
        "dataset_mb": _mb(size),
        "load_1min": round(os.getloadavg()[0], 1),
    }


def _reader_rate(raster: Path, chip_size: int, chip_rows: int = 12) -> float:
    """Chips per second one reader thread reads, masks and normalises (no model, no writing)."""
    from geossl.embed.reading import _block_tasks, _ReadSpec
    from geossl.embed.sources import find_sources

    sources = find_sources([raster], in_chans=3, chip_size=chip_size, stride=chip_size)
    spec = _ReadSpec(chip_size, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.5, True)
    budget = sources[0].grid.n_cols * chip_rows  # type: ignore[union-attr]
    start, chips = time.perf_counter(), 0
    for task in _block_tasks(sources, spec, budget):
        chips += task().num_considered
    return chips / (time.perf_counter() - start)


def _same_rows(a: Path, b: Path) -> bool:
    import numpy as np
    import pyarrow.dataset as ds

    def table(path: Path) -> Any:
        frame = ds.dataset(path, format="parquet").to_table().to_pandas()
        return frame.sort_values(["row_off", "col_off"]).reset_index(drop=True)

    left, right = table(a), table(b)
    if len(left) != len(right) or not left.geometry.equals(right.geometry):
        return False
    return bool(np.allclose(np.stack(left.embedding), np.stack(right.embedding), atol=1e-4))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/geossl-bench"))
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--chip-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raster", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--reader-only",
        action="store_true",
        help="only measure the reader's rate and add it to the existing --output",
    )
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return {}
    args.raster, generation_s = _raster(args.work_dir, args.size)
    reader = round(_reader_rate(args.raster, args.chip_size), 1)
    if args.reader_only:
        result = json.loads(args.output.read_text())
        result["dataset"]["reader_chips_per_s_one_thread"] = reader
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        update_docs()
        return dict(result)
    one, sharded = args.work_dir / "shards-one", args.work_dir / "shards-n"
    for folder in (one, sharded):
        shutil.rmtree(folder, ignore_errors=True)
    n = args.shards
    each_threads, each_workers = max(1, args.threads // n), max(1, args.workers // n)
    rows = [
        _run(args, "1 process", one, [None], args.threads, args.workers),
        _run(
            args,
            f"{n} shards side by side",
            sharded,
            [f"{i}/{n}" for i in range(n)],
            each_threads,
            each_workers,
        ),
        _run(args, "rerun, everything done", sharded, [None], args.threads, args.workers),
    ]
    same = _same_rows(one, sharded)
    import rasterio
    import torch

    from geossl import __version__

    result = {
        "benchmark": "embed_shards",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gdal": rasterio.__gdal_version__,
            "geossl": __version__,
        },
        "dataset": {
            "raster": f"{args.size:,} x {args.size:,} x 3 uint8, deflate, 512-px tiles",
            "backbone": args.backbone,
            "chip_size": args.chip_size,
            "generation_s": round(generation_s, 1),
            "sharded_rows_equal_unsharded": same,
            "reader_chips_per_s_one_thread": reader,
        },
        "notes": NOTES,
        "results": rows,
        "command": "python -m benchmarks.embed_shards "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    update_docs()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
