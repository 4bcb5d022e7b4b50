"""Checkpoints written atomically in their own folder: never a broken ``.ckpt`` under its name.

Lightning's `TorchCheckpointIO` stages a checkpoint in the system temporary folder and
moves it into place; across file systems the move is a copy, so a full disk leaves a truncated
checkpoint under its final name, and a killed process leaves the staged copy in ``/tmp``.
[`AtomicCheckpointIO`][geossl.trainers.checkpoint_io.AtomicCheckpointIO] writes next to the
final name instead (the rule of [`atomic_output`][geossl.utils.io.atomic_output]), so the rename
is atomic and whatever ``last.ckpt`` held survives any failed save. ``ModelCheckpoint`` writes
``last.ckpt`` (``save_last: true``) and the SLURM requeue checkpoint through the same
``trainer.save_checkpoint``, so they are atomic too.
"""

from pathlib import Path
from typing import Any

import lightning
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

from geossl.utils.io import atomic_output, remove_stale_temporaries

__all__ = ["AtomicCheckpointIO", "use_atomic_checkpoints"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` that writes a temporary file in the checkpoint's folder and renames it.

    The temporary file (``.last.ckpt.PID.RANDOM.tmp``) is flushed and `os.fsync`'d before
    the rename and removed on any error; temporaries left by killed processes are removed before
    the next save of the same name. Remote paths (``s3://``, ...) keep Lightning's behaviour.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> AtomicCheckpointIO().save_checkpoint({"step": 1}, folder / "last.ckpt")
        >>> [p.name for p in folder.iterdir()]
        ['last.ckpt']
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: the state to save (what ``torch.save`` takes).
            path: the final file name.
            storage_options: not supported (as in `TorchCheckpointIO`).
        """
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)
        # Written straight to the file (not staged in memory first, as Lightning does).
        with atomic_output(final, durable=True) as tmp, open(tmp, "wb") as stream:
            torch.save(checkpoint, stream)
            stream.flush()


def use_atomic_checkpoints(trainer: lightning.Trainer) -> None:
    """Make ``trainer`` save its checkpoints atomically (`AtomicCheckpointIO`).

    Only a plain `TorchCheckpointIO` (the default) is replaced: a strategy's own format
    (sharded, XLA) or a user's plugin is kept.

    Args:
        trainer: the trainer, before ``fit``.

    Examples:
        >>> trainer = lightning.Trainer(logger=False, enable_progress_bar=False)
        >>> use_atomic_checkpoints(trainer)
        >>> type(trainer.strategy.checkpoint_io).__name__
        'AtomicCheckpointIO'
    """
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
