"""The probe's result: its figures, the JSON record, the summary table and the PCA plot."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from geossl.utils.io import atomic_output, atomic_write_bytes

__all__ = ["BOOTSTRAP", "ProbeResult", "plot_features", "write_probe_result"]

#: Bootstrap resamples of the test set for the 95 % interval (torchgeo-bench's 200).
BOOTSTRAP = 200


@dataclass
class ProbeResult:
    """The probe's figures for one set of weights on one dataset.

    Attributes:
        dataset: the dataset's name.
        weights: what was probed (``name``, ``kind``, ``sha256``, ``backbone``, ...).
        classes: class names by index.
        sizes: images per split.
        feature_dim: the backbone's feature width.
        image_size: the side images were resized to.
        seed: the split and bootstrap seed.
        accuracy: method (``knn``, ``knn5``, ``linear``) -> test top-1.
        interval: method -> the 95 % bootstrap interval of ``accuracy``.
        per_class: method -> per-class report (``classification_report``).
        best_c: the linear probe's $C$.
        k: neighbours of the ``knn`` method.
        features_2d: ``[N_test, 2]`` PCA projection of the test features (for the plot).
        test_labels: ``int64 [N_test]``.
    """

    dataset: str
    weights: dict[str, Any]
    classes: tuple[str, ...]
    sizes: dict[str, int]
    feature_dim: int
    image_size: int
    seed: int
    accuracy: dict[str, float]
    interval: dict[str, tuple[float, float]]
    per_class: dict[str, dict[str, Any]]
    best_c: float
    k: int = 20
    split_rule: str = "stratified 60/20/20 (seeded)"
    features_2d: Tensor = field(default_factory=lambda: torch.zeros(0, 2))
    test_labels: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    @property
    def knn_top1(self) -> float:
        """Weighted kNN top-1 accuracy (k = 20, cosine)."""
        return self.accuracy["knn"]

    @property
    def linear_top1(self) -> float:
        """Linear-probe top-1 accuracy."""
        return self.accuracy["linear"]

    def rows(self) -> list[dict[str, Any]]:
        """One torchgeo-bench results row per method (its CSV columns)."""
        return [
            {
                "dataset": self.dataset,
                "method": method,
                "metric_name": "accuracy",
                "metric_value": value,
                "ci_lower": self.interval[method][0],
                "ci_upper": self.interval[method][1],
                "feature_dim": self.feature_dim,
                "best_c": self.best_c if method == "linear" else None,
                "n_train": self.sizes["train"],
                "n_val": self.sizes["val"],
                "n_test": self.sizes["test"],
                "seed": self.seed,
                "model": self.weights.get("backbone"),
                "name": self.weights.get("name"),
                "normalization": "weights",
                "image_size": self.image_size,
                "interpolation": "bilinear",
            }
            for method, value in self.accuracy.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything but the plot data, as JSON-ready values."""
        return {
            "dataset": self.dataset,
            "weights": self.weights,
            "knn_top1": self.knn_top1,
            "linear_top1": self.linear_top1,
            "knn5_top1": self.accuracy.get("knn5"),
            "protocol": {
                "image_size": self.image_size,
                "interpolation": "bilinear",
                "knn": {
                    "k": self.k,
                    "similarity": "cosine",
                    "temperature": 0.1,
                    "bank": "train+val",
                },
                "knn5": {"k": 5, "similarity": "cosine", "vote": "majority"},
                "linear": {
                    "solver": "lbfgs",
                    "c_grid": "logspace(-6, 4, 40)",
                    "best_c": self.best_c,
                },
                "split": self.split_rule,
                "bootstrap": BOOTSTRAP,
                "seed": self.seed,
            },
            "sizes": self.sizes,
            "classes": list(self.classes),
            "rows": self.rows(),
            "per_class": self.per_class,
        }

    def table(self) -> str:
        """The one-screen summary: one line per method, then the weakest classes."""
        lines = [
            f"probe of {self.weights.get('name')} on {self.dataset}: {len(self.classes)} classes, "
            f"train {self.sizes['train']} / val {self.sizes['val']} / test {self.sizes['test']}, "
            f"{self.feature_dim}-d features at {self.image_size} px",
            f"{'method':<8}{'top-1':>8}   95 % interval",
        ]
        for method, value in self.accuracy.items():
            low, high = self.interval[method]
            extra = f"   C = {self.best_c:.3g}" if method == "linear" else ""
            lines.append(
                f"{method:<8}{100 * value:>7.2f}%   {100 * low:.1f} - {100 * high:.1f}{extra}"
            )
        recall = {name: v["recall"] for name, v in self.per_class["linear"]["classes"].items()}
        worst = sorted(recall, key=lambda name: recall[name])[:3]
        lines.append(
            "weakest classes (linear recall): "
            + ", ".join(f"{n} {100 * recall[n]:.0f}%" for n in worst)
        )
        return "\n".join(lines)


def plot_features(result: ProbeResult, path: str | os.PathLike[str]) -> None:
    """Draw the test features in 2-D (PCA), coloured by class, with the accuracies in the title.

    Args:
        result: a probe result.
        path: the PNG to write (atomically).
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.5, 6), layout="constrained")
    axes = figure.subplots()
    points = result.features_2d.numpy()
    colours = [f"C{i % 10}" for i in range(len(result.classes))]
    markers = "os^D"
    for index, name in enumerate(result.classes):
        mask = (result.test_labels == index).numpy()
        axes.scatter(
            points[mask, 0],
            points[mask, 1],
            s=18,
            c=colours[index],
            marker=markers[(index // 10) % len(markers)],
            label=name,
            alpha=0.8,
            linewidths=0,
        )
    axes.set_xlabel("principal component 1")
    axes.set_ylabel("principal component 2")
    axes.set_title(
        f"{result.weights.get('name')} on {result.dataset} (test images): kNN "
        f"{100 * result.knn_top1:.1f} %, linear {100 * result.linear_top1:.1f} %"
    )
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=1.5)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)


def write_probe_result(result: ProbeResult, path: str | os.PathLike[str]) -> Path:
    """Write the JSON and the PNG beside it (``RESULT.json`` -> ``RESULT.png``).

    Args:
        result: a probe result.
        path: the JSON file.

    Returns:
        The PNG's path.
    """
    json_path = Path(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(json_path, (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    png = json_path.with_suffix(".png")
    plot_features(result, png)
    return png
