"""The ablation that decides the default recipe: every term, real labelled scenes, several seeds.

Each condition is pretrained at one budget (ResNet-18, 64 px views of 96 px images, batch 32,
``--epochs`` epochs, the ``fmow_demo`` optimiser) and its frozen backbone is scored by
``geossl probe`` (:func:`geossl.evaluation.probe.run_probe`: weighted kNN k = 20 and the
logistic-regression probe) on SIRI-WHU (``../shared/data/real/siri_whu``, 2,393 real aerial
scenes, 12 classes), at 64 px, on the probe's seeded stratified split (seed 0).

Two tracks, one table:

* ``siri_whu``: pretraining on the SIRI-WHU images *outside* the probe's test split
  (``ScenesDataModule(holdout_seed=0)``: 1,914 images, labels unused). The positives are two views
  of one image, so this track measures what applies to single images: random init, torchgeo's
  ``MoCoTask`` (version 2) at the same backbone, views, batch, epochs, queue, temperature and
  learning rate, geossl ``moco``, ``+co2`` at several alpha, ``+scrl``, and both.
* ``naip``: pretraining on the real NAIP North Dakota stack (10 dates 2009-2020, RGB bands,
  ``RasterTimeSeriesDataModule``), where temporal positives and geo clusters exist: ``moco``,
  ``tp``, ``tp_geo`` and the terms on top; probed on SIRI-WHU as well (aerial RGB to aerial RGB),
  so the two tracks share one measure.

Every run writes ``{workdir}/runs/{track}/{condition}/seed{S}/result.json``; a rerun skips what is
there, so the harness resumes where it stopped (across sessions: keep ``--workdir``).
``benchmarks/results/ablation_siri_whu.json`` gets one row per condition (mean and spread over
seeds) and ``python -m benchmarks.update_docs`` renders it into docs/ablation.md.

Usage (from the repository root)::

    python -m benchmarks.ablation_scenes --epochs 10 --seeds 0 1
    python -m benchmarks.ablation_scenes --epochs 10 --seeds 0 1 --conditions moco moco_co2_a1
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.ablation import cpu_run_info

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASE_CONFIG = REPO / "configs" / "pretrain" / "fmow_demo.yaml"
REAL = REPO.parent / "shared" / "data" / "real"
SCENES = REAL / "siri_whu"
NAIP = REAL / "timeseries" / "naip_north_dakota"

BACKBONE = "resnet18"
#: Images are resized to IMAGE_SIZE; the random views are VIEW_SIZE crops of them.
IMAGE_SIZE = 96
VIEW_SIZE = 64
BATCH_SIZE = 32
#: The probe's split seed; pretraining on siri_whu leaves that split's test images out.
PROBE_SEED = 0
#: SCRL's 32 px minimum box side is half of a 64 px view; 16 px keeps boxes in most intersections.
SCRL_SMALL_VIEWS = {"min_size": 16.0}
#: NAIP pairs per epoch (half the siri_whu track's images: the stack is one small quarter-quad).
NAIP_PAIRS = 960


@dataclass(frozen=True)
class Condition:
    """One row of the ablation.

    Attributes:
        name: the row's name.
        track: ``siri_whu`` or ``naip`` (what it is pretrained on).
        kind: ``random`` (no training), ``torchgeo`` (torchgeo's MoCoTask) or ``geossl``.
        losses: GeoSSLTask loss weights.
        loss_options: GeoSSLTask loss options.
        temperature: the InfoNCE temperature when it is not the base config's (0.02).
    """

    name: str
    track: str
    kind: str = "geossl"
    losses: Mapping[str, float] = field(default_factory=dict)
    loss_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    temperature: float | None = None

    @property
    def described(self) -> str:
        """The losses as ``tp 1, geo 1, co2 0.3``."""
        if self.kind != "geossl":
            if self.kind == "random":
                return "-"
            return f"torchgeo MoCoTask v2, T {self.temperature or 0.02:g}"
        return ", ".join(f"{k} {v:g}" for k, v in self.losses.items())


def _co2(alpha: float, base: Mapping[str, float], track: str, prefix: str) -> Condition:
    return Condition(f"{prefix}_co2_a{alpha:g}", track, losses={**base, "co2": alpha})


#: The CO2 consistency weights measured (alpha = 10 was the unverified default).
CO2_ALPHAS = (0.3, 1.0, 3.0, 10.0)

CONDITIONS: tuple[Condition, ...] = (
    Condition("random init", "siri_whu", kind="random"),
    Condition("torchgeo MoCoTask", "siri_whu", kind="torchgeo"),
    # MoCo-v2's own temperature: a fairer second point for torchgeo's task (little learnt at 0.02).
    Condition("torchgeo MoCoTask T0.2", "siri_whu", kind="torchgeo", temperature=0.2),
    Condition("moco", "siri_whu", losses={"moco": 1.0}),
    *(_co2(a, {"moco": 1.0}, "siri_whu", "moco") for a in CO2_ALPHAS),
    Condition("moco_scrl", "siri_whu", losses={"moco": 1.0, "scrl": 1.0}),
    # Every term that applies to single images, CO2 at the best alpha of the sweep above.
    Condition("moco_co2_a0.3_scrl", "siri_whu", losses={"moco": 1.0, "co2": 0.3, "scrl": 1.0}),
    Condition("naip moco", "naip", losses={"moco": 1.0}),
    Condition("naip tp", "naip", losses={"tp": 1.0}),
    Condition("naip tp_geo", "naip", losses={"tp": 1.0, "geo": 1.0}),
    Condition("naip tp_geo_co2_a0.3", "naip", losses={"tp": 1.0, "geo": 1.0, "co2": 0.3}),
    # The default less one term each (the default less co2 is ``naip tp_geo``): each term on by
    # default must pay over the default without it.
    Condition("naip moco_geo_co2_a0.3", "naip", losses={"moco": 1.0, "geo": 1.0, "co2": 0.3}),
    Condition("naip tp_co2_a0.3", "naip", losses={"tp": 1.0, "co2": 0.3}),
    Condition("naip tp_geo_scrl", "naip", losses={"tp": 1.0, "geo": 1.0, "scrl": 1.0}),
    # tp does not pay (the default less tp is above the default): the leave-one-out of the
    # candidate default moco + geo + co2.
    Condition("naip moco_co2_a0.3", "naip", losses={"moco": 1.0, "co2": 0.3}),
    Condition("naip moco_geo", "naip", losses={"moco": 1.0, "geo": 1.0}),
)
BY_NAME = {c.name: c for c in CONDITIONS}


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def base_config(workdir: Path, epochs: int) -> Path:
    """The fmow_demo model and trainer without its data section, quiet and checkpointing last."""
    config: dict[str, Any] = yaml.safe_load(BASE_CONFIG.read_text())
    config.pop("data", None)
    config["trainer"]["max_epochs"] = epochs
    config["trainer"]["enable_progress_bar"] = False
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"save_last": True, "save_top_k": 0},
        }
    ]
    path = workdir / "base.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def data_args(track: str, workdir: Path) -> list[str]:
    """The CLI arguments of a track's data module."""
    if track == "siri_whu":
        return [
            "--data",
            "ScenesDataModule",
            "--data.root",
            str(SCENES),
            "--data.image_size",
            str(IMAGE_SIZE),
            "--data.batch_size",
            str(BATCH_SIZE),
            "--data.holdout_seed",
            str(PROBE_SEED),
        ]
    return [
        "--data",
        "RasterTimeSeriesDataModule",
        "--data.paths",
        f"[{NAIP}]",
        "--data.bands",
        "[1, 2, 3]",
        "--data.patch_size",
        str(IMAGE_SIZE),
        "--data.length",
        str(NAIP_PAIRS),
        "--data.batch_size",
        str(BATCH_SIZE),
        "--data.num_workers",
        "1",
        "--data.num_geo_clusters",
        "8",
        "--data.geo_cluster_points",
        "2000",
        "--data.cache_dir",
        str(workdir / "cache"),
    ]


def condition_config(condition: Condition, folder: Path) -> Path:
    """The condition's model section (losses, options, SCRL's small-view box size)."""
    options = {k: dict(v) for k, v in condition.loss_options.items()}
    if "scrl" in condition.losses:
        options["scrl"] = {**options.get("scrl", {}), **SCRL_SMALL_VIEWS}
    model: dict[str, Any] = {"losses": dict(condition.losses)}
    if options:
        model["loss_options"] = options
    path = folder / "condition.yaml"
    path.write_text(yaml.safe_dump({"model": model}, sort_keys=False))
    return path


def pretrain_geossl(
    condition: Condition, seed: int, folder: Path, base: Path, workdir: Path
) -> tuple[Path, str, dict[str, float]]:
    """Train through ``python -m geossl pretrain``; return the checkpoint, command, last metrics."""
    args = [
        sys.executable,
        "-m",
        "geossl",
        "pretrain",
        "--config",
        str(base),
        *data_args(condition.track, workdir),
        "--config",
        str(condition_config(condition, folder)),
        "--seed_everything",
        str(seed),
        "--trainer.logger.init_args.save_dir",
        str(folder),
        "--trainer.logger.init_args.name",
        "log",
        "--trainer.logger.init_args.version",
        "run",
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{condition.name} seed {seed}: pretraining failed:\n{done.stderr[-3000:]}"
        )
    ckpt = folder / "log" / "run" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RuntimeError(f"{condition.name}: no checkpoint at {ckpt}")
    command = shlex.join(["python", *args[1:]]).replace(f"{REPO}/", "")
    return ckpt, command, last_metrics(folder / "log" / "run" / "metrics.csv")


def last_metrics(csv_path: Path, prefix: str = "train/") -> dict[str, float]:
    """The last logged value of every ``{prefix}*`` metric of a CSVLogger file (prefix dropped)."""
    import csv

    last: dict[str, float] = {}
    if not csv_path.is_file():
        return last
    with csv_path.open(newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if key.startswith(prefix) and value not in ("", None):
                    last[key.removeprefix(prefix)] = round(float(value), 4)
    return last


def pretrain_torchgeo(
    condition: Condition, seed: int, epochs: int, folder: Path
) -> tuple[Path, str, dict[str, float]]:
    """torchgeo's MoCoTask (v2) on the same batches; its backbone saved with a geossl ``.json``.

    Its own augmentations (kornia: random resized crop to ``VIEW_SIZE``, colour jitter, grayscale,
    blur, flips) take the images in ``[0, 1]`` without normalisation, so the exported backbone
    records ``mean = 0, std = 1``. Everything else is geossl's base: the same projection sizes,
    queue (memory bank), temperature, momentum encoder rate, SGD lr / momentum / weight decay;
    its schedule is its own (step decay at epochs 120 / 160, i.e. constant here).
    """
    import lightning.pytorch as pl

    from geossl.datamodules import ScenesDataModule
    from geossl.utils.torchgeo_tasks import MoCoTask

    demo: dict[str, Any] = yaml.safe_load(BASE_CONFIG.read_text())["model"]

    class MoCoTaskOnPairs(MoCoTask):
        """MoCoTask fed with the first image of geossl's ``[B, 2, C, H, W]`` uint8 pairs."""

        def training_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            image = batch["image"][:, 0].float() / 255.0
            return super().training_step({"image": image}, batch_idx, dataloader_idx)

    pl.seed_everything(seed, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its hyper-parameter advice
        task = MoCoTaskOnPairs(
            model=BACKBONE,
            in_channels=3,
            version=2,
            layers=2,
            hidden_dim=demo["proj_hidden_dim"],
            output_dim=demo["proj_dim"],
            lr=demo["lr"],
            weight_decay=1e-4,
            momentum=0.9,
            temperature=condition.temperature or demo["temperature"],
            memory_bank_size=demo["queue_size"],
            moco_momentum=0.999,
            size=VIEW_SIZE,
        )
    data = ScenesDataModule(
        SCENES, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, holdout_seed=PROBE_SEED
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(folder, name="log", version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=5,
    )
    trainer.fit(task, datamodule=data)
    weights = folder / "backbone.pth"
    torch.save(task.backbone.state_dict(), weights)
    metadata = {
        "backbone": BACKBONE,
        "in_chans": 3,
        "bands": ["red", "green", "blue"],
        "normalization": {"scale": 1 / 255, "mean": [0.0] * 3, "std": [1.0] * 3},
        "image_size": VIEW_SIZE,
        "method": "torchgeo-moco-v2",
    }
    weights.with_suffix(".json").write_text(json.dumps(metadata, indent=2))
    command = (
        f"python -m benchmarks.ablation_scenes --conditions 'torchgeo MoCoTask' --seeds {seed}"
    )
    # MoCoTask logs train_loss and train_ssl_std (its collapse monitor).
    metrics = last_metrics(folder / "log" / "version_0" / "metrics.csv", prefix="train_")
    return weights, command, metrics


def probe(weights: str, seed: int) -> dict[str, float]:
    """``geossl probe`` of the weights on SIRI-WHU at ``VIEW_SIZE`` px (split seed PROBE_SEED)."""
    from geossl.evaluation.probe import run_probe

    result = run_probe(
        weights,
        SCENES,
        dataset="folder",
        backbone=BACKBONE if weights == "random" else None,
        image_size=VIEW_SIZE,
        seed=PROBE_SEED,
        init_seed=seed,
        progress=False,
    )
    return {"knn_top1": result.knn_top1, "linear_top1": result.linear_top1}


def run_condition(condition: Condition, seed: int, epochs: int, workdir: Path) -> dict[str, Any]:
    """Train and probe one condition at one seed, or read the result of an earlier run."""
    folder = workdir / "runs" / condition.track / _slug(condition.name) / f"seed{seed}"
    result_path = folder / "result.json"
    if result_path.is_file():
        stored: dict[str, Any] = json.loads(result_path.read_text())
        if stored.get("epochs") == epochs or condition.kind == "random":
            return stored
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    command = ""
    if condition.kind == "random":
        weights = "random"
    elif condition.kind == "torchgeo":
        path, command, metrics = pretrain_torchgeo(condition, seed, epochs, folder)
        weights = str(path)
    else:
        path, command, metrics = pretrain_geossl(
            condition, seed, folder, base_config(workdir, epochs), workdir
        )
        weights = str(path)
    train_s = time.perf_counter() - start
    result = {
        "condition": condition.name,
        "seed": seed,
        "epochs": epochs,
        "train_s": round(train_s, 1),
        **probe(weights, seed),
        "last_metrics": metrics,
        "command": command,
    }
    partial = result_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(result_path)
    return result


def summarise(condition: Condition, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One table row: mean and spread (half the min-max range) over the seeds."""

    def mean_spread(key: str) -> tuple[float, float]:
        values = [100.0 * float(r[key]) for r in runs]
        return statistics.fmean(values), (max(values) - min(values)) / 2.0

    knn, knn_spread = mean_spread("knn_top1")
    linear, linear_spread = mean_spread("linear_top1")
    return {
        "pretrained on": condition.track if condition.kind != "random" else "-",
        "condition": condition.name.removeprefix("naip "),
        "losses": condition.described,
        "seeds": len(runs),
        "knn_top1 %": round(knn, 1),
        "knn ±": round(knn_spread, 1),
        "linear_top1 %": round(linear, 1),
        "linear ±": round(linear_spread, 1),
        "train_s": round(statistics.fmean(float(r["train_s"]) for r in runs), 0),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or resume) the conditions and write ``benchmarks/results/ablation_siri_whu.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--conditions", nargs="+", default=[c.name for c in CONDITIONS], choices=list(BY_NAME)
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geossl-ablation-scenes"))
    args = parser.parse_args(argv)
    if not SCENES.is_dir():
        raise SystemExit(f"{SCENES}: SIRI-WHU is absent (see ../shared/data/real/README.md)")
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    for name in args.conditions:
        for seed in args.seeds:
            result = run_condition(BY_NAME[name], seed, args.epochs, workdir)
            print(
                f"[{name} seed {seed}] knn {result['knn_top1']:.4f} linear "
                f"{result['linear_top1']:.4f} ({result['train_s']} s)",
                file=sys.stderr,
                flush=True,
            )
    write_summary(workdir, args.epochs)


def write_summary(workdir: Path, epochs: int) -> Path:
    """Collect every finished run at ``epochs`` into the results JSON (in table order)."""
    rows, commands = [], []
    for condition in CONDITIONS:
        folder = workdir / "runs" / condition.track / _slug(condition.name)
        runs = [
            json.loads(p.read_text())
            for p in sorted(folder.glob("seed*/result.json"))
            if condition.kind == "random" or json.loads(p.read_text()).get("epochs") == epochs
        ]
        if runs:
            rows.append(summarise(condition, runs))
            commands += [r["command"] for r in runs[:1] if r.get("command")]
    out = {
        **cpu_run_info(),
        "dataset": {
            "probe": "SIRI-WHU 2,393 scenes, 12 classes, stratified 60/20/20 split seed 0, "
            f"{VIEW_SIZE} px, kNN k=20 (bank train+val) and linear (C on val), test top-1",
            "siri_whu": "pretraining on the 1,914 SIRI-WHU images outside the probe's test split",
            "naip": f"pretraining on NAIP North Dakota RGB, 10 dates, {NAIP_PAIRS} pairs/epoch",
        },
        "settings": {
            "backbone": BACKBONE,
            "image": f"{IMAGE_SIZE} px",
            "views": f"{VIEW_SIZE} px",
            "batch": BATCH_SIZE,
            "epochs": epochs,
            "base config": str(BASE_CONFIG.relative_to(REPO)),
            "scrl min_size": SCRL_SMALL_VIEWS["min_size"],
        },
        "notes": [
            "± is half the range over the seeds (the seeds change the initialisation, the views "
            "and the batch order; the probe split is fixed)."
        ],
        "command": [f"python -m benchmarks.ablation_scenes --epochs {epochs} --seeds 0 1"],
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "ablation_siri_whu.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path


if __name__ == "__main__":
    main()
