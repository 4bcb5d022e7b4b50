r"""Weighted kNN probe on frozen features (Wu et al., CVPR 2018; the usual SSL monitor).

Each query votes with its $k$ most cosine-similar bank features, weighted by
$\exp(s / \tau)$:

$$
\hat y(q) = \arg\max_c \sum_{i \in \mathrm{top}_k(q)} e^{\cos(q, b_i) / \tau}\,[y_i = c]
$$

with $k = 20$ and $\tau = 0.1$ by default (lightly's and InstDisc's $k = 200$
assumes banks of tens of thousands; 20 suits the small banks of smoke-scale ablations). The vote is
lightly's `knn_predict`; this module adds normalisation, ``k``
clamped to the bank size, chunking, and the feature extraction that matches the pretraining input.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import Tensor, nn

__all__ = ["embed_images", "knn_accuracy", "knn_predict_labels"]


@torch.inference_mode()
def embed_images(
    backbone: nn.Module,
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Pooled backbone features of whole images, prepared like the pretraining views.

    Images are scaled to ``[0, 1]`` (uint8 divided by 255, float taken as is), resized to
    ``size`` (bilinear, antialiased; no crop, no augmentation) and normalised with ``mean`` /
    ``std``.

    Args:
        backbone: a module mapping ``[B, C, S, S]`` to pooled ``[B, F]`` features (a timm model
            with ``num_classes=0``, or [`GeoSSLTask`][geossl.trainers.GeoSSLTask]).
        images: ``[N, C, H, W]`` uint8, or float in ``[0, 1]``.
        mean: per-band mean of the ``[0, 1]`` input.
        std: per-band standard deviation.
        size: side the images are resized to (the pretraining crop size); ``None`` keeps them.
        batch_size: images per forward pass.
        device: where to run the backbone.

    Returns:
        ``float32 [N, F]`` features on the CPU.

    Raises:
        ValueError: if ``images`` is not ``[N, C, H, W]`` with ``C == len(mean) == len(std)``.
    """
    if images.ndim != 4 or not images.shape[1] == len(mean) == len(std):
        raise ValueError(
            f"images must be [N, C, H, W] with C = len(mean) = len(std) = {len(mean)}, "
            f"got {tuple(images.shape)}"
        )
    was_training = backbone.training
    backbone.eval()
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    features = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if size is not None and x.shape[-2:] != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            features.append(backbone((x - mean_t) / std_t).float().flatten(1).cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(features) if features else torch.zeros(0, 0)


def knn_predict_labels(
    query: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    *,
    k: int = 20,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> Tensor:
    r"""Top-1 weighted-kNN labels of ``query`` features against a labelled ``bank``.

    Args:
        query: ``[N, F]`` features (normalised here).
        bank: ``[M, F]`` features (normalised here).
        bank_labels: ``int64 [M]`` labels in ``[0, num_classes)``.
        num_classes: number of classes.
        k: neighbours per query (clamped to ``M``).
        temperature: similarity temperature $\tau$ (0.1).
        chunk_size: queries per similarity matrix (bounds memory to ``chunk_size x M``).

    Returns:
        ``int64 [N]`` predicted labels.

    Raises:
        ValueError: for empty or mismatched inputs, labels out of range, or ``k`` /
            ``temperature`` / ``chunk_size`` out of range.
    """
    if bank.ndim != 2 or query.ndim != 2 or bank.shape[1] != query.shape[1] or len(bank) == 0:
        raise ValueError(
            f"query [N, F] and a non-empty bank [M, F] are needed, got {tuple(query.shape)} and "
            f"{tuple(bank.shape)}"
        )
    if bank_labels.shape != (len(bank),):
        raise ValueError(f"bank_labels must be [{len(bank)}], got {tuple(bank_labels.shape)}")
    if bank_labels.min() < 0 or bank_labels.max() >= num_classes:
        raise ValueError(f"bank_labels must lie in [0, {num_classes}), got {bank_labels.tolist()}")
    if k < 1 or temperature <= 0 or chunk_size < 1:
        raise ValueError(
            f"k >= 1, temperature > 0 and chunk_size >= 1 are needed, got {k}, {temperature}, "
            f"{chunk_size}"
        )
    bank_t = F.normalize(bank.float(), dim=1).t().contiguous()  # [F, M] as lightly expects
    labels = bank_labels.long()
    predictions = [
        knn_predict(
            F.normalize(part.float(), dim=1),
            bank_t,
            labels,
            num_classes=num_classes,
            knn_k=min(k, len(bank)),
            knn_t=temperature,
        )[:, 0]
        for part in torch.split(query, chunk_size)
    ]
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.int64)


def knn_accuracy(
    query: Tensor,
    query_labels: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy of `knn_predict_labels` (classes: every label of bank and query).

    Args:
        query: ``[N, F]`` features.
        query_labels: ``int64 [N]`` true labels.
        bank: ``[M, F]`` features.
        bank_labels: ``int64 [M]`` labels.
        k: neighbours per query.
        temperature: similarity temperature.

    Returns:
        The fraction of queries whose predicted label is right.

    Raises:
        ValueError: if there is no query, or as
            [`knn_predict_labels`][geossl.evaluation.knn.knn_predict_labels].
    """
    if len(query) == 0 or query_labels.shape != (len(query),):
        raise ValueError(f"need [N] labels for N > 0 queries, got {tuple(query_labels.shape)}")
    num_classes = int(max(query_labels.max(), bank_labels.max())) + 1
    predicted = knn_predict_labels(
        query, bank, bank_labels, num_classes, k=k, temperature=temperature
    )
    return float((predicted == query_labels.long()).float().mean())
