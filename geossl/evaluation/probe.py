r"""``geossl probe``: how good are these weights? Frozen features, a kNN and a linear probe.

The protocol follows torchgeo-bench where it applies, so that the numbers read like its table:

* every image resized to ``image_size`` (224, bilinear, antialiased), scaled to ``[0, 1]`` and
  normalised with the weights' statistics; one forward pass of the frozen backbone (pooled
  features, no augmentation);
* splits: a torchgeo dataset's own train / val / test; a scene folder (``labels.csv``) gets a
  fixed, seeded stratified split, 60 / 20 / 20 per class;
* ``knn``: weighted kNN, :math:`k = 20`, cosine similarity, votes weighted by
  :math:`e^{s / 0.1}` ([geossl.evaluation.knn][]), bank = train + val, queries = test;
* ``knn5``: torchgeo-bench's KNN-5 (five nearest by cosine similarity, majority vote);
* ``linear``: torchgeo-bench's logistic regression, :math:`C` chosen on val, refit on
  train + val ([geossl.evaluation.linear][]);
* accuracy with a 95 % bootstrap interval over the test images (200 resamples, seeded), and
  per-class precision / recall / F1.

The split is [geossl.datasets.scenes.stratified_split][]; ``ScenesDataModule(holdout_seed=...)``
leaves its test images out of pretraining.

Examples:
    >>> PROBE_DATASETS
    ('folder', 'eurosat', 'ucmerced', 'resisc45')
"""

import json
import os
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from geossl.datasets.scenes import stratified_split
from geossl.evaluation.classification import classification_report, confusion_from_predictions
from geossl.evaluation.knn import knn_predict_labels
from geossl.evaluation.linear import DEFAULT_C_GRID, linear_probe
from geossl.utils.io import atomic_output, atomic_write_bytes

__all__ = [
    "PROBE_DATASETS",
    "ProbeData",
    "ProbeResult",
    "extract_features",
    "load_probe_data",
    "plot_features",
    "probe_features",
    "run_probe",
    "write_probe_result",
]

#: ``--dataset`` values: a scene folder, or a torchgeo dataset on disk (never downloaded).
PROBE_DATASETS = ("folder", "eurosat", "ucmerced", "resisc45")

#: Bootstrap resamples of the test set for the 95 % interval (torchgeo-bench's 200).
BOOTSTRAP = 200

Sample = dict[str, Tensor]


@dataclass
class ProbeData:
    """The three splits of a probe dataset and how to read their images.

    Attributes:
        name: the dataset's name in the results (the folder name, or ``eurosat``, ...).
        splits: ``train`` / ``val`` / ``test`` datasets of ``{"image", "label"}`` samples.
        classes: class names by index.
        scale: factor from the stored values to ``[0, 1]`` (1/255 for 8-bit images).
        bands: band names when known (torchgeo datasets), else empty.
    """

    name: str
    splits: dict[str, Dataset[Sample]]
    classes: tuple[str, ...]
    scale: float
    bands: tuple[str, ...] = ()


def _folder_data(root: Path, seed: int) -> ProbeData:
    from geossl.datasets.scenes import LabelledScenes

    scenes = LabelledScenes(root)
    parts = stratified_split(scenes.labels, seed)
    splits: dict[str, Dataset[Sample]] = {k: Subset(scenes, v) for k, v in parts.items()}
    return ProbeData(root.name, splits, scenes.classes, 1 / 255)


def _torchgeo_data(name: str, root: Path, in_chans: int) -> ProbeData:
    from torchgeo import datasets

    if name == "eurosat":
        bands = datasets.EuroSAT.rgb_bands if in_chans == 3 else datasets.EuroSAT.all_band_names
        if in_chans not in (3, len(datasets.EuroSAT.all_band_names)):
            raise ValueError(
                f"EuroSAT has 13 bands (or RGB): weights of {in_chans} bands fit neither"
            )
        splits: dict[str, Dataset[Sample]] = {
            split: datasets.EuroSAT(root, split=split, bands=bands)
            for split in ("train", "val", "test")
        }
        # EuroSAT stores reflectance x 10,000 (uint16).
        return ProbeData(name, splits, tuple(splits["train"].classes), 1e-4, tuple(bands))  # type: ignore[attr-defined]
    cls = {"ucmerced": datasets.UCMerced, "resisc45": datasets.RESISC45}[name]
    splits = {split: cls(root, split=split) for split in ("train", "val", "test")}
    return ProbeData(name, splits, tuple(splits["train"].classes), 1 / 255, ("R", "G", "B"))  # type: ignore[attr-defined]


def load_probe_data(
    data: str | os.PathLike[str], dataset: str = "folder", *, in_chans: int = 3, seed: int = 0
) -> ProbeData:
    """Open a probe dataset.

    Args:
        data: the scene folder, or the root of a torchgeo dataset (read, never downloaded).
        dataset: one of ``PROBE_DATASETS``.
        in_chans: the weights' band count (EuroSAT: 3 reads B04, B03, B02; 13 reads all).
        seed: the scene folder's split seed.

    Returns:
        The splits, classes and scale.

    Raises:
        ValueError: for an unknown ``dataset`` or bands that do not fit.
        FileNotFoundError: if the data is not there (torchgeo's or geossl's message).
    """
    if dataset not in PROBE_DATASETS:
        raise ValueError(
            f"unknown --dataset {dataset!r}: choose one of {', '.join(PROBE_DATASETS)}"
        )
    root = Path(data)
    if dataset == "folder":
        return _folder_data(root, seed)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset} root folder does not exist: {root}")
    return _torchgeo_data(dataset, root, in_chans)


class _Resized(Dataset[Sample]):
    """Samples resized to ``size`` in the loader workers (uint8 stays uint8: a small transfer)."""

    def __init__(self, dataset: Dataset[Sample], size: int) -> None:
        self.dataset = dataset
        self.size = size

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        image = sample["image"]
        if image.shape[-2:] != (self.size, self.size):
            resized = F.interpolate(
                image[None].float(), size=(self.size, self.size), mode="bilinear", antialias=True
            )[0]
            image = (
                resized.round().clamp(0, 255).to(torch.uint8)
                if image.dtype == torch.uint8
                else resized
            )
        return {"image": image, "label": torch.as_tensor(sample["label"], dtype=torch.int64)}


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset[Sample],
    *,
    image_size: int,
    scale: float,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    workers: int = 2,
    device: str | torch.device = "cpu",
    progress: Callable[[int], object] | None = None,
) -> tuple[Tensor, Tensor]:
    """Pooled features of every image of ``dataset`` through the frozen ``backbone``.

    Args:
        backbone: maps ``[B, C, S, S]`` to ``[B, F]`` (a timm model with ``num_classes=0``).
        dataset: ``{"image": [C, H, W], "label"}`` samples.
        image_size: the side images are resized to.
        scale: stored value to ``[0, 1]`` factor.
        mean: per-band mean of the ``[0, 1]`` input.
        std: per-band standard deviation.
        batch_size: images per forward pass.
        workers: loader processes (decode and resize).
        device: where the backbone runs.
        progress: called with the number of images of every batch done.

    Returns:
        ``float32 [N, F]`` features and ``int64 [N]`` labels, on the CPU.
    """
    loader = DataLoader(
        _Resized(dataset, image_size),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=False,
    )
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    try:
        for batch in loader:
            x = batch["image"].to(device).float() * scale
            if x.shape[1] != mean_t.shape[1]:
                raise ValueError(
                    f"the images have {x.shape[1]} bands but the weights expect {mean_t.shape[1]}"
                )
            features.append(backbone((x - mean_t) / std_t).float().flatten(1).cpu())
            labels.append(batch["label"])
            if progress is not None:
                progress(len(x))
    finally:
        backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


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
        best_c: the linear probe's :math:`C`.
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


def _bootstrap(correct: Tensor, seed: int) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``correct`` over ``BOOTSTRAP`` resamples."""
    generator = torch.Generator().manual_seed(seed)
    n = len(correct)
    draws = torch.randint(0, n, (BOOTSTRAP, n), generator=generator)
    means = correct.float()[draws].mean(1)
    return float(means.quantile(0.025)), float(means.quantile(0.975))


def _pca_2d(features: Tensor) -> Tensor:
    centred = features - features.mean(0, keepdim=True)
    if min(centred.shape) < 2:
        return torch.zeros(len(features), 2)
    # An exact SVD, not torch.pca_lowrank: the test features are small and the plot stays the
    # same from run to run (pca_lowrank draws a random projection).
    vh: Tensor = torch.linalg.svd(centred, full_matrices=False).Vh
    return centred @ vh[:2].t()


def probe_features(
    features: Mapping[str, Tensor],
    labels: Mapping[str, Tensor],
    classes: Sequence[str],
    *,
    dataset: str,
    weights: Mapping[str, Any],
    image_size: int,
    k: int = 20,
    seed: int = 0,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    split_rule: str = "stratified 60/20/20 (seeded)",
) -> ProbeResult:
    """The kNN and linear probes on extracted features (see the module doc).

    Args:
        features: ``train`` / ``val`` / ``test`` -> ``[N, F]`` features.
        labels: the same splits -> ``int64 [N]`` classes.
        classes: class names by index.
        dataset: the dataset's name.
        weights: the weights' record.
        image_size: the side the images were resized to.
        k: neighbours of the weighted kNN.
        seed: the bootstrap seed.
        c_grid: the linear probe's :math:`C` values.
        split_rule: how the splits were made (for the record).

    Returns:
        The result.
    """
    num_classes = len(classes)
    bank = torch.cat([features["train"], features["val"]])
    bank_labels = torch.cat([labels["train"], labels["val"]])
    test_x, test_y = features["test"], labels["test"]
    predictions = {
        "knn": knn_predict_labels(test_x, bank, bank_labels, num_classes, k=k),
        # A huge temperature makes every vote ~1: a majority vote, ties to the nearest.
        "knn5": knn_predict_labels(test_x, bank, bank_labels, num_classes, k=5, temperature=1e6),
    }
    linear = linear_probe(
        features["train"],
        labels["train"],
        features["val"],
        labels["val"],
        test_x,
        num_classes=num_classes,
        c_grid=c_grid,
    )
    predictions["linear"] = linear.test_predictions
    accuracy, interval, per_class = {}, {}, {}
    for method, predicted in predictions.items():
        correct = predicted == test_y
        accuracy[method] = float(correct.float().mean())
        interval[method] = _bootstrap(correct, seed)
        confusion = confusion_from_predictions(test_y, predicted, num_classes)
        per_class[method] = classification_report(confusion, list(classes))
    sizes = {split: len(labels[split]) for split in ("train", "val", "test")}
    return ProbeResult(
        dataset,
        dict(weights),
        tuple(classes),
        sizes,
        int(test_x.shape[1]),
        image_size,
        seed,
        accuracy,
        interval,
        per_class,
        linear.best_c,
        k,
        split_rule,
        _pca_2d(test_x),
        test_y,
    )


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


def run_probe(
    weights: str,
    data: str | os.PathLike[str],
    *,
    dataset: str = "folder",
    backbone: str | None = None,
    image_size: int = 224,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "cpu",
    k: int = 20,
    seed: int = 0,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    progress: bool = True,
    init_seed: int | None = None,
) -> ProbeResult:
    """Load the weights, extract the features of every split and probe them.

    Args:
        weights: ``random``, ``imagenet``, a torchgeo weights name, or a geossl checkpoint /
            export / timm file ([geossl.weights.resolve_init_weights][]).
        data: the scene folder or the torchgeo dataset's root.
        dataset: one of ``PROBE_DATASETS``.
        backbone: timm architecture; None takes the file's (``resnet50`` for names).
        image_size: the side images are resized to.
        batch_size: images per forward pass.
        workers: loader processes.
        device: where the backbone runs.
        k: neighbours of the weighted kNN.
        seed: split, bootstrap and ``random`` initialisation seed.
        c_grid: the linear probe's :math:`C` values.
        progress: show a progress bar over the images.
        init_seed: seed of the ``random`` initialisation when it should differ from ``seed``
            (several random backbones probed on one split).

    Returns:
        The result (write it with [write_probe_result][geossl.evaluation.probe.write_probe_result]).

    Raises:
        ValueError: for bad arguments, weights that do not fit, or a bad dataset (one line).
        FileNotFoundError: for missing weights or data.
    """
    import timm
    from tqdm.auto import tqdm

    from geossl.weights import load_state_dict_strict, resolve_init_weights

    if image_size < 8 or batch_size < 1 or workers < 0 or k < 1:
        raise ValueError(
            "--image-size >= 8, --batch-size >= 1, --workers >= 0 and --k >= 1 are needed, got "
            f"{image_size}, {batch_size}, {workers}, {k}"
        )
    init = resolve_init_weights(weights, backbone=backbone)
    if not (len(init.mean) == len(init.std) == init.in_chans):
        raise ValueError(
            f"{weights}: the weights' input normalisation is unknown; export them with "
            "geossl export weights (or write the .json beside the file, docs/export.md)"
        )
    probe_data = load_probe_data(data, dataset, in_chans=init.in_chans, seed=seed)
    with torch.random.fork_rng():  # `random` weights are the same for the same seed
        torch.manual_seed(seed if init_seed is None else init_seed)
        model = timm.create_model(init.backbone, num_classes=0, in_chans=init.in_chans)
    if init.state_dict is not None:
        load_state_dict_strict(model, init.state_dict, source=str(weights))
    model.to(device)
    total = sum(len(cast(Sized, part)) for part in probe_data.splits.values())
    features: dict[str, Tensor] = {}
    labels: dict[str, Tensor] = {}
    with tqdm(total=total, desc=f"Probing {init.name}", unit="img", disable=not progress) as bar:
        for split, part in probe_data.splits.items():
            features[split], labels[split] = extract_features(
                model,
                part,
                image_size=image_size,
                scale=probe_data.scale,
                mean=init.mean,
                std=init.std,
                batch_size=batch_size,
                workers=workers,
                device=device,
                progress=bar.update,
            )
    record = {
        "name": init.name,
        "kind": init.kind,
        "spec": str(weights),
        "sha256": init.sha256,
        "backbone": init.backbone,
        "in_chans": init.in_chans,
    }
    split_rule = "stratified 60/20/20 (seeded)" if dataset == "folder" else f"{dataset}'s own"
    return probe_features(
        features,
        labels,
        probe_data.classes,
        dataset=probe_data.name,
        weights=record,
        image_size=image_size,
        k=k,
        seed=seed,
        c_grid=c_grid,
        split_rule=split_rule,
    )
