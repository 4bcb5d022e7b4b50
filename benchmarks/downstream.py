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
    python -m benchmarks.downstream xview --epochs 10
    python -m benchmarks.downstream spacenet --epochs 40
    python -m benchmarks.downstream spacenet-real --steps 200
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
    from geossl.datasets.fmow.constants import FMOW_CATEGORIES
    from geossl.synthetic import generate_fmow_sample

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


def _geossl_weights(workdir: Path, pretrain_epochs: int, seed: int) -> dict[str, str]:
    checkpoints = pretrained_weights(workdir, pretrain_epochs, seed)
    return {"random init": "random", **{f"geossl {r}": str(p) for r, p in checkpoints.items()}}


def _settings(pretrain_epochs: int, **extra: Any) -> dict[str, Any]:
    return {
        "backbone": "resnet18",
        **extra,
        "pretraining": f"{pretrain_epochs} epochs of fmow_demo.yaml per recipe",
    }


SMOKE_NOTE = (
    "Smoke scale: a few hundred generated images, CPU, a few epochs. These show that every path "
    "runs end to end, not how the methods rank at full scale."
)


def run_xview(workdir: Path, epochs: int, pretrain_epochs: int, seed: int) -> dict[str, Any]:
    """RetinaNet (ResNet-18 FPN) on the generated xView sample."""
    from geossl.synthetic.xview import generate_xview_sample

    weights = _geossl_weights(workdir, pretrain_epochs, seed)
    root = workdir / "xview-sample"
    if not (root / "train_images").is_dir():
        generate_xview_sample(root, images=12, image_size=384, seed=seed)
    args = [
        "--model.init_args.backbone",
        "resnet18",
        "--model.init_args.lr",
        "0.001",
        "--data.init_args.root",
        str(root),
        "--data.init_args.chip_size",
        "96",
        "--data.init_args.crops_per_image",
        "6",
        "--data.init_args.batch_size",
        "4",
        "--data.init_args.num_workers",
        "1",
        "--trainer.max_epochs",
        str(epochs),
        "--seed_everything",
        str(seed),
    ]
    rows, command, wall = compare("xview-det", weights, args, workdir)
    print(f"xview-det: {len(rows)} runs in {wall:.0f} s", file=sys.stderr)
    return {
        "dataset": {"name": "generated xView sample", "images": 12, "image_size": 384},
        "settings": _settings(pretrain_epochs, model="retinanet", chip_size=96, epochs=epochs),
        "notes": [SMOKE_NOTE],
        "results": rows,
        "command": [f"python -m benchmarks.downstream xview --epochs {epochs}", command],
    }


def run_spacenet(workdir: Path, epochs: int, pretrain_epochs: int, seed: int) -> dict[str, Any]:
    """U-Net (ResNet-18) on the generated SpaceNet-1 sample."""
    from geossl.synthetic.spacenet import generate_spacenet_sample

    weights = _geossl_weights(workdir, pretrain_epochs, seed)
    root = workdir / "spacenet1-sample"
    if not (root / "SN1_buildings").is_dir():
        generate_spacenet_sample(root, tiles=24, seed=seed + 1)
    args = [
        "--model.init_args.backbone",
        "resnet18",
        "--data.init_args.root",
        str(root),
        "--data.init_args.patch_size",
        "128",
        "--data.init_args.batch_size",
        "8",
        "--data.init_args.num_workers",
        "1",
        "--data.init_args.test_fraction",
        "0.25",
        "--trainer.max_epochs",
        str(epochs),
        "--seed_everything",
        str(seed),
    ]
    rows, command, wall = compare("spacenet-seg", weights, args, workdir)
    print(f"spacenet-seg: {len(rows)} runs in {wall:.0f} s", file=sys.stderr)
    return {
        "dataset": {"name": "generated SpaceNet-1 sample", "tiles": 24, "split": "test 25 %"},
        "settings": _settings(pretrain_epochs, model="unet", patch_size=128, epochs=epochs),
        "notes": [SMOKE_NOTE],
        "results": rows,
        "command": [f"python -m benchmarks.downstream spacenet --epochs {epochs}", command],
    }


def run_spacenet_real(workdir: Path, steps: int, pretrain_epochs: int, seed: int) -> dict[str, Any]:
    """The real SpaceNet-4 pan tile: train on three quadrants, test on the fourth.

    One tile cannot be split into tiles, so this runs in-process on quadrant crops (450 x 450
    px at 0.5 m): training patches of 160 px with the task's augmentation, testing on the whole
    held-out bottom-right quadrant. The pan band is one channel: RGB weights are adapted
    (``adapt_in_chans``, the sum of the RGB kernels) and normalised with the training quadrants'
    statistics.
    """
    import lightning
    from torch.utils.data import DataLoader, Dataset

    from geossl.datamodules.spacenet import _TrainTransform, pad_collate
    from geossl.datasets.spacenet import IGNORE_INDEX, SpaceNetTiles, band_statistics
    from geossl.trainers.segmentation import SpaceNetSegmentationTask

    real = REPO.parent / "shared" / "data" / "real" / "spacenet4_atlanta"
    if not real.is_dir():
        raise SystemExit(f"the real SpaceNet-4 tile is not at {real}")
    weights = _geossl_weights(workdir, pretrain_epochs, seed)
    tiles = SpaceNetTiles(pairs=[(real / "sample_geotiff.tif", real / "geotiff_labels.geojson")])
    full = tiles[0]
    image, mask = full["image"], full["mask"]

    def crop(row: int, col: int) -> dict[str, torch.Tensor]:
        return {
            "image": image[:, row : row + 450, col : col + 450].clone(),
            "mask": mask[row : row + 450, col : col + 450].clone(),
        }

    class Repeat(Dataset[dict[str, torch.Tensor]]):
        def __init__(self, items: list[dict[str, torch.Tensor]], train: bool, n: int) -> None:
            self.items, self.n = items, n
            self.transform = _TrainTransform(160, True, IGNORE_INDEX) if train else None

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            item = dict(self.items[i % len(self.items)])
            return self.transform(item) if self.transform else item

    train = [crop(0, 0), crop(0, 450), crop(450, 0)]
    test = [crop(450, 450)]
    stats = band_statistics(Repeat(train, False, len(train)))

    rows = []
    for name, spec in weights.items():
        lightning.seed_everything(seed)
        task = SpaceNetSegmentationTask(
            backbone="resnet18",
            weights=spec,
            in_channels=1,
            adapt_in_chans=True,
            lr=1e-3,
            patience=1000,
            mean=list(stats.mean),
            std=list(stats.std),
        )
        trainer = lightning.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        start = time.perf_counter()
        train_loader = DataLoader(
            Repeat(train, True, 4 * steps), batch_size=4, shuffle=True, collate_fn=pad_collate
        )
        trainer.fit(task, train_dataloaders=train_loader)
        test_loader = DataLoader(Repeat(test, False, 1), batch_size=1, collate_fn=pad_collate)
        metrics = trainer.test(task, dataloaders=test_loader, verbose=False)[0]
        wall = time.perf_counter() - start
        row: dict[str, Any] = {"task": "spacenet-seg (real SN4 tile)", "weights": name}
        for key in ("test_miou", "test_building_iou", "test_building_f1"):
            row[key.removeprefix("test_")] = 100 * float(metrics[key])
        row["steps"] = steps
        row["seconds"] = round(wall)
        rows.append(row)
        print(f"spacenet-real {name}: {row}", file=sys.stderr)
    return {
        "dataset": {
            "name": "real SpaceNet-4 Atlanta tile (900 x 900 pan, 0.5 m, 43 buildings)",
            "split": "train on 3 quadrants, test on the bottom-right 450 x 450 quadrant",
            "building_pixels": int(mask.sum()),
        },
        "settings": _settings(
            pretrain_epochs,
            model="unet",
            patch_size=160,
            batch_size=4,
            in_channels="1 (pan; RGB weights adapted: sum of the kernels)",
            normalisation=f"mean {stats.mean[0]:.4f} std {stats.std[0]:.4f}",
        ),
        "notes": [
            SMOKE_NOTE.replace("a few hundred generated images", "one real tile"),
            "Buildings are about 4 % of the pixels: when a run predicts background everywhere, "
            "mIoU is half the background IoU and building IoU is 0.",
        ],
        "results": rows,
        "command": [f"python -m benchmarks.downstream spacenet-real --steps {steps}"],
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
    parser.add_argument("task", choices=["fmow", "xview", "spacenet", "spacenet-real"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geossl-downstream"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200, help="spacenet-real: training steps")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.task == "fmow":
        data = run_fmow(args.workdir, args.epochs, args.pretrain_epochs, args.seed)
    elif args.task == "xview":
        data = run_xview(args.workdir, args.epochs, args.pretrain_epochs, args.seed)
    elif args.task == "spacenet":
        data = run_spacenet(args.workdir, args.epochs, args.pretrain_epochs, args.seed)
    else:
        data = run_spacenet_real(args.workdir, args.steps, args.pretrain_epochs, args.seed)
    data = {"machine": machine(), **data, "wall_s": round(time.perf_counter() - start)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"downstream_{args.task.replace('-', '_')}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
