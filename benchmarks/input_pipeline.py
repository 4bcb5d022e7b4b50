"""Input pipeline alone: decoded, cropped, resized (and augmented) fMoW pairs per second.

Generates (once, cached in ``--work-dir``) an fMoW-rgb sample in the real layout
(:func:`geossl.synthetic.fmow.generate_fmow_sample`), then measures, for each number of
DataLoader workers and each decode mode:

* ``pil``: the real loader, :class:`~geossl.datamodules.FMoWDataModule`'s train DataLoader
  (:class:`~geossl.datasets.fmow.FMoWTemporalPairs` and
  :class:`~geossl.samplers.TemporalPairSampler`): the workers open each JPEG with PIL
  (DCT-domain draft decode when the crop is large), crop the target's context box and resize it
  to ``image_size``;
* ``decode_jpeg_<device>``: the same loader with ``data.decode_on_device=true``: the workers
  only read the two files' bytes (same pairs, same rows), and
  :meth:`~geossl.datamodules.FMoWDataModule.decode_batch` (what Lightning's transfer hook runs)
  decodes the batch on ``--device`` with ``torchvision.io.decode_jpeg`` (nvJPEG on a GPU; on a CPU
  it runs in the main process as the stand-in), then crops and resizes (antialiased bilinear) to
  ``image_size`` there. The ``cuda`` mode is recorded as ``skipped: no GPU`` without one.

``loader_samples_per_s`` is pairs per second out of the loader (on the device for the
``decode_jpeg`` modes); ``augmented_samples_per_s`` adds GeoSSLTask's view augmentation
(:class:`~geossl.transforms.GeoSSLAugmentation`, two views per pair: query and temporal) on
``--device``, as the training step runs it. ``step_samples_per_s`` is the fastest recipe's rate
in ``step_throughput.json`` on the same device (when there is one): the pipeline must be faster.

    python -m benchmarks.input_pipeline                            # 40 locations, 96 px, CPU
    python -m benchmarks.input_pipeline --device cuda --locations 2000 --source-size 512 1536 \\
        --image-size 448 --crop-size 224 --batch-size 256 --workers 8 15 --batches 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor
from torch.utils.data import DataLoader

from benchmarks.step_throughput import RESULTS, machine_info
from benchmarks.update_docs import main as update_docs
from geossl.datamodules import FMoWDataModule
from geossl.synthetic.fmow import generate_fmow_sample
from geossl.transforms import GeoSSLAugmentation

DECODE_MODES = ["pil", "decode_jpeg_cpu", "decode_jpeg_cuda"]


def _rate(batches: Iterator[Tensor], count: int, warmup: int, device: torch.device) -> float:
    """Pairs per second over ``count`` batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, pairs = time.perf_counter(), 0
    for _ in range(count):
        pairs += int(next(batches).shape[0])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return pairs / (time.perf_counter() - start)


def _forever(loader: DataLoader[Any]) -> Iterator[Any]:
    while True:
        yield from loader


def run_mode(
    mode: str,
    datamodules: dict[str, FMoWDataModule],
    workers: int,
    args: argparse.Namespace,
    augment: GeoSSLAugmentation,
) -> dict[str, Any]:
    """Measure one decode mode with ``workers`` workers (loader alone, then with augmentation)."""
    device = torch.device("cuda" if mode == "decode_jpeg_cuda" else args.device)
    row: dict[str, Any] = {"decode": mode, "workers": workers, "device": device.type}
    if device.type == "cuda" and not torch.cuda.is_available():
        row["status"] = "skipped: no GPU"
        return row
    dm = datamodules["pil" if mode == "pil" else "device"]
    dm.batch_size, dm.num_workers = args.batch_size, workers
    dm.pin_memory, dm.persistent_workers = device.type == "cuda", workers > 0
    loader = dm.train_dataloader()

    def batches() -> Generator[Tensor]:
        for batch in _forever(loader):
            # What Lightning does between the loader and training_step: the device transfer, then
            # the data module's hook (which decodes on the device with decode_on_device).
            moved = move_data_to_device(batch, device)
            yield dm.on_after_batch_transfer(moved, 0)["image"]

    # One iterator for both measurements: a second pass over a DataLoader with persistent
    # workers while the first is unfinished waits on its outstanding batches.
    stream = batches()

    def augmented() -> Iterator[Tensor]:
        for pairs in stream:
            views = [augment(pairs[:, v]) for v in (0, 1)]  # query and temporal
            yield views[0]

    augment.to(device)
    try:
        row["loader_samples_per_s"] = round(_rate(stream, args.batches, args.warmup, device), 1)
        row["augmented_samples_per_s"] = round(
            _rate(augmented(), args.batches, args.warmup, device), 1
        )
        row["status"] = "ok"
    except Exception as err:  # keep the other modes' figures
        row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    finally:
        stream.close()  # the loader (and its workers) go with it
    return row


def step_rate(device: str) -> tuple[float, str] | None:
    """The fastest recipe's samples/s in ``step_throughput.json`` when taken on ``device``."""
    path = RESULTS / "step_throughput.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("machine", {}).get("device") != machine_info(device)["device"]:
        return None
    rows = [r for r in data["results"] if r["impl"] == "geossl" and r["status"] == "ok"]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["samples_per_s"])
    return float(best["samples_per_s"]), f"{best['recipe']} {best['mode']} {best['precision']}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/geossl-bench"))
    parser.add_argument("--locations", type=int, default=40)
    parser.add_argument(
        "--source-size",
        type=int,
        nargs=2,
        default=(160, 288),
        metavar=("MIN", "MAX"),
        help="range of the generated JPEGs' width and height",
    )
    parser.add_argument("--image-size", type=int, default=96, help="data.image_size")
    parser.add_argument("--crop-size", type=int, default=64, help="model.crop_size (the views)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--modes", nargs="+", default=DECODE_MODES, choices=DECODE_MODES)
    parser.add_argument("--device", default="cpu", help="where the augmentation runs")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS / "input_pipeline.json")
    parser.add_argument("--no-docs", action="store_true", help="do not re-render the docs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON and re-render ``docs/benchmarks.md``."""
    args = parse_args(argv)
    lo, hi = args.source_size
    root = args.work_dir / f"fmow-pipeline-{args.locations}-{lo}-{hi}"
    if not (root / "train").is_dir():
        generate_fmow_sample(
            root,
            locations=args.locations,
            seed=0,
            image_size=(lo, hi),
            split_fractions={"train": 1.0},
        )
    datamodules = {
        kind: FMoWDataModule(
            root=str(root),
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=0,
            num_geo_clusters=min(100, args.locations),
            cache_dir=str(args.work_dir / f"index-{root.name}"),
            pin_memory=False,
            persistent_workers=False,
            decode_on_device=kind == "device",
        )
        for kind in ("pil", "device")
    }
    datamodule = datamodules["pil"]
    datamodule.prepare_data()
    for dm in datamodules.values():
        dm.setup("fit")
    torch.manual_seed(0)
    augment = GeoSSLAugmentation(size=args.crop_size)
    rows = []
    for workers in args.workers:
        for mode in args.modes:
            row = run_mode(mode, datamodules, workers, args, augment)
            rows.append(row)
            print(
                f"{mode:>17} workers {workers:>2}: {row.get('loader_samples_per_s', '-')} "
                f"loaded, {row.get('augmented_samples_per_s', '-')} augmented pairs/s "
                f"({row['status']})"
            )
    found = step_rate(args.device)
    for row in rows:
        if found is not None and "loader_samples_per_s" in row:
            row["step_samples_per_s"] = found[0]
            row["loader_vs_step"] = round(row["loader_samples_per_s"] / found[0], 2)
    notes = [
        "One sample = one pair (two JPEGs of a place). loader: decoded, cropped to the target's "
        "context box and resized to data.image_size, on the device; augmented: plus the two "
        "views of GeoSSLAugmentation (crop_size) on the device. loader_vs_step: loader rate over "
        "the fastest recipe's step rate (step_throughput.json, same device"
        + (f": {found[1]}" if found else "; none on this device yet")
        + "). The generated sample's JPEGs are small (source_size): real fMoW-rgb images are "
        "often thousands of pixels wide, where PIL's draft decode helps and a full nvJPEG decode "
        "costs more.",
    ]
    if not torch.cuda.is_available():
        notes.append(
            "No GPU: decode_jpeg_cpu is the CPU stand-in for nvJPEG, decode_jpeg_cuda is skipped; "
            "the GPU figures are still to be taken (bash benchmarks/gpu_suite.sh)."
        )
    result = {
        "machine": machine_info(args.device),
        "dataset": {
            "root": root.name,
            "pairs": len(datamodule.train_dataset or []),
            "source_size": f"{lo}-{hi} px",
        },
        "settings": {
            "image_size": args.image_size,
            "crop_size": args.crop_size,
            "batch_size": args.batch_size,
            "timed_batches": args.batches,
            "augment_device": args.device,
        },
        "notes": notes,
        "results": rows,
        "command": "python -m benchmarks.input_pipeline "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    if not args.no_docs:
        update_docs()
    return result


if __name__ == "__main__":
    main()
