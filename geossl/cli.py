"""``geossl pretrain``: the LightningCLI that trains a :class:`~geossl.trainers.GeoSSLTask`.

Everything after ``geossl pretrain`` is LightningCLI syntax (``--trainer.max_epochs 5``,
``--model.losses '{tp: 1}'``,
``--data.root DIR``, ``--config run.yaml``); ``--dataset NAME`` prepends the preset
``configs/pretrain/NAME.yaml`` so
that later ``--config`` files and flags override it, and ``--ckpt_path`` resumes a run.
"""

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from geossl.configs import preset_path
from geossl.datamodules.fmow import FMoWDataModule
from geossl.trainers.callbacks import RunSummary
from geossl.trainers.pretrain import GeoSSLTask


def default_precision() -> str:
    """Pick the default precision: bf16 autocast on a GPU that supports it, else fp32."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class GeoSSLCLI(LightningCLI):
    """LightningCLI with geossl's data-to-model links and a ``--ckpt_path`` to resume."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's geo-cluster count and band count into the model, and add ``--ckpt_path``.

        Args:
            parser: The parser LightningCLI builds.
        """
        parser.link_arguments("data.num_geo_clusters", "model.num_geo_clusters")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Checkpoint to resume: weights, optimizer, schedule, epoch and the MoCo queue.",
        )


def build_args(argv: Sequence[str], dataset: str | None) -> list[str]:
    """Turn ``geossl pretrain`` arguments into LightningCLI arguments.

    Args:
        argv: The arguments after ``pretrain`` without ``--dataset``.
        dataset: The preset name from ``--dataset``, or None.

    Returns:
        The argument list for :class:`GeoSSLCLI`, the preset first so that everything else
        overrides it.
    """
    args = list(argv)
    if dataset is not None:
        args = ["--config", str(preset_path(dataset)), *args]
    return args


def run_pretrain(args: Sequence[str] | None = None) -> GeoSSLCLI:
    """Parse the arguments, build the trainer, model and data, and fit.

    Args:
        args: LightningCLI arguments; None reads ``sys.argv`` (as the ``geossl`` script does).

    Returns:
        The CLI object (tests read ``cli.trainer`` and ``cli.model`` from it).
    """
    # LightningCLI 2.6 calls jsonargparse APIs that 4.49 deprecates: those warnings are for
    # Lightning's developers, not for someone starting a run.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    # FMoWDataModule serves val images only when data.val_split is set; pretraining has no
    # validation step, so Lightning's notice that it skips the val loop says nothing useful.
    warnings.filterwarnings(
        "ignore", "You passed in a `val_dataloader` but have no `validation_step`"
    )
    # `geossl pretrain` passes its own argument list while sys.argv also holds it: intended.
    warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended to run")
    # lightning 2.6's _pytree uses an API that torch 2.14 deprecates: harmless, and not the user's.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    cli_args: list[str] | None = None if args is None else list(args)
    trainer_defaults: dict[str, Any] = {
        "precision": default_precision(),
        "callbacks": [RunSummary()],
    }
    cli = GeoSSLCLI(
        GeoSSLTask,
        FMoWDataModule,
        args=cli_args,
        run=False,
        trainer_defaults=trainer_defaults,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "geossl pretrain",
            "description": "Pretrain a backbone (LightningCLI).",
        },
    )
    ckpt_path = cli.config.get("ckpt_path")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli
