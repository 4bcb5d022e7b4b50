"""What every Lightning run of the CLI shares: the default precision and a quiet start.

Imported by the LightningCLI modules only (it imports torch).
"""

import logging
import os
import warnings

import torch

__all__ = ["default_precision", "quiet_lightning", "resolve_device"]

#: Lightning's advertisement for its hosted logger, printed at every ``Trainer`` start (2.6).
_LITLOGGER_TIP = "litlogger"

#: The loggers that ``rank_zero_info`` may write to: lightning_utilities keeps one module-level
#: logger that every Lightning package replaces with its own when it is imported, and lightly
#: (``lightly.utils.benchmarking``) imports the standalone ``pytorch_lightning`` after
#: ``lightning``, so the logger of the tip depends on the import order. A filter on each
#: catches it whichever is current.
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)


def default_precision() -> str:
    """Pick the default precision: bf16 autocast on a GPU that supports it, else fp32.

    Returns:
        A ``Trainer(precision=...)`` value.
    """
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_device(name: str) -> str:
    """The ``--device`` value to use: ``auto`` is ``cuda`` when a GPU is there, else ``cpu``.

    Under torchrun (``LOCAL_RANK`` set), ``auto`` is the process's own GPU, ``cuda:LOCAL_RANK``:
    one process per GPU of the machine.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...

    Returns:
        A torch device string.
    """
    if name == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        local_rank = os.environ.get("LOCAL_RANK")
        return f"cuda:{int(local_rank) % torch.cuda.device_count()}" if local_rank else "cuda"
    return name


class _DropLitLoggerTip(logging.Filter):
    """Drop Lightning's "Tip: ... try installing litlogger" record; keep everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _LITLOGGER_TIP not in record.getMessage()


def quiet_lightning() -> None:
    """Silence what Lightning prints that is neither the user's to act on nor about the run.

    - The litlogger tip (an advertisement, at every start).
    - jsonargparse deprecations that LightningCLI 2.6 triggers (for Lightning's developers).
    - ``LightningCLI(args=...)`` while ``sys.argv`` holds the same arguments: intended here.
    - Lightning 2.6's ``_pytree`` use of an API that torch 2.14 deprecates.
    - A validation loader without ``validation_step`` (FMoWDataModule serves val images only
      when ``data.val_split`` is set, pretraining has no validation step).
    - Modules in eval mode at the start of training: a linear probe's frozen backbone keeps
      its BatchNorm statistics on purpose.

    Idempotent: the filter is added to each of Lightning's rank-zero loggers once.
    """
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    for message in (
        "LightningCLI's args parameter is intended to run",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "You passed in a `val_dataloader` but have no `validation_step`",
        r"Found \d+ module\(s\) in eval mode at the start of training",
    ):
        warnings.filterwarnings("ignore", message)
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
            logger.addFilter(_DropLitLoggerTip())
