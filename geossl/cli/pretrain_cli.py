"""The LightningCLI of ``geossl pretrain``, which trains a `GeoSSLTask`.

Everything after ``geossl pretrain`` is LightningCLI syntax (``--trainer.max_epochs 5``,
``--model.losses '{tp: 1}'``,
``--data.root DIR``, ``--config run.yaml``); ``--dataset NAME`` prepends the preset
``configs/pretrain/NAME.yaml`` so
that later ``--config`` files and flags override it, and ``--ckpt_path`` resumes a run.

The ``data`` section takes any LightningDataModule (``class_path``/``init_args``) that exposes
``in_chans``, and ``num_geo_clusters`` when it has locations (the rasters preset names
``RasterTimeSeriesDataModule``, the scenes preset ``ScenesDataModule``, which has none);
without a ``class_path`` anywhere it is `DEFAULT_DATAMODULE` (fMoW), so ``data: {root:
...}`` and ``--data.root`` keep working
([`data_class_path`][geossl.cli.pretrain_cli.data_class_path]).
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from geossl import datamodules
from geossl.cli.pretrain import DEFAULT_DATAMODULE
from geossl.cli.resume import continue_run_folder
from geossl.cli.runtime import default_precision, quiet_lightning
from geossl.configs import preset_path
from geossl.trainers.callbacks import RunSummary
from geossl.trainers.checkpoint_io import use_atomic_checkpoints
from geossl.trainers.interrupts import InterruptCheckpoint
from geossl.trainers.loss_curve import LossCurve
from geossl.trainers.normalization import data_band_statistics, rounded
from geossl.trainers.pretrain import GeoSSLTask
from geossl.weights.reading import reading_checkpoint


class GeoSSLCLI(LightningCLI):
    """LightningCLI with geossl's data-to-model links and a ``--ckpt_path`` to resume.

    Args:
        *args: LightningCLI's positional arguments.
        default_datamodule: class path of the ``data`` section when no ``class_path`` is given.
        **kwargs: LightningCLI's keyword arguments.
    """

    def __init__(
        self, *args: Any, default_datamodule: str = DEFAULT_DATAMODULE, **kwargs: Any
    ) -> None:
        self.default_datamodule = default_datamodule
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's geo-cluster count and band count into the model, and add ``--ckpt_path``.

        Args:
            parser: The parser LightningCLI builds.
        """
        parser.set_defaults({"data": {"class_path": self.default_datamodule}})
        parser.link_arguments(
            "data", "model.num_geo_clusters", compute_fn=geo_clusters_of, apply_on="instantiate"
        )
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        # The checkpoint describes its input (band names, scale): only the data module knows it.
        parser.link_arguments(
            "data", "model.input_block", compute_fn=input_block_of, apply_on="instantiate"
        )
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Checkpoint to resume: weights, optimizer, schedule, epoch and the MoCo queue.",
        )


def input_block_of(datamodule: LightningDataModule) -> dict[str, Any] | None:
    """The data's ``input_block`` (band names, bands, scale), None if it has none."""
    block = getattr(datamodule, "input_block", None)
    return dict(block) if isinstance(block, dict) else None


def give_data_normalization(task: GeoSSLTask, datamodule: LightningDataModule) -> None:
    """Hand the data's band statistics to the task when its normalisation asks for them.

    Before fit, so the task never reaches into the trainer's data module and the logged
    hyper-parameters name the statistics from the first step.

    Args:
        task: the task (``normalization_pending`` says whether it needs them).
        datamodule: the data, with ``band_statistics(n)``.

    Raises:
        ValueError: naming ``model.mean`` / ``model.std`` when the data module has no
            ``band_statistics``.
    """
    if not task.normalization_pending:
        return
    samples = int(task.hparams["normalization_samples"])
    owner, mean, std = data_band_statistics(datamodule, samples, int(task.hparams["in_chans"]))
    task.set_normalization(mean, std)
    rank_zero_info(
        f"GeoSSLTask: per-band statistics of {owner} ({samples} samples, [0, 1] scale): "
        f"model.mean={rounded(mean)} model.std={rounded(std)}"
    )


def geo_clusters_of(datamodule: LightningDataModule) -> int:
    """The data's geo-cluster count K; 0 for data without locations (the geo loss refuses it)."""
    return int(getattr(datamodule, "num_geo_clusters", 0))


def build_args(argv: Sequence[str], dataset: str | None) -> list[str]:
    """Turn ``geossl pretrain`` arguments into LightningCLI arguments.

    Args:
        argv: The arguments after ``pretrain`` without ``--dataset``.
        dataset: The preset name from ``--dataset``, or None.

    Returns:
        The argument list for [`GeoSSLCLI`][geossl.cli.pretrain_cli.GeoSSLCLI], the preset first so
        that everything else overrides it.
    """
    args = list(argv)
    if dataset is not None:
        args = ["--config", str(preset_path(dataset)), *args]
    return args


def _class_path_in(value: Any) -> str | None:
    """``data.class_path`` of a parsed ``--config`` / ``--data`` value, if it names one."""
    data = value.get("data") if isinstance(value, dict) else None
    if isinstance(data, dict) and isinstance(data.get("class_path"), str):
        return str(data["class_path"])
    return None


def data_class_path(args: Sequence[str]) -> str:
    """The data module the arguments select: the last ``data`` ``class_path`` they give.

    It becomes the parser's default ``data.class_path``. jsonargparse keeps the init arguments a
    new ``class_path`` shares with the previous one, so with fMoW as the default every argument the
    two modules share (``batch_size``, ``seed``, ...) would silently take fMoW's default; starting
    from the selected class avoids that.

    Args:
        args: LightningCLI arguments (``--config FILE``, ``--data CLASS_OR_FILE``,
            ``--data.class_path CLASS``, also as ``--key=value``).

    Returns:
        The class path (a short name of `geossl.datamodules` made a full one),
        `DEFAULT_DATAMODULE` when none is given.
    """
    found = DEFAULT_DATAMODULE
    items = list(args)
    for i, item in enumerate(items):
        key, equals, value = item.partition("=")
        if not equals:
            value = items[i + 1] if i + 1 < len(items) else ""
        name: str | None = None
        if key == "--data.class_path" and value:
            name = value
        elif key in ("--config", "--data") and value:
            path = Path(value)
            try:
                text = path.read_text() if path.suffix in (".yaml", ".yml", ".json") else value
                parsed = yaml.safe_load(text)
            except (OSError, yaml.YAMLError):  # LightningCLI reports a bad file or value
                continue
            if key == "--config":
                name = _class_path_in(parsed)
            elif isinstance(parsed, dict):
                name = _class_path_in({"data": parsed})
            elif isinstance(parsed, str):
                name = parsed
        if name:
            found = name
    if "." not in found and found in datamodules.__all__:  # a short name, as jsonargparse allows
        found = f"geossl.datamodules.{found}"
    return found


def run_pretrain(args: Sequence[str] | None = None) -> GeoSSLCLI:
    """Parse the arguments, build the trainer, model and data, and fit.

    Args:
        args: LightningCLI arguments; None reads ``sys.argv`` (as the ``geossl`` script does).

    Returns:
        The CLI object (tests read ``cli.trainer`` and ``cli.model`` from it).
    """
    quiet_lightning()
    cli_args: list[str] | None = None if args is None else list(args)
    trainer_defaults: dict[str, Any] = {
        "precision": default_precision(),
        # LightningCLI adds these to the config's callbacks (the summary names the curve).
        "callbacks": [RunSummary(), LossCurve(), InterruptCheckpoint()],
    }
    cli = GeoSSLCLI(
        GeoSSLTask,
        LightningDataModule,
        subclass_mode_data=True,
        default_datamodule=data_class_path(sys.argv[1:] if cli_args is None else cli_args),
        args=cli_args,
        run=False,
        trainer_defaults=trainer_defaults,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            # A bad option raises (geossl's main prints it in one line) instead of the usage dump.
            "exit_on_error": False,
            "prog": "geossl pretrain",
            "description": "Pretrain a backbone (LightningCLI).",
        },
    )
    ckpt_path = cli.config.get("ckpt_path")
    use_atomic_checkpoints(cli.trainer)
    give_data_normalization(cli.model, cli.datamodule)
    continue_run_folder(cli.trainer, ckpt_path)
    # weights_only=True: a checkpoint given to resume is never unpickled (explicit, so that
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which only changes torch.load's default, cannot undo it).
    with reading_checkpoint(ckpt_path):  # a bad --ckpt_path: one line naming it
        cli.trainer.fit(
            cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True
        )
    return cli
