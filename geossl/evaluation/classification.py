r"""Classification reports from a confusion matrix: per-class scores, a table and a plot.

The confusion matrix ``C`` is ``[K, K]`` with ``C[t, p]`` the number of samples of true class
``t`` predicted as ``p`` (torchmetrics' ``MulticlassConfusionMatrix`` layout). Per class:

$$
\mathrm{precision}_k = \frac{C_{kk}}{\sum_t C_{tk}}, \quad
\mathrm{recall}_k = \frac{C_{kk}}{\sum_p C_{kp}}, \quad
F_{1,k} = \frac{2\, C_{kk}}{\sum_t C_{tk} + \sum_p C_{kp}}
$$

(0 where the denominator is 0). Top-1 accuracy is $\sum_k C_{kk} / \sum C$; macro F1 is
the mean of $F_{1,k}$ over the classes that occur in the targets or the predictions, the
rule of torchmetrics' ``MulticlassF1Score(average="macro")`` (a class absent from both would
otherwise count as a zero and punish small evaluation sets for the classes they lack).
"""

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from geossl.utils.io import atomic_output

__all__ = [
    "classification_report",
    "confusion_from_predictions",
    "format_report",
    "plot_confusion_matrix",
]


def _as_matrix(confusion: Tensor | npt.ArrayLike) -> npt.NDArray[np.int64]:
    matrix = confusion.cpu().numpy() if isinstance(confusion, Tensor) else np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the confusion matrix must be square [K, K], got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("the confusion matrix has negative counts")
    return matrix.astype(np.int64)


def classification_report(
    confusion: Tensor | npt.ArrayLike, class_names: Sequence[str]
) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, with top-1 and macro F1 (see the module doc).

    Args:
        confusion: ``[K, K]`` counts, rows true classes, columns predictions.
        class_names: the ``K`` class names.

    Returns:
        ``{"top1", "macro_f1", "num_samples", "classes": {name: {precision, recall, f1, support,
            predicted}}}``; scores are fractions in ``[0, 1]``.

    Raises:
        ValueError: if the matrix is not square, has negative counts, or does not match the names.
    """
    matrix = _as_matrix(confusion)
    if len(class_names) != matrix.shape[0]:
        raise ValueError(
            f"{len(class_names)} class names for a {matrix.shape[0]}-class confusion matrix"
        )
    true_counts = matrix.sum(axis=1)
    predicted_counts = matrix.sum(axis=0)
    correct = np.diag(matrix)
    total = int(matrix.sum())
    classes: dict[str, dict[str, float | int]] = {}
    f1_scores: list[float] = []
    for k, name in enumerate(class_names):
        support, predicted, hits = int(true_counts[k]), int(predicted_counts[k]), int(correct[k])
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * hits / (support + predicted) if support + predicted else 0.0
        classes[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": predicted,
        }
        if support + predicted:
            f1_scores.append(f1)
    return {
        "top1": int(correct.sum()) / total if total else math.nan,
        "macro_f1": float(np.mean(f1_scores)) if f1_scores else math.nan,
        "num_samples": total,
        "classes": classes,
    }


def format_report(report: dict[str, Any], limit: int | None = None) -> str:
    """A plain-text table of `classification_report` (worst F1 first).

    Args:
        report: the report.
        limit: show at most this many classes (None: all that occur).

    Returns:
        The table, one line per class, then the totals.
    """
    rows = [(name, s) for name, s in report["classes"].items() if s["support"] or s["predicted"]]
    rows.sort(key=lambda item: (item[1]["f1"], item[0]))
    shown = rows if limit is None else rows[:limit]
    width = max([len("class"), *(len(name) for name, _ in shown)])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    lines += [
        f"{name:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  "
        f"{s['support']:7d}"
        for name, s in shown
    ]
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more classes")
    lines.append(
        f"top-1 {report['top1']:.4f}   macro F1 {report['macro_f1']:.4f}   "
        f"({report['num_samples']} samples)"
    )
    return "\n".join(lines)


def plot_confusion_matrix(
    confusion: Tensor | npt.ArrayLike,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Write the row-normalised confusion matrix as a PNG (recall on the diagonal).

    Args:
        confusion: ``[K, K]`` counts, rows true classes.
        class_names: the ``K`` class names (axis labels).
        path: PNG to write (atomically).
        title: plot title.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = _as_matrix(confusion).astype(np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = max(6.0, 0.18 * len(class_names))
    figure, axes = plt.subplots(figsize=(side, side))
    image = axes.imshow(normalised, vmin=0.0, vmax=1.0, cmap="viridis")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=list(class_names), rotation=90, fontsize=6)
    axes.set_yticks(ticks, labels=list(class_names), fontsize=6)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    figure.tight_layout()
    target = Path(path)
    with atomic_output(target) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return target


def confusion_from_predictions(target: Tensor, predicted: Tensor, num_classes: int) -> Tensor:
    """``[K, K]`` counts from label vectors (a reference for tests and small evaluations)."""
    flat = target.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)
