"""Every shipped preset and ablation config parses, builds its task and trains one step."""

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from geossl.trainers import GeoSSLTask

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = sorted((REPO / "configs" / "pretrain" / "ablations").glob("*.yaml"))
PRESETS = sorted((REPO / "configs" / "pretrain").glob("*.yaml"))

# Small sizes on top of each config's model section: a CPU step takes a fraction of a second.
TINY: dict[str, Any] = {
    "backbone": "resnet18",
    "queue_size": 64,
    "proj_hidden_dim": 64,
    "proj_dim": 32,
    "crop_size": 64,
    "num_geo_clusters": 4,
    "channels_last": False,
}


def test_ablation_rows_are_all_there() -> None:
    names = {p.stem for p in ABLATIONS}
    assert {"moco", "tp", "geo", "tp_geo", "tp_geo_co2", "tp_geo_scrl", "all"} <= names


@pytest.mark.parametrize("path", PRESETS + ABLATIONS, ids=lambda p: p.stem)
def test_config_builds_and_steps(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model_args = {**config.get("model", {}), **TINY}
    task = GeoSSLTask(**model_args)
    task.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    torch.manual_seed(0)
    batch = {
        "image": torch.randint(0, 256, (4, 2, 3, 72, 72), dtype=torch.uint8),
        "geo_label": torch.randint(0, 4, (4,)),
    }
    loss = task.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in task.backbone.parameters() if p.grad is not None]
    assert grads, f"{path.name}: no gradient reached the backbone"


FINETUNE_PRESETS = sorted((REPO / "configs" / "finetune").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS + FINETUNE_PRESETS, ids=lambda p: p.stem)
def test_presets_use_the_progress_bars_without_v_num(path: Path) -> None:
    # Lightning's bars show the logger's version as `v_num: 0.000`; geossl's drop it.
    callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
    bars = [c["class_path"] for c in callbacks if "ProgressBar" in c["class_path"]]
    assert bars in (
        ["geossl.trainers.callbacks.RichProgressBar"],
        ["geossl.trainers.callbacks.TQDMProgressBar"],
    ), bars


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_presets_open_with_a_one_line_summary(path: Path) -> None:
    # `geossl pretrain --help` lists the presets by their first comment line.
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ")
    assert 20 < len(first) <= 80, first
