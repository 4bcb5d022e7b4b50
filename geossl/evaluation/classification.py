r"""Classification reports from torchmetrics' per-class scores: a dict, a table and a plot.

The per-class scores are torchmetrics' ``MulticlassPrecision``, ``MulticlassRecall`` and
``MulticlassF1Score`` (``average=None``), the counts its ``MulticlassConfusionMatrix``: ``C`` is
``[K, K]`` with ``C[t, p]`` the number of samples of true class ``t`` predicted as ``p``. Per
class:

$$
\mathrm{precision}_k = \frac{C_{kk}}{\sum_t C_{tk}}, \quad
\mathrm{recall}_k = \frac{C_{kk}}{\sum_p C_{kp}}, \quad
F_{1,k} = \frac{2\, C_{kk}}{\sum_t C_{tk} + \sum_p C_{kp}}
$$

(0 where the denominator is 0: torchmetrics' ``zero_division=0``). Top-1 accuracy is
``MulticlassAccuracy(average="micro")``, $\sum_k C_{kk} / \sum C$; macro F1 is
``MulticlassF1Score(average="macro")``: the mean of $F_{1,k}$ over the classes that occur
in the targets or the predictions (a class absent from both would otherwise count as a zero and
punish small evaluation sets for the classes they lack).
"""

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from geossl.utils.io import atomic_output

__all__ = [
    "classification_report",
    "format_report",
    "plot_confusion_matrix",
    "report_from_predictions",
    "report_metrics",
]


def _as_matrix(confusion: Tensor | npt.ArrayLike) -> npt.NDArray[np.int64]:
    matrix = confusion.cpu().numpy() if isinstance(confusion, Tensor) else np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the confusion matrix must be square [K, K], got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("the confusion matrix has negative counts")
    return matrix.astype(np.int64)


def _shortest(value: float) -> float:
    """A float32 score as the shortest decimal that names it (``0.8``, not ``0.800000011920929``).

    torchmetrics divides in float32; the report (and its JSON) keeps no digits beyond that.
    """
    return float(np.format_float_positional(np.float32(value)))


def report_metrics(num_classes: int) -> MetricCollection:
    """The torchmetrics behind `classification_report`, to update batch by batch.

    The three per-class scores and macro F1 share one state (torchmetrics' compute groups).

    Args:
        num_classes: $K$.

    Returns:
        A collection whose ``compute()`` is
        [`classification_report`][geossl.evaluation.classification.classification_report]'s
        ``scores``.

    Example:
        >>> import torch
        >>> metrics = report_metrics(3)
        >>> scores = metrics(torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 0, 1]))
        >>> scores["precision"].tolist(), scores["confusion"].tolist()
        ([1.0, 0.5, 0.0], [[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    """
    return MetricCollection(
        {
            "precision": MulticlassPrecision(num_classes, average=None),
            "recall": MulticlassRecall(num_classes, average=None),
            "f1": MulticlassF1Score(num_classes, average=None),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "top1": MulticlassAccuracy(num_classes, average="micro"),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }
    )


def classification_report(
    scores: Mapping[str, Tensor], class_names: Sequence[str]
) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, with top-1 and macro F1 (see the module doc).

    Args:
        scores: ``report_metrics(K).compute()``: torchmetrics' per-class ``precision``,
            ``recall`` and ``f1``, ``top1``, ``macro_f1`` and the ``[K, K]`` ``confusion``
            (rows true classes, columns predictions).
        class_names: the ``K`` class names.

    Returns:
        A dict with ``top1``, ``macro_f1``, ``num_samples`` and ``classes``: per class name, its
        ``precision``, ``recall``, ``f1``, ``support`` and ``predicted``; scores are fractions in
        ``[0, 1]`` (top-1 and macro F1 NaN without samples).

    Raises:
        ValueError: if the confusion matrix is not square, has negative counts, or does not
            match the names.
    """
    matrix = _as_matrix(scores["confusion"])
    if len(class_names) != matrix.shape[0]:
        raise ValueError(
            f"{len(class_names)} class names for a {matrix.shape[0]}-class confusion matrix"
        )
    per_class = {
        key: [_shortest(v) for v in scores[key].cpu().tolist()]
        for key in ("precision", "recall", "f1")
    }
    support, predicted = matrix.sum(axis=1).tolist(), matrix.sum(axis=0).tolist()
    classes: dict[str, dict[str, float | int]] = {
        name: {
            "precision": per_class["precision"][k],
            "recall": per_class["recall"][k],
            "f1": per_class["f1"][k],
            "support": int(support[k]),
            "predicted": int(predicted[k]),
        }
        for k, name in enumerate(class_names)
    }
    total = int(matrix.sum())
    # torchmetrics answers 0 for an empty evaluation; the report says "not measured".
    return {
        "top1": _shortest(float(scores["top1"])) if total else math.nan,
        "macro_f1": _shortest(float(scores["macro_f1"])) if total else math.nan,
        "num_samples": total,
        "classes": classes,
    }


def report_from_predictions(
    target: Tensor, predicted: Tensor, class_names: Sequence[str]
) -> dict[str, Any]:
    """`classification_report` of label (or score) vectors, in one go.

    Args:
        target: ``[N]`` true classes.
        predicted: ``[N]`` predicted classes, or ``[N, K]`` scores.
        class_names: the ``K`` class names.

    Returns:
        The report.
    """
    metrics = report_metrics(len(class_names))
    metrics.update(predicted, target)
    return classification_report(metrics.compute(), class_names)


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
