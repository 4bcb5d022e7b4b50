"""The LightningCLI runs of ``geossl finetune``, ``evaluate`` and ``compare``.

The task registry and the argument front-ends are in [geossl.cli.finetune][] (no torch import);
this module imports Lightning. ``finetune`` runs LightningCLI on the preset (every
``--model.init_args.*`` / ``--data.init_args.*`` / ``--trainer.*`` flag overrides it), fits,
tests the best checkpoint and writes the metrics; ``evaluate`` reloads a saved model and tests
it on a split; ``compare`` runs ``finetune`` once per weights and prints the papers' table.
"""

import importlib
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from geossl.cli.finetune import DownstreamTaskSpec, get_task_spec
from geossl.cli.runtime import default_precision, quiet_lightning
from geossl.configs import preset_path
from geossl.trainers.checkpoint_io import use_atomic_checkpoints
from geossl.trainers.interrupts import InterruptCheckpoint
from geossl.trainers.loss_curve import LossCurve, find_loss_curve
from geossl.utils.io import atomic_write_bytes
from geossl.weights.reading import check_finetuned_checkpoint, load_checkpoint, reading_checkpoint

__all__ = [
    "DownstreamCLI",
    "EvaluationResult",
    "format_comparison",
    "run_compare",
    "run_evaluate",
    "run_finetune",
]


class DownstreamCLI(LightningCLI):
    """LightningCLI that links the data's band count into the model (``data_in_channels``).

    Args:
        *args: LightningCLI's positional arguments.
        data_in_channels: the data module attribute linked to ``model.init_args.in_channels``
            (``""``: no link).
        **kwargs: LightningCLI's keyword arguments.
    """

    def __init__(self, *args: Any, data_in_channels: str = "", **kwargs: Any) -> None:
        self.data_in_channels = data_in_channels
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link ``data.<data_in_channels>`` to ``model.init_args.in_channels``; add ``--ckpt_path``.

        Args:
            parser: The parser LightningCLI builds.
        """
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Checkpoint to resume an interrupted fine-tuning run from.",
        )
        if self.data_in_channels:
            parser.link_arguments(
                f"data.{self.data_in_channels}",
                "model.init_args.in_channels",
                apply_on="instantiate",
            )


def _import_class(path: str) -> type[Any]:
    module, _, name = path.rpartition(".")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


@dataclass
class EvaluationResult:
    """What a fine-tuning or evaluation run produced.

    Attributes:
        task: the task name.
        weights: the starting weights' record (name, kind, sha256, ...).
        metrics: test metric name -> value.
        metrics_path: the JSON written.
        checkpoint: the model evaluated (None when the in-memory model was tested).
        run_dir: the run folder (fine-tuning only).
        loss_curve: the loss curve PNG in ``run_dir`` (fine-tuning only).
        report: task-specific extras (fMoW: the per-class report).
    """

    task: str
    weights: dict[str, Any]
    metrics: dict[str, float]
    metrics_path: Path | None = None
    checkpoint: Path | None = None
    run_dir: Path | None = None
    loss_curve: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def table(self, names: Sequence[str] = ()) -> str:
        """The metrics as a two-column table (the ``names`` first, then the rest)."""
        keys = [k for k in names if k in self.metrics]
        keys += sorted(k for k in self.metrics if k not in keys)
        width = max([6, *(len(k) for k in keys)])
        lines = [f"{'metric':<{width}}  value"]
        lines += [f"{k:<{width}}  {self.metrics[k]:.4f}" for k in keys]
        return "\n".join(lines)


def _scalar_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for key, value in values.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        metrics[key] = number
    return metrics


def _write_outputs(
    result: EvaluationResult, model: LightningModule, out_dir: Path, spec: DownstreamTaskSpec
) -> None:
    """Write ``metrics.json`` (and the task's report files) into ``out_dir``, atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = getattr(model, "test_report", None)
    confusion = getattr(model, "test_confusion", None)
    if isinstance(report, dict):
        result.report = report
        from geossl.evaluation.classification import format_report, plot_confusion_matrix

        atomic_write_bytes(out_dir / "report.json", json.dumps(report, indent=2).encode())
        atomic_write_bytes(out_dir / "report.txt", (format_report(report) + "\n").encode())
        if isinstance(confusion, torch.Tensor):
            names = list(report["classes"])
            plot_confusion_matrix(
                confusion, names, out_dir / "confusion_matrix.png", title=spec.name
            )
    payload = {
        "task": result.task,
        "weights": result.weights,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "metrics": result.metrics,
    }
    result.metrics_path = out_dir / "metrics.json"
    atomic_write_bytes(result.metrics_path, json.dumps(payload, indent=2).encode())


def run_finetune(
    task: str, weights: str | None = None, args: Sequence[str] | None = None
) -> EvaluationResult:
    """Fine-tune on a downstream task, then test the best checkpoint and write the metrics.

    Args:
        task: a `DOWNSTREAM_TASKS` name.
        weights: ``--weights`` (``random``, ``imagenet``, a torchgeo name or a file); None keeps
            the preset's (or the one given in ``args``).
        args: further LightningCLI arguments (``--data.init_args.root DIR``, ``--config F``,
            ``--trainer.max_epochs N``, ...).

    Returns:
        The test metrics, written to ``{run_dir}/metrics.json`` with the report files.
    """
    spec = get_task_spec(task)
    quiet_lightning()
    cli_args = ["--config", str(preset_path(spec.preset, task="finetune")), *(args or [])]
    if weights is not None:  # last, so that a --config in args cannot override it
        cli_args += ["--model.init_args.weights", str(weights)]
    cli = DownstreamCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=cli_args,
        run=False,
        data_in_channels=spec.data_in_channels,
        # LightningCLI adds these to the preset's callbacks.
        trainer_defaults={
            "precision": default_precision(),
            "callbacks": [LossCurve(), InterruptCheckpoint()],
        },
        save_config_kwargs={"overwrite": True},
        # A bad option raises (geossl's main prints it in one line) instead of the usage dump.
        parser_kwargs={"prog": f"geossl finetune --task {task}", "exit_on_error": False},
    )
    trainer, model = cli.trainer, cli.model
    use_atomic_checkpoints(trainer)
    # weights_only=True: a checkpoint given to resume is never unpickled.
    ckpt_path = cli.config.get("ckpt_path")
    trainer.fit(model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    curve = find_loss_curve(trainer)
    checkpoint = trainer.checkpoint_callback
    best = str(getattr(checkpoint, "best_model_path", "") or "") if checkpoint else ""
    with reading_checkpoint(best or None):
        tested = trainer.test(
            model,
            datamodule=cli.datamodule,
            ckpt_path=best or None,
            verbose=False,
            weights_only=True,
        )
    metrics = _scalar_metrics(tested[0] if tested else {})
    run_dir = Path(str(trainer.log_dir or "."))
    record = dict(getattr(model, "init_weights_info", None) or {})
    result = EvaluationResult(
        task,
        record,
        metrics,
        checkpoint=Path(best) if best else None,
        run_dir=run_dir,
        loss_curve=curve.path if curve is not None else None,
    )
    _write_outputs(result, model, run_dir, spec)
    return result


def run_evaluate(
    checkpoint: str | os.PathLike[str],
    *,
    task: str | None = None,
    split: str | None = None,
    data: Mapping[str, Any] | None = None,
    output: str | os.PathLike[str] | None = None,
    accelerator: str = "auto",
    overwrite: bool = False,
) -> EvaluationResult:
    """Test a fine-tuned model saved by ``geossl finetune`` on a split.

    Args:
        checkpoint: the Lightning checkpoint.
        task: the task name; None reads ``geossl_task`` from the checkpoint.
        split: the split to test (sets the data module's ``test_split``).
        data: data module arguments overriding the checkpoint's (``root``, ``batch_size``, ...).
        output: folder for ``metrics.json`` and the reports (default: next to the checkpoint,
            ``eval-{split}``).
        accelerator: Lightning accelerator.
        overwrite: replace the ``metrics.json`` of an earlier evaluation in ``output``.

    Returns:
        The metrics (also written).

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        FileExistsError: if ``output`` holds a ``metrics.json`` and ``overwrite`` is False
            (checked before testing).
        CheckpointError: if it is unsafe, truncated, a pretraining checkpoint or holds another
            model (one line naming it).
        ValueError: if the checkpoint names no task and none is given, or has no data module
            arguments.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if output is not None:  # before anything is read or tested
        _refuse_existing_metrics(Path(output), overwrite)
    saved = load_checkpoint(path)
    check_finetuned_checkpoint(saved, path)
    name = task or saved.get("geossl_task")
    if not name:
        raise ValueError(f"{path}: not a geossl fine-tuning checkpoint; pass --task")
    spec = get_task_spec(str(name))
    task_cls = _import_class(spec.task_class)
    with reading_checkpoint(path):  # a checkpoint of another task or model: one line
        model = task_cls.load_from_checkpoint(path, map_location="cpu", weights="checkpoint")
    data_hp = dict(saved.get("datamodule_hyper_parameters") or {})
    if not data_hp:
        raise ValueError(f"{path}: the checkpoint holds no data module arguments")
    # LightningCLI records the class it instantiated as `_class_path` (and other `_` keys).
    data_class = str(data_hp.get("_class_path") or _preset_data_class(spec))
    data_hp = {k: v for k, v in data_hp.items() if not k.startswith("_")}
    data_hp.update(data or {})
    if split is not None:
        data_hp["test_split"] = split
    shown_split = data_hp.get("test_split", "test")
    out_dir = Path(output) if output is not None else path.parent / f"eval-{shown_split}"
    _refuse_existing_metrics(out_dir, overwrite)
    data_cls = _import_class(data_class)
    datamodule = data_cls(**_accepted_arguments(data_cls, data_hp, path))
    quiet_lightning()
    trainer = lightning.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        precision=default_precision(),  # type: ignore[arg-type]
    )
    tested = trainer.test(model, datamodule=datamodule, verbose=False)
    result = EvaluationResult(
        spec.name,
        dict(saved.get("geossl_init_weights") or {}),
        _scalar_metrics(tested[0] if tested else {}),
        checkpoint=path,
    )
    _write_outputs(result, model, out_dir, spec)
    return result


def _refuse_existing_metrics(out_dir: Path, overwrite: bool) -> None:
    """An earlier evaluation's ``metrics.json`` is kept unless ``overwrite``."""
    if (out_dir / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / 'metrics.json'} exists; pass --overwrite to replace it")


def _accepted_arguments(
    cls: type[Any], arguments: Mapping[str, Any], source: Path
) -> dict[str, Any]:
    """The saved constructor ``arguments`` that ``cls`` still takes; warn about the others.

    A checkpoint keeps the data module's arguments of the geossl that wrote it; an argument
    removed since (``num_geo_clusters`` of the fMoW classification data, which only pretraining
    needs) must not stop the evaluation.
    """
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(arguments)
    dropped = sorted(k for k in arguments if k not in parameters)
    if dropped:
        warnings.warn(
            f"{source}: {cls.__name__} no longer takes {', '.join(dropped)}; ignored",
            UserWarning,
            stacklevel=3,
        )
    return {k: v for k, v in arguments.items() if k in parameters}


def _preset_data_class(spec: DownstreamTaskSpec) -> str:
    """The data module class path of a task's preset."""
    import yaml

    config = yaml.safe_load(preset_path(spec.preset, task="finetune").read_text())
    data = config.get("data") if isinstance(config, dict) else None
    class_path = data.get("class_path") if isinstance(data, dict) else None
    if not isinstance(class_path, str):
        raise ValueError(f"configs/finetune/{spec.preset}.yaml names no data.class_path")
    return class_path


def format_comparison(
    results: Mapping[str, EvaluationResult], metrics: Sequence[str], *, markdown: bool = False
) -> str:
    """The papers' table: one row per starting weights, one column per metric (in percent).

    Args:
        results: weights label -> result.
        metrics: the columns.
        markdown: a Markdown table instead of aligned text.

    Returns:
        The table.
    """
    labels = list(results)
    cells = [
        [
            f"{100 * r.metrics[m]:.2f}" if m in r.metrics and math.isfinite(r.metrics[m]) else "-"
            for m in metrics
        ]
        for r in results.values()
    ]
    header = ["weights", *(m.removeprefix("test_") for m in metrics)]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label, row in zip(labels, cells, strict=True):
            lines.append("| " + " | ".join([label, *row]) + " |")
        return "\n".join(lines)
    widths = [max(len(header[0]), *(len(label) for label in labels))]
    widths += [max(len(h), 6) for h in header[1:]]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    for label, row in zip(labels, cells, strict=True):
        lines.append("  ".join(v.ljust(w) for v, w in zip([label, *row], widths, strict=True)))
    return "\n".join(lines)


def run_compare(
    task: str,
    weights: Sequence[str],
    args: Sequence[str] | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
) -> dict[str, EvaluationResult]:
    """Fine-tune once per weights with the same settings and tabulate the test metrics.

    Args:
        task: a `DOWNSTREAM_TASKS` name.
        weights: the ``--weights`` values to compare (e.g. ``random imagenet run.ckpt``).
        args: LightningCLI arguments shared by every run.
        output: folder for ``comparison.json`` and ``comparison.md`` (default: none written).

    Returns:
        weights label -> result, in the given order.

    Raises:
        ValueError: if ``weights`` is empty or repeats a value.
    """
    if not weights:
        raise ValueError("geossl compare needs at least one --weights value")
    if len(set(weights)) != len(weights):
        raise ValueError(f"--weights repeats a value: {list(weights)}")
    spec = get_task_spec(task)
    results: dict[str, EvaluationResult] = {}
    for value in weights:
        print(f"geossl compare: {task} from {value}", file=sys.stderr)
        result = run_finetune(task, value, args)
        label = str(result.weights.get("name") or value)
        if label in results:  # two files with one name: tell them apart by what was typed
            label = value
        results[label] = result
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "task": task,
            "metrics": list(spec.metrics),
            "rows": [
                {"weights": label, **r.weights, "metrics": r.metrics, "run_dir": str(r.run_dir)}
                for label, r in results.items()
            ],
        }
        atomic_write_bytes(out / "comparison.json", json.dumps(payload, indent=2).encode())
        table = format_comparison(results, spec.metrics, markdown=True)
        atomic_write_bytes(out / "comparison.md", (table + "\n").encode())
    return results
