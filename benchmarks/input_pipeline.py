"""Input pipeline alone: decoded, cropped, resized (and augmented) fMoW pairs per second.

Generates (once, cached in ``--work-dir``) an fMoW-rgb sample in the real layout
(:func:`geossl.datasets.fmow_sample.generate_fmow_sample`), then measures, for each number of
DataLoader workers and each decode mode:

* ``pil``: the real loader, :class:`~geossl.datamodules.FMoWDataModule`'s train DataLoader
  (:class:`~geossl.datasets.fmow.FMoWTemporalPairs` and
  :class:`~geossl.samplers.TemporalPairSampler`): the workers open each JPEG with PIL
  (DCT-domain draft decode when the crop is large), crop the target's context box and resize it
  to ``image_size``;
* ``decode_jpeg_<device>``: the workers only read the two files' bytes (same pairs, same rows);
  ``torchvision.io.decode_jpeg`` decodes the batch on ``--device`` (nvJPEG on a GPU; on a CPU it
  runs in the main process as the stand-in) and the crop / antialiased bilinear resize to
  ``image_size`` runs there too. The ``cuda`` mode is recorded as ``skipped: no GPU`` without
  one.

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
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from benchmarks.step_throughput import RESULTS, machine_info
from benchmarks.update_docs import main as update_docs
from geossl.datamodules import FMoWDataModule
from geossl.datasets.fmow_sample import generate_fmow_sample
from geossl.transforms import GeoSSLAugmentation

DECODE_MODES = ["pil", "decode_jpeg_cpu", "decode_jpeg_cuda"]


class PairBytes(Dataset[dict[str, Any]]):
    """The raw JPEG bytes and context crops of the two images of a pair ``(i, j)``.

    Args:
        paths: absolute image path of every index row.
        crops: ``[N, 4]`` context crop ``(x0, y0, x1, y1)`` of every row (exclusive ends).
    """

    def __init__(self, paths: list[str], crops: Tensor) -> None:
        self.paths = paths
        self.crops = crops

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: tuple[int, int]) -> dict[str, Any]:
        """Read the files of rows ``index = (i, j)``."""
        rows = [int(index[0]), int(index[1])]
        return {
            "data": [Path(self.paths[r]).read_bytes() for r in rows],
            "crop": self.crops[rows],
        }


def _collate_bytes(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        # 2B byte strings, pair-major: plain bytes, not 2B shared-memory tensors per batch.
        "data": [d for s in samples for d in s["data"]],
        "crop": torch.cat([s["crop"] for s in samples]),  # [2B, 4]
    }


def decode_batch(batch: dict[str, Any], size: int, device: torch.device) -> Tensor:
    """Decode, crop and resize a batch of pair bytes on ``device``: ``uint8 [B, 2, 3, S, S]``."""
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in batch["data"]]
    images = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB, device=device)
    out = []
    for image, (x0, y0, x1, y1) in zip(images, batch["crop"].tolist(), strict=True):
        crop = image[:, max(y0, 0) : y1, max(x0, 0) : x1].unsqueeze(0).float()
        resized = F.interpolate(
            crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out).view(-1, 2, 3, size, size)


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
    datamodule: FMoWDataModule,
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
    dataset, sampler = datamodule.train_dataset, datamodule.train_sampler
    if dataset is None or sampler is None:
        raise RuntimeError("call datamodule.setup('fit') first")
    kwargs: dict[str, Any] = {
        "batch_size": args.batch_size,
        "sampler": sampler,
        "num_workers": workers,
        "drop_last": True,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,
    }
    if workers > 0:
        kwargs["prefetch_factor"] = 4
    loader: DataLoader[Any]
    if mode == "pil":
        loader = DataLoader(dataset, **kwargs)

        def batches() -> Generator[Tensor]:
            for batch in _forever(loader):
                yield batch["image"].to(device, non_blocking=True)

    else:
        rows = datamodule.index.split_rows(*datamodule.splits)  # type: ignore[union-attr]
        paths = [dataset.path(r) for r in range(len(dataset))]
        crops = torch.as_tensor(
            rows[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].to_numpy(dtype="int64", copy=True)
        )
        loader = DataLoader(PairBytes(paths, crops), collate_fn=_collate_bytes, **kwargs)

        def batches() -> Generator[Tensor]:
            for batch in _forever(loader):
                yield decode_batch(batch, args.image_size, device)

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
    datamodule = FMoWDataModule(
        root=str(root),
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=0,
        num_geo_clusters=min(100, args.locations),
        cache_dir=str(args.work_dir / f"index-{root.name}"),
        pin_memory=False,
        persistent_workers=False,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    augment = GeoSSLAugmentation(size=args.crop_size)
    rows = []
    for workers in args.workers:
        for mode in args.modes:
            row = run_mode(mode, datamodule, workers, args, augment)
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
