"""The deciding ablation's harness: resumes from finished runs, summarises seeds, writes configs."""

import json
from pathlib import Path

import pytest
import yaml

from benchmarks import ablation_scenes
from benchmarks.ablation_scenes import (
    BY_NAME,
    CONDITIONS,
    condition_config,
    run_condition,
    summarise,
)


def test_the_issue_rows_are_all_there() -> None:
    names = {c.name for c in CONDITIONS}
    assert {"random init", "torchgeo MoCoTask", "moco", "moco_scrl"} <= names
    assert {f"moco_co2_a{a:g}" for a in (0.3, 1, 3, 10)} <= names
    assert {"naip moco", "naip tp", "naip tp_geo"} <= names
    assert all(c.track in ("siri_whu", "naip") for c in CONDITIONS)
    # Single images have no second date and no place: tp and geo only on the time series.
    assert not any({"tp", "geo"} & set(c.losses) for c in CONDITIONS if c.track == "siri_whu")


def test_a_finished_run_is_read_back_not_retrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "runs" / "siri_whu" / "moco" / "seed1"
    folder.mkdir(parents=True)
    stored = {"condition": "moco", "seed": 1, "epochs": 10, "knn_top1": 0.5, "linear_top1": 0.6}
    (folder / "result.json").write_text(json.dumps(stored))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("retrained a finished run")

    monkeypatch.setattr(ablation_scenes, "pretrain_geossl", fail)
    assert run_condition(BY_NAME["moco"], 1, 10, tmp_path) == stored
    # Another budget is another run.
    with pytest.raises(AssertionError, match="retrained"):
        run_condition(BY_NAME["moco"], 1, 20, tmp_path)


def test_summary_is_the_mean_and_half_range_over_seeds() -> None:
    runs = [
        {"knn_top1": 0.40, "linear_top1": 0.50, "train_s": 100.0},
        {"knn_top1": 0.46, "linear_top1": 0.52, "train_s": 120.0},
    ]
    row = summarise(BY_NAME["moco_co2_a1"], runs)
    assert row["knn_top1 %"] == pytest.approx(43.0)
    assert row["knn ±"] == pytest.approx(3.0)
    assert row["linear_top1 %"] == pytest.approx(51.0)
    assert row["linear ±"] == pytest.approx(1.0)
    assert row["losses"] == "moco 1, co2 1"
    assert row["seeds"] == 2


def test_condition_config_sets_small_scrl_boxes(tmp_path: Path) -> None:
    config = yaml.safe_load(condition_config(BY_NAME["moco_scrl"], tmp_path).read_text())
    assert config == {
        "model": {
            "losses": {"moco": 1.0, "scrl": 1.0},
            "loss_options": {"scrl": {"min_size": 16.0}},
        }
    }
