"""PASS / FAIL of the issue's GPU throughput targets, read from ``benchmarks/results/*.json``.

* step, MoCo + TP + Geo + CO2 (``tp_geo_co2``) >= 3,500 samples/s (fastest mode);
* step, every term with SCRL (``all``) >= 2,000 samples/s (fastest mode);
* geossl MoCo-v2 >= 1.5 x torchgeo's MoCoTask at the same mode and precision (fastest mode);
* input pipeline: the fastest loader >= the fastest recipe's step rate;
* embedding export >= 10,000 chips/s.

A figure taken on a CPU (or missing) is ``not measured on a GPU``, never PASS. Writes
``benchmarks/results/targets.json`` (a table of ``docs/benchmarks.md``) and prints the table.

    python -m benchmarks.targets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.update_docs import main as update_docs

RESULTS = Path(__file__).resolve().parent / "results"


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _on_gpu(data: dict[str, Any] | None) -> bool:
    if data is None:
        return False
    machine = data.get("machine", {})
    device = str(machine.get("device", ""))
    rows = data.get("results", [])
    return (bool(device) and not device.startswith("CPU")) or any(
        str(r.get("device", "")).startswith("NVIDIA") for r in rows
    )


def _status(measured: float | None, threshold: float, gpu: bool) -> str:
    if measured is None:
        return "not measured"
    if not gpu:
        return "not measured on a GPU"
    return "PASS" if measured >= threshold else "FAIL"


def _best_step(data: dict[str, Any] | None, recipe: str) -> tuple[float | None, str]:
    rows = [
        r
        for r in (data or {}).get("results", [])
        if r.get("impl") == "geossl" and r.get("recipe") == recipe and r.get("status") == "ok"
    ]
    if not rows:
        return None, ""
    best = max(rows, key=lambda r: r["samples_per_s"])
    return float(best["samples_per_s"]), f"{best['mode']}, {best['precision']}"


def check(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Evaluate every target against the JSON files in ``results``."""
    step = _load(results, "step_throughput")
    pipeline = _load(results, "input_pipeline")
    embed = _load(results, "embed_throughput")
    rows: list[dict[str, Any]] = []

    def add(target: str, threshold: float, measured: float | None, how: str, gpu: bool) -> None:
        rows.append(
            {
                "target": target,
                "threshold": threshold,
                "measured": "-" if measured is None else round(measured, 2),
                "at": how,
                "status": _status(measured, threshold, gpu),
            }
        )

    step_gpu = _on_gpu(step)
    for recipe, threshold in (("tp_geo_co2", 3500.0), ("all", 2000.0)):
        rate, how = _best_step(step, recipe)
        add(f"step {recipe} samples/s", threshold, rate, how, step_gpu)

    ratios = [
        r
        for r in (step or {}).get("results", [])
        if r.get("impl") == "geossl"
        and r.get("recipe") == "moco"
        and isinstance(r.get("vs_torchgeo"), int | float)
    ]
    best_ratio = max(ratios, key=lambda r: r["samples_per_s"]) if ratios else None
    add(
        "geossl moco / torchgeo MoCoTask",
        1.5,
        None if best_ratio is None else float(best_ratio["vs_torchgeo"]),
        "" if best_ratio is None else f"{best_ratio['mode']}, {best_ratio['precision']}",
        step_gpu,
    )

    fastest_step = max(
        (
            float(r["samples_per_s"])
            for r in (step or {}).get("results", [])
            if r.get("impl") == "geossl" and r.get("status") == "ok"
        ),
        default=None,
    )
    loaders = [r for r in (pipeline or {}).get("results", []) if "loader_samples_per_s" in r]
    best_loader = max(loaders, key=lambda r: r["loader_samples_per_s"]) if loaders else None
    ratio = (
        None
        if best_loader is None or fastest_step is None
        else best_loader["loader_samples_per_s"] / fastest_step
    )
    add(
        "input pipeline / fastest step",
        1.0,
        ratio,
        "" if best_loader is None else f"{best_loader['decode']}, {best_loader['workers']} workers",
        _on_gpu(pipeline) and step_gpu,
    )

    chips = [r for r in (embed or {}).get("results", []) if "chips_per_s" in r]
    best_embed = max(chips, key=lambda r: r["chips_per_s"]) if chips else None
    add(
        "embedding chips/s",
        10000.0,
        None if best_embed is None else float(best_embed["chips_per_s"]),
        "" if best_embed is None else f"{best_embed['backbone']}, batch {best_embed['batch_size']}",
        _on_gpu(embed),
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print the targets, write ``targets.json`` and re-render the docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-docs", action="store_true", help="do not re-render the docs")
    args = parser.parse_args(argv)
    rows = check(args.results)
    for row in rows:
        print(
            f"{row['status']:>22}  {row['target']:<34} {row['measured']!s:>10} "
            f"(>= {row['threshold']:g}) {row['at']}"
        )
    data = {
        "notes": [
            "The issue's GPU targets, evaluated from the results files above by "
            "python -m benchmarks.targets; CPU figures never count as PASS."
        ],
        "results": rows,
        "command": "python -m benchmarks.targets "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (args.results / "targets.json").write_text(json.dumps(data, indent=2) + "\n")
    if not args.no_docs:
        update_docs()
    return rows


if __name__ == "__main__":
    main()
