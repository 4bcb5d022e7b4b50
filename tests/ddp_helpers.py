"""A callback the DDP test injects through the config: every rank saves its queue."""

from pathlib import Path
from typing import cast

import lightning
import torch
from lightning.pytorch.callbacks import Callback

from geossl.trainers import GeoSSLTask


class DumpQueue(Callback):
    """Save each rank's MoCo queue, pointer and step to ``{output}/rank{r}.pt``."""

    def __init__(self, output: str) -> None:
        self.output = Path(output)

    def on_train_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        state = {
            k: v.detach().cpu().clone()
            for k, v in pl_module.state_dict().items()
            if k.endswith("queue") or k.endswith("ptr")
        }
        state["global_step"] = torch.tensor(trainer.global_step)
        state["world_size"] = torch.tensor(trainer.world_size)
        self.output.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.output / f"rank{trainer.global_rank}.pt")


class PoisonLoss(Callback):
    """Make one loss term return NaN on one rank at one step (the other ranks stay finite)."""

    def __init__(self, term: str, rank: int, step: int) -> None:
        self.term, self.rank, self.step = term, rank, step

    def on_fit_start(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule
    ) -> None:
        if trainer.global_rank != self.rank:
            return
        module = cast(GeoSSLTask, pl_module).loss_terms[self.term]
        original = module.forward

        def forward(*args: object) -> object:
            result = original(*args)
            if trainer.global_step == self.step:
                result.loss = result.loss * float("nan")
            return result

        module.forward = forward
