"""geossl's progress bars: Lightning's, without the logger's ``v_num``."""

from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from geossl.trainers.callbacks import RichProgressBar, TQDMProgressBar


@pytest.mark.parametrize(
    ("ours", "lightnings"),
    [
        (RichProgressBar, callbacks.RichProgressBar),
        (TQDMProgressBar, callbacks.TQDMProgressBar),
    ],
)
def test_progress_bar_items_have_no_version(
    tmp_path: Path, ours: type[callbacks.ProgressBar], lightnings: type[callbacks.ProgressBar]
) -> None:
    class LogsLoss(BoringModel):
        def training_step(self, batch: torch.Tensor, batch_idx: int) -> Any:
            out: Any = super().training_step(batch, batch_idx)
            self.log("loss", out["loss"], prog_bar=True)
            return out

    items = {}
    for bar in (ours, lightnings):
        model = LogsLoss()
        trainer = lightning.Trainer(
            max_steps=1,
            logger=CSVLogger(tmp_path),
            callbacks=[bar()],
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(model)
        items[bar] = trainer.progress_bar_callback.get_metrics(trainer, model)  # type: ignore[union-attr]
    assert "v_num" in items[lightnings]  # what the presets showed as `v_num: 0.000`
    assert "v_num" not in items[ours]
    assert "loss" in items[ours]
