"""A callback the DDP test injects through the config: every rank saves its queue."""

from pathlib import Path

import lightning
import torch
from lightning.pytorch.callbacks import Callback


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
