"""A resumed ``geossl pretrain`` logs into the run folder of its checkpoint and keeps its curve.

``--ckpt_path <save_dir>/<name>/<version>/checkpoints/last.ckpt`` with a logger of that
``save_dir`` and ``name`` and no ``version`` of its own: Lightning would start a new
``version_<n+1>``. [`continue_run_folder`][geossl.cli.resume.continue_run_folder] gives the
logger the checkpoint's version instead, so that the run's metrics, loss curve and checkpoints
stay in one folder. Lightning's CSVLogger deletes an existing ``metrics.csv`` when it opens a
folder; the rows of the steps the checkpoint holds are written back first (to a temporary name,
then renamed), and those a killed run logged after its checkpoint are dropped, since the resumed
run logs those steps again. A TensorBoard logger purges the events after the checkpoint's step.
"""

import csv
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

__all__ = ["continue_run_folder", "keep_rows_before"]

METRICS_FILE = "metrics.csv"


def _version_of(folder: str) -> int | str:
    """``version_3`` -> 3 (what the logger names it), any other name as it is."""
    number = folder.removeprefix("version_")
    return int(number) if folder.startswith("version_") and number.isdigit() else folder


def _checkpoint_step(ckpt_path: Path) -> int | None:
    """The checkpoint's ``global_step`` (memory-mapped: the tensors are not read)."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # the fit loads it again and reports what is wrong
        return None
    step = checkpoint.get("global_step") if isinstance(checkpoint, dict) else None
    return step if isinstance(step, int) else None


def keep_rows_before(path: Path, step: int) -> tuple[list[str], int]:
    """Rewrite a ``metrics.csv`` without its rows of ``step`` and later.

    Args:
        path: the CSV file (a ``step`` column).
        step: the first step to drop.

    Returns:
        The file's columns and the number of rows kept.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = path.write_text(chr(10).join(["loss,step", "3.0,0", "2.0,1", "9.0,2"]))
        >>> keep_rows_before(path, 2)
        (['loss', 'step'], 2)
        >>> path.read_text().split()
        ['loss,step', '3.0,0', '2.0,1']
    """
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        columns = list(reader.fieldnames or [])
        rows = [row for row in reader if not row.get("step") or int(row["step"]) < step]
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
    return columns, len(rows)


@rank_zero_only
def _continue_csv(logger: CSVLogger, step: int) -> None:
    """Open the CSV logger's writer on the kept rows of its existing ``metrics.csv``."""
    path = Path(logger.log_dir) / METRICS_FILE
    if not path.is_file():
        return
    columns, kept = keep_rows_before(path, step)
    aside = path.with_name(f".{path.name}.resume")
    os.replace(path, aside)  # the writer deletes a metrics.csv it finds: keep it out of its way
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists")
        writer: Any = logger.experiment
    os.replace(aside, path)
    writer.metrics_keys = sorted(columns)  # appended rows keep the header (new keys extend it)
    rank_zero_info(f"Resuming into {logger.log_dir}: {kept} rows of {path.name} kept")


def _continues(logger: Logger, run_dir: Path) -> bool:
    """Whether ``logger`` has no version of its own and logs under ``run_dir``'s parent."""
    root = getattr(logger, "root_dir", None)  # <save_dir>/<name> for Lightning's loggers
    if getattr(logger, "_version", "") is not None or root is None:
        return False
    return Path(root).resolve() == run_dir.parent.resolve()


def continue_run_folder(trainer: Trainer, ckpt_path: str | os.PathLike[str] | None) -> None:
    """Log a resumed fit into the run folder its checkpoint is in (see the module's docstring).

    Nothing changes without a checkpoint, for a checkpoint outside ``<run>/checkpoints/``, or for
    a logger given an explicit ``version`` or another ``save_dir`` / ``name``.

    Args:
        trainer: the trainer, before ``fit`` (its loggers have not opened a folder yet).
        ckpt_path: the checkpoint ``fit`` resumes from, or None.

    Example:
        >>> import tempfile
        >>> runs = Path(tempfile.mkdtemp())
        >>> (runs / "tiny" / "version_3" / "checkpoints").mkdir(parents=True)
        >>> trainer = Trainer(logger=CSVLogger(runs, name="tiny"), enable_checkpointing=False)
        >>> continue_run_folder(trainer, runs / "tiny" / "version_3" / "checkpoints" / "last.ckpt")
        >>> trainer.logger.version
        3
    """
    if ckpt_path is None or Path(ckpt_path).parent.name != "checkpoints":
        return
    run_dir = Path(ckpt_path).parent.parent
    loggers = [logger for logger in trainer.loggers if _continues(logger, run_dir)]
    if not loggers:
        return
    step = _checkpoint_step(Path(ckpt_path))
    for logger in loggers:
        logger._version = _version_of(run_dir.name)  # type: ignore[attr-defined]
        if step is None:
            continue
        if isinstance(logger, CSVLogger):
            _continue_csv(logger, step)
        elif isinstance(logger, TensorBoardLogger):
            logger._kwargs.setdefault("purge_step", step)
