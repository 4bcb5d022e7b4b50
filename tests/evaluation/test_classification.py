"""Classification report: hand-computed cases and agreement with torchmetrics."""

from pathlib import Path
from typing import Any

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from geossl.evaluation.classification import (
    classification_report,
    format_report,
    plot_confusion_matrix,
    report_from_predictions,
    report_metrics,
)


def _labels(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and predicted label vectors with ``confusion`` as their confusion matrix."""
    k = confusion.shape[0]
    cells = torch.arange(k * k).repeat_interleave(confusion.flatten().long())
    return cells // k, cells % k


def _report(confusion: torch.Tensor, names: list[str]) -> dict[str, Any]:
    return report_from_predictions(*_labels(confusion), names)


def test_hand_computed_report() -> None:
    # true a: 3 samples (2 right, 1 -> b); true b: 1 sample (-> b); true c: none, predicted never.
    confusion = torch.tensor([[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    report = _report(confusion, ["a", "b", "c"])
    assert report["top1"] == pytest.approx(3 / 4)
    a, b, c = (report["classes"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == (
        1.0,
        pytest.approx(2 / 3),
        0.8,
        3,
    )
    assert (b["precision"], b["recall"], b["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))
    assert c == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    assert report["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)  # c occurs nowhere: left out


def test_agrees_with_torchmetrics() -> None:
    generator = torch.Generator().manual_seed(0)
    k = 7
    target = torch.randint(0, k - 1, (200,), generator=generator)  # class 6 never occurs
    logits = torch.randn(200, k, generator=generator)
    logits[torch.arange(200), target] += 1.0
    predicted = logits.argmax(dim=1)
    report = report_from_predictions(target, predicted, [str(i) for i in range(k)])
    top1 = MulticlassAccuracy(k, average="micro")(logits, target)
    macro_f1 = MulticlassF1Score(k, average="macro")(logits, target)
    assert report["top1"] == pytest.approx(float(top1))
    assert report["macro_f1"] == pytest.approx(float(macro_f1), abs=1e-6)


def test_errors_table_and_plot(tmp_path: Path) -> None:
    target, predicted = _labels(torch.eye(3, dtype=torch.long))
    scores = report_metrics(3)(predicted, target)
    torch.testing.assert_close(scores["confusion"], torch.eye(3, dtype=torch.long))  # C[t, p]
    with pytest.raises(ValueError, match="square"):
        classification_report({**scores, "confusion": torch.zeros(2, 3)}, ["a", "b"])
    with pytest.raises(ValueError, match="2 class names for a 3-class"):
        classification_report(scores, ["a", "b"])
    report = _report(torch.tensor([[5, 0], [2, 3]]), ["left", "right"])
    table = format_report(report)
    assert table.splitlines()[1].startswith("right")  # worst F1 first
    assert "top-1 0.8000" in table
    png = plot_confusion_matrix(
        torch.tensor([[5, 0], [2, 3]]), ["left", "right"], tmp_path / "c.png"
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]  # no temporary file left
