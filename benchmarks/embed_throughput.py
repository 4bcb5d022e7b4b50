"""Embedding throughput (chips/s) and memory of ``geossl embed`` on a 20,000 x 20,000 raster.

Generates (once, cached in ``--work-dir``) a ``--size`` x ``--size`` 3-band uint8 GeoTIFF (UTM,
deflate, 512-pixel tiles, nodata 0 with an empty corner), written tile row by tile row in a child
process, so neither the generation nor its memory counts against the measured run. Then embeds it
with :func:`geossl.embed.embed_rasters` and a randomly initialised timm backbone (throughput does
not depend on the weights) and reports:

* chips/s over the embedding pass (reading, model, writing; PCA preview excluded), and the wall
  time of the whole run;
* memory: the resident set size before the run (model loaded), the peak sampled every 0.1 s during
  the run, and ``ru_maxrss`` (the process's lifetime peak).

Writes ``benchmarks/results/embed_throughput.json`` and re-renders ``docs/benchmarks.md``.

    python -m benchmarks.embed_throughput                                  # resnet18, 224, CPU
    python -m benchmarks.embed_throughput --backbone resnet50 --max-chips 500 --append
    python -m benchmarks.embed_throughput --device cuda --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import timm
import torch
from affine import Affine

from benchmarks.update_docs import main as update_docs
from geossl import __version__
from geossl.embed import EmbedOptions, embed_rasters

RESULTS = Path(__file__).resolve().parent / "results" / "embed_throughput.json"
NOTES = [
    "chips_per_s counts embedded chips over the embedding pass (reading, model, writing); skipped "
    "chips (the raster's empty corner) are read but not embedded. On a CPU the model dominates: "
    "the reader threads read, mask and normalise a few hundred 224-px chips per second each. "
    "rss_before_mb is the process after imports and model creation (torch, timm, GDAL, pyarrow); "
    "the peak during the run stays bounded whatever the raster size (compare the full raster "
    "with its first 10%).",
]
_TILE = 512
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _generate(path: Path, size: int) -> None:
    """Write the test raster a row of tiles at a time (memory: one row of tiles)."""
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "transform": Affine(0.5, 0.0, 400_000.0, 0.0, -0.5, 4_500_000.0),
        "nodata": 0,
        "tiled": True,
        "blockxsize": _TILE,
        "blockysize": _TILE,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    rng = np.random.default_rng(0)
    cols = np.arange(size, dtype=np.float32)
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row0 in range(0, size, _TILE):
            rows = min(_TILE, size - row0)
            y = np.arange(row0, row0 + rows, dtype=np.float32)[:, None]
            # Smooth "fields" (sinusoids of a few hundred pixels) plus texture noise.
            base = (
                110 + 50 * np.sin(cols / 170.0) * np.cos(y / 230.0) + 30 * np.sin((cols + y) / 90)
            )
            block = np.empty((3, rows, size), np.uint8)
            for band, offset in enumerate((0, 25, -20)):
                noise = rng.integers(-12, 13, size=(rows, size), dtype=np.int16)
                block[band] = np.clip(base + offset + noise, 1, 255).astype(np.uint8)
            block[:, (cols[None, :] + y) < size * 0.3] = 0  # an empty (nodata) corner
            dst.write(block, window=Window(0, row0, size, rows))
    os.replace(tmp, path)


def _raster(work_dir: Path, size: int) -> tuple[Path, float]:
    path = work_dir / f"embed-bench-{size}.tif"
    marker = path.with_suffix(".complete")
    if path.is_file() and marker.is_file():
        return path, float(marker.read_text().split()[0])
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {size} x {size} x 3 uint8 in {path} ...", file=sys.stderr)
    start = time.perf_counter()
    child = multiprocessing.get_context("fork").Process(target=_generate, args=(path, size))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"generating {path} failed (exit code {child.exitcode})")
    seconds = time.perf_counter() - start
    marker.write_text(f"{seconds:.1f} s\n")
    return path, seconds


class RSSSampler:
    """Sample this process's resident set size every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.rss()
            self.samples.append(value)
            self.peak = max(self.peak, value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--size", type=int, default=20_000, help="raster side in pixels")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--chip-size", type=int, default=224)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", choices=["geoparquet", "geotiff"], default="geoparquet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-chips", type=int, default=None, help="embed only the first N chips of the grid"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the other configurations already in --output (same machine)",
    )
    args = parser.parse_args(argv)

    raster, generation_s = _raster(args.work_dir, args.size)
    model = timm.create_model(args.backbone, num_classes=0)
    out_dir = Path(tempfile.mkdtemp(prefix="geossl-embed-bench-", dir=args.work_dir))
    output = out_dir / ("e.parquet" if args.format == "geoparquet" else "grid")
    baseline = RSSSampler.rss()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        with RSSSampler() as sampler:
            report = embed_rasters(
                model,
                [raster],
                output,
                mean=[0.485, 0.456, 0.406],
                std=[0.229, 0.224, 0.225],
                scale=1 / 255,
                options=EmbedOptions(
                    chip_size=args.chip_size,
                    stride=args.stride,
                    fmt=args.format,
                    batch_size=args.batch_size,
                    device=args.device,
                    workers=args.workers,
                    max_chips=args.max_chips,
                    progress=sys.stderr.isatty(),
                ),
            )
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    device = torch.device(args.device)
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    row: dict[str, Any] = {
        "backbone": args.backbone,
        "chip_size": args.chip_size,
        "stride": args.stride or args.chip_size,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "format": args.format,
        "device": device_name,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "chips": report.num_chips,
        "embedded": report.num_embedded,
        "skipped_nodata": report.num_skipped_nodata,
        "embed_s": round(report.seconds, 1),
        "wall_s": round(wall, 1),
        "chips_per_s": round(report.chips_per_s, 1),
        "rss_before_mb": _mb(baseline),
        "rss_peak_sampled_mb": _mb(sampler.peak),
        "ru_maxrss_mb": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
        "output_mb": _mb(report.output_bytes),
        "subset": f"first {args.max_chips:,} chips" if args.max_chips else "full raster",
        "load_1min": round(load, 1),
        "command": "python -m benchmarks.embed_throughput "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    result = {
        "benchmark": "embed_throughput",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__,
            "geossl": __version__,
        },
        "dataset": {
            "raster": f"{args.size:,} x {args.size:,} x 3 uint8, deflate, {_TILE}-px tiles",
            "file_mb": _mb(raster.stat().st_size),
            "generation_s": round(generation_s, 1),
        },
        "notes": NOTES,
        "results": [row],
    }
    if args.append and args.output.is_file():
        keys = ("backbone", "chip_size", "stride", "format", "device", "subset")
        old = json.loads(args.output.read_text()).get("results", [])
        kept = [r for r in old if any(r.get(k) != row[k] for k in keys)]
        result["results"] = [*kept, row]
        if any("load_1min" not in r for r in kept):
            result["notes"] = json.loads(args.output.read_text()).get("notes", NOTES)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.output)
    for key, value in row.items():
        if key != "command":
            print(f"{key:>20}: {value}")
    update_docs()
    return result


if __name__ == "__main__":
    main()
