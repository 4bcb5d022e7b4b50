"""``geossl finetune``, ``evaluate`` and ``compare``: the downstream tasks' front-ends.

One registry (``DOWNSTREAM_TASKS``) names each task, its
preset in ``configs/finetune/`` and its LightningModule. This module is standard library only,
so ``geossl --help`` and ``geossl finetune --help`` answer at once; the LightningCLI runs live
in [geossl.cli.finetune_cli][], imported when a run starts.
"""

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geossl.cli._args import split_flag, wants_help
from geossl.cli.user_errors import check_config_files

__all__ = [
    "DOWNSTREAM_TASKS",
    "DownstreamTaskSpec",
    "add_compare_parser",
    "add_evaluate_parser",
    "add_finetune_parser",
    "get_task_spec",
    "run_compare_command",
    "run_evaluate_command",
    "run_finetune_command",
]


@dataclass(frozen=True)
class DownstreamTaskSpec:
    """A downstream task of ``geossl finetune --task NAME``.

    Attributes:
        name: the ``--task`` value.
        preset: the YAML in ``configs/finetune/`` (without ``.yaml``).
        task_class: import path of the LightningModule.
        metrics: the test metrics to report, headline first (the papers' metric).
        description: one line for ``--help``.
        data_in_channels: the data module's attribute that gives the model's ``in_channels``
            (linked at instantiation, so a 13-band product needs no second flag); ``""`` when the
            preset sets ``model.init_args.in_channels`` itself.
    """

    name: str
    preset: str
    task_class: str
    metrics: tuple[str, ...]
    description: str
    data_in_channels: str = ""


#: The downstream tasks, by ``--task`` name.
DOWNSTREAM_TASKS: dict[str, DownstreamTaskSpec] = {
    spec.name: spec
    for spec in (
        DownstreamTaskSpec(
            "fmow-cls",
            "fmow-cls",
            "geossl.trainers.classification.FMoWClassificationTask",
            ("test_top1", "test_macro_f1", "test_top5"),
            "fMoW 62-way classification, full fine-tuning (top-1, macro F1)",
            data_in_channels="in_chans",
        ),
        DownstreamTaskSpec(
            "fmow-linear",
            "fmow-linear",
            "geossl.trainers.classification.FMoWClassificationTask",
            ("test_top1", "test_macro_f1", "test_top5"),
            "fMoW 62-way classification, linear probe on frozen features (top-1, macro F1)",
            data_in_channels="in_chans",
        ),
        DownstreamTaskSpec(
            "xview-det",
            "xview-det",
            "geossl.trainers.detection.XViewDetectionTask",
            ("test_map_50", "test_map"),
            "xView object detection, RetinaNet + FPN (AP50, COCO mAP)",
        ),
        DownstreamTaskSpec(
            "spacenet-seg",
            "spacenet-seg",
            "geossl.trainers.segmentation.SpaceNetSegmentationTask",
            ("test_miou", "test_building_iou", "test_building_f1"),
            "SpaceNet building segmentation (mIoU, building IoU / F1)",
        ),
    )
}


def get_task_spec(name: str) -> DownstreamTaskSpec:
    """The task called ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in DOWNSTREAM_TASKS:
        raise ValueError(f"unknown --task {name!r}: choose one of {', '.join(DOWNSTREAM_TASKS)}")
    return DOWNSTREAM_TASKS[name]


def add_finetune_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl finetune`` (listed here, parsed by LightningCLI).

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    tasks = ",".join(DOWNSTREAM_TASKS)
    sub.add_parser(
        "finetune",
        help=f"fine-tune on a downstream task: geossl finetune --task {{{tasks}}} --weights W "
        "[--data.init_args.root DIR] [LightningCLI flags]",
        add_help=False,
    )


def add_evaluate_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl evaluate``.

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    evaluate = sub.add_parser(
        "evaluate", help="test a fine-tuned checkpoint on a split: metrics JSON and a table"
    )
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint of geossl finetune")
    evaluate.add_argument("--task", choices=list(DOWNSTREAM_TASKS), default=None)
    evaluate.add_argument("--split", default=None, help="split to test (default: the run's)")
    evaluate.add_argument("--root", default=None, help="dataset root (default: the run's)")
    evaluate.add_argument("--batch-size", type=int, default=None)
    evaluate.add_argument("--num-workers", type=int, default=None)
    evaluate.add_argument(
        "--output", type=Path, default=None, help="folder for metrics.json (default: eval-SPLIT)"
    )
    evaluate.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default)")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace the metrics.json of an earlier run"
    )


def add_compare_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl compare`` (listed here, parsed by LightningCLI).

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    sub.add_parser(
        "compare",
        help="fine-tune from several weights with the same settings and print the table: "
        "geossl compare --task T --weights random imagenet run.ckpt [LightningCLI flags]",
        add_help=False,
    )


def _task_and_weights(argv: Sequence[str], command: str) -> tuple[str, str | None, list[str]]:
    """``--task`` and ``--weights`` of finetune/compare, and the LightningCLI rest."""
    task, rest = split_flag(argv, "--task", "--task fmow-linear")
    weights, rest = split_flag(rest, "--weights", "--weights random")
    if task is None:
        if wants_help(rest):
            print(
                f"usage: geossl {command} --task {{{','.join(DOWNSTREAM_TASKS)}}} --weights W "
                "[LightningCLI flags]\n\n"
                + "\n".join(f"  {s.name:<14}{s.description}" for s in DOWNSTREAM_TASKS.values())
                + f"\n\ngeossl {command} --task NAME --help lists the task's flags."
            )
            raise SystemExit(0)
        raise ValueError(f"geossl {command} needs --task, one of {', '.join(DOWNSTREAM_TASKS)}")
    get_task_spec(task)  # an unknown name fails before Lightning loads
    check_config_files(rest)  # so does a --config that is not YAML, naming the file
    return task, weights, rest


def run_finetune_command(argv: list[str]) -> None:
    """Run ``geossl finetune``.

    Args:
        argv: The arguments after ``finetune``.
    """
    task, weights, rest = _task_and_weights(argv, "finetune")
    from geossl.cli.finetune_cli import run_finetune

    result = run_finetune(task, weights, rest)
    print(result.table(get_task_spec(task).metrics))
    print(f"metrics: {result.metrics_path}   best checkpoint: {result.checkpoint}")
    if result.loss_curve is not None:
        print(f"loss curve: {result.loss_curve}")


def run_compare_command(argv: list[str]) -> None:
    """Run ``geossl compare``: one fine-tuning per ``--weights`` value, then the table.

    Args:
        argv: The arguments after ``compare``.
    """
    task, first, rest = _task_and_weights(argv, "compare")
    weights = [first] if first is not None else []
    # --weights takes several values: the ones that follow it up to the next flag.
    output, rest = split_flag(rest, "--output", "--output comparison/")
    while rest and not rest[0].startswith("-"):
        weights.append(rest.pop(0))
    from geossl.cli.finetune_cli import format_comparison, run_compare

    results = run_compare(task, weights, rest, output=output)
    print(format_comparison(results, get_task_spec(task).metrics))
    if output is not None:
        print(f"table: {Path(output) / 'comparison.md'}")


def run_evaluate_command(args: argparse.Namespace) -> None:
    """Run ``geossl evaluate``.

    Args:
        args: The parsed arguments.
    """
    from geossl.cli.finetune_cli import run_evaluate

    data: dict[str, object] = {}
    for key, value in (
        ("root", args.root),
        ("batch_size", args.batch_size),
        ("num_workers", args.num_workers),
    ):
        if value is not None:
            data[key] = value
    result = run_evaluate(
        args.checkpoint,
        task=args.task,
        split=args.split,
        data=data,
        output=args.output,
        accelerator=args.accelerator,
        overwrite=args.overwrite,
    )
    print(result.table(get_task_spec(result.task).metrics))
    print(f"metrics: {result.metrics_path}")
