"""What `GeoSSLTask` logs at every training step, without a host sync."""

import torch
from lightning import LightningModule
from torch import Tensor

from geossl.trainers.terms import TermOutput

__all__ = ["log_training_step"]


def log_training_step(
    task: LightningModule,
    results: dict[str, TermOutput],
    total: Tensor,
    checked_total: float | None,
    query: Tensor,
    batch_size: int,
) -> None:
    """Log the total, every term's loss and metrics, and the collapse monitor.

    Lightning converts every ``prog_bar`` value to a Python number at the end of every step
    (``.item()``: the CPU would wait for the whole step before it prepares the next one), so the
    bar shows ``checked_total``, the total as the finiteness check read it (a CPU value), and
    ``train_loss`` goes to the loggers as a device tensor.

    Args:
        task: the module that logs.
        results: each active term's output, by name.
        total: the weighted total loss (on the device).
        checked_total: the total read by this step's finiteness check, None when not checked.
        query: the query embeddings ``[B, D]``.
        batch_size: the batch size.
    """
    task.log("train_loss", total, batch_size=batch_size)
    if checked_total is not None:
        loss_on_host = torch.tensor(checked_total)
        task.log("loss", loss_on_host, batch_size=batch_size, prog_bar=True, logger=False)
    for name, result in results.items():
        task.log(f"train/loss_{name}", result.loss.detach(), batch_size=batch_size)
        for metric, value in result.metrics.items():
            task.log(f"train/{metric}", value, batch_size=batch_size)
    # Collapse monitor: ~1/sqrt(D) for spread-out unit vectors, ~0 when collapsed.
    embedding_std = query.detach().std(dim=0).mean() if batch_size > 1 else query.new_zeros(())
    task.log("train/embedding_std", embedding_std, batch_size=batch_size)
