"""A callback the resume tests inject through the config: kill -9 the run after a checkpoint."""

import os
import signal

import lightning
from lightning.pytorch.callbacks import Callback


class KillAfterStep(Callback):
    """SIGKILL the process when step ``step + 1`` starts, the checkpoint of ``step`` written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        batch: object,
        batch_idx: int,
    ) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
