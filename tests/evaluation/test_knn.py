import math
from typing import Any

import pytest
import timm
import torch

from geossl.evaluation import embed_images, knn_accuracy, knn_predict_labels


def naive_knn(query, bank, labels, num_classes, k, temperature):
    """One query at a time: cosine similarities, top k, exp-weighted class votes."""
    out = []
    for q in query:
        sims = [float(torch.dot(q, b) / (q.norm() * b.norm())) for b in bank]
        order = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(labels[i])] += math.exp(sims[i] / temperature)
        out.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(out)


def test_matches_the_naive_vote():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(40, 8, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    query = torch.randn(15, 8, generator=g)
    for k, t in [(1, 0.1), (5, 0.1), (20, 0.5), (100, 0.07)]:
        expected = naive_knn(query, bank, labels, 4, min(k, 40), t)
        got = knn_predict_labels(query, bank, labels, 4, k=k, temperature=t, chunk_size=4)
        assert got.tolist() == expected.tolist()


def test_separated_clusters_and_scale_invariance():
    centres = torch.eye(3) * 10
    bank = torch.cat([centres + 0.1 * torch.randn(10, 3, 3)[i] for i in range(10)])
    labels = torch.arange(3).repeat(10)
    query = 5.0 * centres  # scaled copies: cosine similarity ignores the norm
    assert knn_accuracy(query, torch.arange(3), bank, labels, k=5) == 1.0
    assert knn_accuracy(query, torch.tensor([1, 2, 0]), bank, labels, k=5) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bank": torch.zeros(0, 4)}, "non-empty bank"),
        ({"bank_labels": torch.tensor([0, 5])}, r"\[0, 3\)"),
        ({"k": 0}, "k >= 1"),
        ({"temperature": 0.0}, "temperature > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    args: dict[str, Any] = {
        "query": torch.randn(2, 4),
        "bank": torch.randn(2, 4),
        "bank_labels": torch.tensor([0, 1]),
        "num_classes": 3,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        knn_predict_labels(**args)


def test_embed_images_prepares_like_training():
    backbone = timm.create_model("resnet18", num_classes=0, pretrained=False)
    backbone.train()
    images = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    features = embed_images(backbone, images, mean, std, size=32, batch_size=2)
    assert features.shape == (5, 512)
    assert backbone.training  # restored
    backbone.eval()
    x = torch.nn.functional.interpolate(
        images.float() / 255, size=(32, 32), mode="bilinear", antialias=True
    )
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(features, backbone(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="C = len"):
        embed_images(backbone, images, [0.5], [0.2])
