r"""``geossl probe``: how good are these weights? Frozen features, a kNN and a linear probe.

The protocol follows torchgeo-bench where it applies, so that the numbers read like its table:

* every image resized to ``image_size`` (224, bilinear, antialiased), scaled to ``[0, 1]`` and
  normalised with the weights' statistics; one forward pass of the frozen backbone (pooled
  features, no augmentation);
* splits: a torchgeo dataset's own train / val / test; a scene folder (``labels.csv``) gets a
  fixed, seeded stratified split, 60 / 20 / 20 per class;
* ``knn``: weighted kNN, $k = 20$, cosine similarity, votes weighted by
  $e^{s / 0.1}$ ([geossl.evaluation.knn][]), bank = train + val, queries = test;
* ``knn5``: torchgeo-bench's KNN-5 (five nearest by cosine similarity, majority vote);
* ``linear``: torchgeo-bench's logistic regression, $C$ chosen on val, refit on
  train + val ([geossl.evaluation.linear][]);
* accuracy with a 95 % bootstrap interval over the test images (200 resamples, seeded), and
  per-class precision / recall / F1.

The split is [geossl.datasets.scenes.stratified_split][]; ``ScenesDataModule(holdout_seed=...)``
leaves its test images out of pretraining. The datasets are opened by
[geossl.evaluation.probe_data][], their features extracted by [geossl.evaluation.features][],
and the result written by [geossl.evaluation.probe_result][].
"""

import os
from collections.abc import Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from geossl.evaluation.classification import report_from_predictions
from geossl.evaluation.features import extract_features
from geossl.evaluation.knn import knn_predict_labels
from geossl.evaluation.linear import DEFAULT_C_GRID, linear_probe
from geossl.evaluation.probe_data import ProbeData, load_probe_data
from geossl.evaluation.probe_result import BOOTSTRAP, ProbeResult
from geossl.utils.checks import check_at_least

if TYPE_CHECKING:
    from geossl.weights import InitWeights

__all__ = ["probe_features", "run_probe"]


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
        c_grid: the linear probe's $C$ values.
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
        per_class[method] = report_from_predictions(test_y, predicted, list(classes))
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
        c_grid: the linear probe's $C$ values.
        progress: show a progress bar over the images.
        init_seed: seed of the ``random`` initialisation when it should differ from ``seed``
            (several random backbones probed on one split).

    Returns:
        The result (write it with
        [write_probe_result][geossl.evaluation.probe_result.write_probe_result]).

    Raises:
        ValueError: for bad arguments, weights that do not fit, or a bad dataset (one line).
        FileNotFoundError: for missing weights or data.
    """
    _check_run_args(image_size, batch_size, workers, k)
    init = _resolve_weights(weights, backbone)
    probe_data = load_probe_data(data, dataset, in_chans=init.in_chans, seed=seed)
    model = _build_backbone(init, str(weights), seed if init_seed is None else init_seed)
    model.to(device)
    features, labels = _extract_splits(
        model,
        probe_data,
        init,
        image_size=image_size,
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
    )
    split_rule = "stratified 60/20/20 (seeded)" if dataset == "folder" else f"{dataset}'s own"
    return probe_features(
        features,
        labels,
        probe_data.classes,
        dataset=probe_data.name,
        weights=_weights_record(init, weights),
        image_size=image_size,
        k=k,
        seed=seed,
        c_grid=c_grid,
        split_rule=split_rule,
    )


def _check_run_args(image_size: int, batch_size: int, workers: int, k: int) -> None:
    """Refuse the CLI's bad numbers in one line (the CLI's flag names)."""
    check_at_least("--image-size", image_size, 8)
    check_at_least("--batch-size", batch_size, 1)
    check_at_least("--workers", workers, 0)
    check_at_least("--k", k, 1)


def _resolve_weights(weights: str, backbone: str | None) -> "InitWeights":
    """Resolve ``--weights``, refusing weights without a known input normalisation."""
    from geossl.weights import resolve_init_weights

    init = resolve_init_weights(weights, backbone=backbone)
    if not (len(init.mean) == len(init.std) == init.in_chans):
        raise ValueError(
            f"{weights}: the weights' input normalisation is unknown; export them with "
            "geossl export weights (or write the .json beside the file, docs/export.md)"
        )
    return init


def _build_backbone(init: "InitWeights", source: str, seed: int) -> nn.Module:
    """The timm backbone (pooled features) with the weights loaded, on the CPU.

    Args:
        init: the resolved weights.
        source: the ``--weights`` spec (for error messages).
        seed: the seed of the ``random`` initialisation.

    Returns:
        The model.
    """
    import timm

    from geossl.weights import load_state_dict_strict

    with torch.random.fork_rng():  # `random` weights are the same for the same seed
        torch.manual_seed(seed)
        model: nn.Module = timm.create_model(init.backbone, num_classes=0, in_chans=init.in_chans)
    if init.state_dict is not None:
        load_state_dict_strict(model, init.state_dict, source=source)
    return model


def _extract_splits(
    model: nn.Module,
    probe_data: ProbeData,
    init: "InitWeights",
    *,
    image_size: int,
    batch_size: int,
    workers: int,
    device: str,
    progress: bool,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Features and labels of every split, under one progress bar over all the images.

    Args:
        model: the frozen backbone, on ``device``.
        probe_data: the splits.
        init: the weights (name and normalisation).
        image_size: the side images are resized to.
        batch_size: images per forward pass.
        workers: loader processes.
        device: where the backbone runs.
        progress: show the progress bar.

    Returns:
        ``split -> [N, F]`` features and ``split -> int64 [N]`` labels.
    """
    from tqdm.auto import tqdm

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
    return features, labels


def _weights_record(init: "InitWeights", weights: str) -> dict[str, Any]:
    """What was probed, for the result's record."""
    return {
        "name": init.name,
        "kind": init.kind,
        "spec": str(weights),
        "sha256": init.sha256,
        "backbone": init.backbone,
        "in_chans": init.in_chans,
    }
