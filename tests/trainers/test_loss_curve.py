"""The loss curve: the plot itself, and the callback's points through a resume."""

from pathlib import Path

import numpy as np
import pytest

from geossl.trainers.loss_curve import LossCurve, is_loss_key, plot_loss_curves
from tests.plot_helpers import assert_readable_png


def test_plot_loss_curves_writes_a_png_with_a_log_axis_when_the_values_span_decades(
    tmp_path: Path,
) -> None:
    steps = range(0, 200, 5)
    history = {
        "train_loss": [(s, 10.0 * np.exp(-s / 40)) for s in steps],
        "train/loss_moco": [(s, 5.0 * np.exp(-s / 40)) for s in steps],
        "val_loss": [(50, 3.0), (100, 0.9), (150, 0.2)],
        "train/loss_bad": [(0, float("nan"))],
    }
    path = plot_loss_curves(history, tmp_path / "runs" / "curve.png", title="t")
    assert path == tmp_path / "runs" / "curve.png"
    assert_readable_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]  # no temporary left
    empty = plot_loss_curves({}, tmp_path / "empty.png")
    assert_readable_png(empty)


def test_the_log_scale_is_chosen_by_the_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.axes import Axes

    scales: list[str] = []
    original = Axes.set_yscale

    def record(self: Axes, value: str, **kwargs: object) -> None:
        scales.append(value)
        original(self, value, **kwargs)

    monkeypatch.setattr(Axes, "set_yscale", record)
    plot_loss_curves({"train_loss": [(0, 100.0), (1, 1.0)]}, tmp_path / "a.png")
    assert scales == ["log"]
    plot_loss_curves({"train_loss": [(0, 2.0), (1, 1.0)]}, tmp_path / "b.png")
    plot_loss_curves({"train_loss": [(0, 100.0), (1, -1.0)]}, tmp_path / "c.png")
    assert scales == ["log"]


def test_loss_keys() -> None:
    assert is_loss_key("train_loss_classifier", "train")
    assert not is_loss_key("train_loss_epoch", "train")
    assert not is_loss_key("train/embedding_std", "train")
    assert is_loss_key("val_loss", "val")
    assert not is_loss_key("train_loss", "val")


def test_the_points_survive_the_checkpoint() -> None:
    curve = LossCurve()
    curve.history = {"train_loss": [(1, 2.0), (2, 1.5)]}
    restored = LossCurve()
    restored.load_state_dict(curve.state_dict())
    assert restored.history == curve.history
