"""``geossl demo``: generate the fMoW sample (if absent) and pretrain briefly on it (CPU).

This is the README's first command: it must work on a bare ``pip install -e .``, which
``.ci/fresh-install`` checks at a tiny size (``--locations 24 --max-steps 3``).
"""

import argparse
import sys
from pathlib import Path

__all__ = ["DEMO_LOCATIONS", "add_parser", "run", "run_demo"]

#: Locations of the generated sample: enough for the demo preset's 8 geo clusters and a few
#: batches of 32 temporal pairs per epoch.
DEMO_LOCATIONS = 160


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``geossl demo``.

    Args:
        sub: The ``geossl`` sub-parsers.
    """
    demo = sub.add_parser(
        "demo", help="generate the fMoW sample if absent and pretrain on it briefly (CPU)"
    )
    demo.add_argument(
        "--workdir", type=Path, default=Path("geossl-demo"), help="where the sample and runs go"
    )
    demo.add_argument("--locations", type=int, default=DEMO_LOCATIONS)
    demo.add_argument("--max-epochs", type=int, default=3)
    demo.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many optimiser steps (a quick check; default: no limit)",
    )


def run_demo(
    workdir: Path,
    locations: int = DEMO_LOCATIONS,
    max_epochs: int = 3,
    max_steps: int | None = None,
) -> Path:
    """Generate the fMoW sample (if absent) and pretrain the demo recipe on it.

    Args:
        workdir: Folder for the sample (``fmow-sample``) and the runs (``runs``).
        locations: Locations in the generated sample.
        max_epochs: Training epochs.
        max_steps: Stop after this many optimiser steps (None: no limit).

    Returns:
        The run folder.

    Raises:
        ValueError: If ``max_steps`` is smaller than 1.
    """
    from geossl.cli.pretrain_cli import run_pretrain
    from geossl.configs import preset_path
    from geossl.synthetic.fmow import generate_fmow_sample
    from geossl.utils.checks import check_at_least

    if max_steps is not None:
        check_at_least("--max-steps", max_steps, 1)
    sample = workdir / "fmow-sample"
    if not (sample / "train").is_dir():
        print(
            f"geossl demo: generating the fMoW sample ({locations} locations) in {sample}",
            file=sys.stderr,
        )
        generate_fmow_sample(sample, locations=locations, seed=0)
    else:
        print(f"geossl demo: reusing the fMoW sample in {sample}", file=sys.stderr)
    args = [
        "--config",
        str(preset_path("fmow_demo")),
        "--data.root",
        str(sample),
        "--trainer.max_epochs",
        str(max_epochs),
        "--trainer.logger.init_args.save_dir",
        str(workdir / "runs"),
    ]
    if max_steps is not None:
        args += ["--trainer.max_steps", str(max_steps)]
    cli = run_pretrain(args)
    run_dir = Path(str(cli.trainer.log_dir))
    ckpt = cli.trainer.checkpoint_callback
    ckpt_path = getattr(ckpt, "last_model_path", "") if ckpt is not None else ""
    print(
        f"geossl demo: done. checkpoint: {ckpt_path or run_dir}  logs: {run_dir}", file=sys.stderr
    )
    return run_dir


def run(args: argparse.Namespace) -> None:
    """Run ``geossl demo``.

    Args:
        args: The parsed arguments.
    """
    run_demo(args.workdir, args.locations, args.max_epochs, args.max_steps)
