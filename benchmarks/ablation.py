"""Loss-term ablation at smoke scale: every recipe, one budget, a kNN probe on held-out labels.

Each recipe of ``configs/pretrain/ablations/`` is layered on a small base config (ResNet-18 at
64 px, the ``fmow_demo`` sizes), trained for the same number of epochs with the same seed through
the real CLI (``python -m geossl pretrain``, one subprocess per recipe), and its frozen backbone is
scored with the weighted kNN probe (:mod:`geossl.evaluation.knn`). A randomly initialised backbone
is the floor.

Datasets:

* ``fmow-sample``: the generated fMoW sample (10 categories, 240 locations, 80/20 train/val split
  by location). Probe: kNN top-1 of the category, bank = every train image, queries = every val
  image (locations never seen by the bank).
* ``timeseries``: the real co-registered stacks in ``../shared/data/real/timeseries`` (Landsat
  Pucallpa, 8 dates; NAIP North Dakota, 10 dates), one pretraining per stack. The labels are
  derived (the stacks have none); see :mod:`benchmarks.ablation_timeseries`.

Usage (from the repository root; writes ``benchmarks/results/ablation_<dataset>.json``, then
``python -m benchmarks.update_docs`` renders docs/ablation.md)::

    python -m benchmarks.ablation fmow-sample --epochs 10
    python -m benchmarks.ablation timeseries --epochs 10
"""

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from geossl import __version__
from geossl.evaluation import embed_images, knn_accuracy

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "configs" / "pretrain" / "ablations"
RESULTS = REPO / "benchmarks" / "results"
BASE_CONFIG = REPO / "configs" / "pretrain" / "fmow_demo.yaml"

#: Recipes in table order: the GeoSSL paper's rows, then geossl's.
RECIPES = ("moco", "tp", "geo", "tp_geo", "tp_geo_co2", "tp_geo_scrl", "all", "all_tscrl")

#: The base config's backbone and view size (configs/pretrain/fmow_demo.yaml).
BACKBONE = "resnet18"
VIEW_SIZE = 64

#: SCRL's 32 px minimum box side is half of a 64 px view; 16 px keeps boxes in most intersections.
SCRL_SMALL_VIEWS = {"min_size": 16.0}

Scores = dict[str, float]
#: ``evaluate(backbone, mean, std) -> scores`` of one experiment.
Evaluate = Callable[[torch.nn.Module, list[float], list[float]], Scores]


def recipe_config(recipe: str, workdir: Path, fmow: bool = True) -> Path:
    """Write the recipe's YAML with the small-view SCRL options merged in.

    Args:
        recipe: a file stem of ``configs/pretrain/ablations``.
        workdir: where to write ``{recipe}.yaml``.
        fmow: keep the recipe's fMoW data options (``data.shared_canvas``); other datamodules
            have their own (co-registered raster pairs always share their canvas).

    Returns:
        The written file.
    """
    config: dict[str, Any] = yaml.safe_load((ABLATIONS / f"{recipe}.yaml").read_text())
    if not fmow:
        config.pop("data", None)
    model = config.setdefault("model", {})
    if "scrl" in model.get("losses", {}):
        options = model.setdefault("loss_options", {})
        options["scrl"] = {**options.get("scrl", {}), **SCRL_SMALL_VIEWS}
    path = workdir / f"{recipe}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def pretrain(
    recipe: str, base_args: Sequence[str], workdir: Path, epochs: int, seed: int, fmow: bool
) -> tuple[Path, float, str]:
    """Train one recipe through the CLI and return its last checkpoint.

    Args:
        recipe: ablation recipe name.
        base_args: arguments before the recipe's config (base config, data options).
        workdir: the experiment's working folder.
        epochs: training epochs.
        seed: ``seed_everything``.
        fmow: the data is fMoW (see :func:`recipe_config`).

    Returns:
        ``(last.ckpt, wall seconds, the command)``.

    Raises:
        RuntimeError: if the run fails or writes no checkpoint.
    """
    runs = workdir / "runs"
    args = [
        sys.executable,
        "-m",
        "geossl",
        "pretrain",
        *base_args,
        "--config",
        str(recipe_config(recipe, workdir, fmow)),
        "--trainer.max_epochs",
        str(epochs),
        "--seed_everything",
        str(seed),
        "--trainer.logger.init_args.save_dir",
        str(runs),
        "--trainer.logger.init_args.name",
        recipe,
        "--trainer.logger.init_args.version",
        f"seed{seed}",
    ]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{recipe}: pretraining failed:\n{done.stderr[-3000:]}")
    ckpt = runs / recipe / f"seed{seed}" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RuntimeError(f"{recipe}: no checkpoint at {ckpt}")
    command = shlex.join(["python", *args[1:]]).replace(f"{REPO}/", "")
    return ckpt, wall, command


def load_backbone(ckpt: Path) -> tuple[torch.nn.Module, list[float], list[float]]:
    """The query backbone of a GeoSSLTask checkpoint and its input normalisation."""
    from geossl.trainers import GeoSSLTask

    task = GeoSSLTask.load_from_checkpoint(ckpt, map_location="cpu")
    mean: list[float] = task.augment.mean.flatten().tolist()
    std: list[float] = task.augment.std.flatten().tolist()
    return task.backbone, mean, std


def model_base_config(workdir: Path) -> Path:
    """The base config without its fMoW ``data`` section, for other datamodules."""
    config: dict[str, Any] = yaml.safe_load(BASE_CONFIG.read_text())
    config.pop("data", None)
    path = workdir / "base_model.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --------------------------------------------------------------------------- fMoW sample


def fmow_sample(workdir: Path, locations: int, seed: int) -> tuple[list[str], Evaluate, str]:
    """Generate the sample; return the base CLI arguments, the kNN evaluation and a description.

    Args:
        workdir: the experiment's working folder.
        locations: locations in the sample.
        seed: the sample's seed.

    Returns:
        ``(base CLI arguments, evaluate, description)``.
    """
    from geossl.datasets import FMoW, build_fmow_index
    from geossl.datasets.fmow.constants import FMOW_CATEGORIES
    from geossl.synthetic import generate_fmow_sample

    root = workdir / "fmow-sample"
    if not (root / "train").is_dir():
        generate_fmow_sample(
            root,
            locations=locations,
            seed=seed,
            categories=FMOW_CATEGORIES[:10],
            split_fractions={"train": 0.8, "val": 0.2},
        )
    base = [
        "--config",
        str(BASE_CONFIG),
        "--data.root",
        str(root),
        "--data.num_workers",
        "1",
    ]
    index = build_fmow_index(root, splits=["train", "val"], num_geo_clusters=8, seed=0)
    images: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    for split in ("train", "val"):
        dataset = FMoW(root, index.split_rows(split), image_size=VIEW_SIZE)
        samples = [dataset[i] for i in range(len(dataset))]
        images[split] = torch.stack([s["image"] for s in samples])
        labels[split] = torch.stack([s["label"] for s in samples])

    def evaluate(backbone: torch.nn.Module, mean: list[float], std: list[float]) -> Scores:
        bank = embed_images(backbone, images["train"], mean, std, size=VIEW_SIZE)
        query = embed_images(backbone, images["val"], mean, std, size=VIEW_SIZE)
        return {"knn_top1": knn_accuracy(query, labels["val"], bank, labels["train"], k=20)}

    description = (
        f"generated fMoW sample, {locations} locations, 10 categories, "
        f"{len(labels['train'])} train / {len(labels['val'])} val images"
    )
    return base, evaluate, description


# --------------------------------------------------------------------------- driver


def run_experiment(
    name: str,
    base: Sequence[str],
    evaluate: Evaluate,
    *,
    recipes: Sequence[str],
    workdir: Path,
    epochs: int,
    seed: int,
    in_chans: int,
    mean: list[float],
    std: list[float],
) -> list[dict[str, Any]]:
    """Random-init floor, then every recipe: train, probe, one result row each."""
    workdir.mkdir(parents=True, exist_ok=True)
    from geossl.models import create_backbone

    torch.manual_seed(seed)
    rows: list[dict[str, Any]] = [
        {
            "data": name,
            "recipe": "random init",
            "losses": "-",
            **evaluate(create_backbone(BACKBONE, in_chans=in_chans), mean, std),
            "train_s": 0.0,
        }
    ]
    print(f"[{name}] random init: {rows[-1]}", file=sys.stderr)
    for recipe in recipes:
        ckpt, wall, command = pretrain(recipe, base, workdir, epochs, seed, name == "fmow-sample")
        backbone, ckpt_mean, ckpt_std = load_backbone(ckpt)
        config = yaml.safe_load((ABLATIONS / f"{recipe}.yaml").read_text())
        losses = ", ".join(f"{k} {v:g}" for k, v in config["model"]["losses"].items())
        rows.append(
            {
                "data": name,
                "recipe": recipe,
                "losses": losses,
                **evaluate(backbone, ckpt_mean, ckpt_std),
                "train_s": wall,
                "command": command,
            }
        )
        print(f"[{name}] {recipe}: {rows[-1]}", file=sys.stderr)
    return rows


def cpu_run_info() -> dict[str, dict[str, Any]]:
    """The ``machine`` and ``versions`` records of a CPU benchmark run."""
    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": torch.get_num_threads(),
            "device": "cpu",
        },
        "versions": {"geossl": __version__, "torch": torch.__version__},
    }


def merge_results(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the rows of ``old`` that it does not redo, in table order.

    Rows are keyed by ``(data, recipe)``; the order is the data's first appearance, then random
    init, then :data:`RECIPES` order. Descriptions and commands of both are kept.
    """
    rows = {(r["data"], r["recipe"]): r for r in old.get("results", [])}
    rows.update({(r["data"], r["recipe"]): r for r in new["results"]})
    data_order = list(dict.fromkeys(key[0] for key in rows))
    recipe_order = ["random init", *RECIPES]
    ordered = sorted(rows, key=lambda k: (data_order.index(k[0]), recipe_order.index(k[1])))
    old_commands = old.get("command", [])
    commands = [old_commands] if isinstance(old_commands, str) else list(old_commands)
    return {
        **new,
        "dataset": {**old.get("dataset", {}), **new["dataset"]},
        "command": list(dict.fromkeys([*commands, *new["command"]])),
        "results": [rows[key] for key in ordered],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ablation and write ``benchmarks/results/ablation_<dataset>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dataset", choices=["fmow-sample", "timeseries"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geossl-ablation"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--locations", type=int, default=240, help="fmow-sample locations")
    parser.add_argument(
        "--append",
        action="store_true",
        help="merge into the existing results file (a row per data and recipe, new ones win)",
    )
    args = parser.parse_args(argv)

    rows: list[dict[str, Any]] = []
    described: dict[str, str] = {}
    workdir: Path = args.workdir / args.dataset
    workdir.mkdir(parents=True, exist_ok=True)
    common = {"recipes": args.recipes, "epochs": args.epochs, "seed": args.seed}
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if args.dataset == "fmow-sample":
        base, evaluate, description = fmow_sample(workdir, args.locations, args.seed)
        described["fmow-sample"] = description
        rows += run_experiment(
            "fmow-sample",
            base,
            evaluate,
            workdir=workdir,
            in_chans=3,
            mean=imagenet[0],
            std=imagenet[1],
            **common,
        )
    else:
        from benchmarks.ablation_timeseries import timeseries_experiments

        for experiment in timeseries_experiments(workdir, model_base_config(workdir)):
            described[experiment.name] = experiment.description
            rows += run_experiment(
                experiment.name,
                experiment.base_args,
                experiment.evaluate,
                workdir=workdir / experiment.name,
                in_chans=experiment.in_chans,
                mean=experiment.mean,
                std=experiment.std,
                **common,
            )

    out = {
        **cpu_run_info(),
        "dataset": described,
        "settings": {
            "backbone": BACKBONE,
            "view": f"{VIEW_SIZE} px",
            "epochs": args.epochs,
            "seed": args.seed,
            "base config": str(BASE_CONFIG.relative_to(REPO)),
            "scrl min_size": SCRL_SMALL_VIEWS["min_size"],
        },
        "command": [shlex.join(["python", "-m", "benchmarks.ablation", *(argv or sys.argv[1:])])],
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"ablation_{args.dataset.replace('-', '_')}.json"
    if args.append and path.is_file():
        out = merge_results(json.loads(path.read_text()), out)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
