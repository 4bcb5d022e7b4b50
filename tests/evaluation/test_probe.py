"""geossl probe: splits, the three probes against hand-made features, and full runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.evaluation.probe import probe_features, run_probe
from geossl.evaluation.probe_data import load_probe_data
from geossl.evaluation.probe_result import write_probe_result
from geossl.synthetic.scenes import generate_scene_sample
from tests.pretrain_helpers import shared_tiny_checkpoint

CLASSES = ("a", "b", "c")


def _clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat(n)
    centres = torch.eye(3, 16) * 10
    return centres[labels] + torch.randn(len(labels), 16, generator=generator), labels


def _probe(features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], **kwargs: object):
    return probe_features(
        features,
        labels,
        CLASSES,
        dataset="toy",
        weights={"name": "toy", "backbone": "x"},
        image_size=8,
        c_grid=[0.01, 1.0],
        **kwargs,  # type: ignore[arg-type]
    )


def test_separable_features_score_every_probe_at_100() -> None:
    splits = {name: _clusters(10, seed) for seed, name in enumerate(("train", "val", "test"))}
    result = _probe({k: v[0] for k, v in splits.items()}, {k: v[1] for k, v in splits.items()})
    assert result.accuracy == {"knn": 1.0, "knn5": 1.0, "linear": 1.0}
    assert result.interval["linear"] == (1.0, 1.0)
    saved = result.to_dict()
    assert saved["knn_top1"] == saved["linear_top1"] == 1.0
    assert saved["per_class"]["linear"]["classes"]["b"]["recall"] == 1.0
    assert saved["sizes"] == {"train": 30, "val": 30, "test": 30}
    rows = {row["method"]: row for row in saved["rows"]}
    assert set(rows) == {"knn", "knn5", "linear"}
    assert rows["linear"]["best_c"] in (0.01, 1.0)
    assert rows["knn"]["metric_name"] == "accuracy"
    assert rows["knn"]["feature_dim"] == 16


def test_knn5_is_a_majority_vote_and_knn_a_weighted_one() -> None:
    # The query's two nearest bank features are class 0, the next three class 1: the majority of
    # five says 1; the similarity-weighted vote of kNN (tau 0.1) says 0.
    query = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.0, 0.05, 0.6, 0.62, 0.64])
    bank = torch.stack([angles.cos(), angles.sin()], 1)
    bank_labels = torch.tensor([0, 0, 1, 1, 1])
    features = {"train": bank, "val": bank[:0], "test": query}
    labels = {"train": bank_labels, "val": bank_labels[:0], "test": torch.tensor([1])}
    from geossl.evaluation.knn import knn_predict_labels

    assert int(knn_predict_labels(query, bank, bank_labels, 2, k=5)[0]) == 0
    assert int(knn_predict_labels(query, bank, bank_labels, 2, k=5, temperature=1e6)[0]) == 1
    with pytest.raises(ValueError, match="validation and test splits must not be empty"):
        _probe(features, labels, k=5)


def test_bootstrap_interval_brackets_the_accuracy() -> None:
    splits = {name: _clusters(20, seed) for seed, name in enumerate(("train", "val", "test"))}
    test_x, test_y = splits["test"]
    test_x = test_x + torch.randn_like(test_x, generator=None) * 6  # make mistakes
    result = _probe(
        {"train": splits["train"][0], "val": splits["val"][0], "test": test_x},
        {"train": splits["train"][1], "val": splits["val"][1], "test": test_y},
    )
    for method, value in result.accuracy.items():
        low, high = result.interval[method]
        assert low <= value <= high
        assert high - low > 0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene_sample(
        tmp_path_factory.mktemp("probe") / "scenes", classes=3, per_class=6, size=32
    )


def test_run_probe_on_a_scene_folder_writes_json_and_plot(scenes: Path, tmp_path: Path) -> None:
    result = run_probe(
        "random",
        scenes,
        backbone="resnet18",
        image_size=32,
        batch_size=8,
        workers=0,
        c_grid=[0.1, 1.0],
        progress=False,
    )
    assert result.sizes == {"train": 12, "val": 3, "test": 3}
    assert result.weights["kind"] == "random"
    assert result.weights["backbone"] == "resnet18"
    assert result.feature_dim == 512
    png = write_probe_result(result, tmp_path / "out" / "r.json")
    saved = json.loads((tmp_path / "out" / "r.json").read_text())
    assert {"knn_top1", "linear_top1", "per_class", "rows"} <= set(saved)
    assert saved["protocol"]["split"] == "stratified 60/20/20 (seeded)"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = result.table()
    assert "knn" in table
    assert "linear" in table
    # `random` is seeded: the same figures again, whatever the global generator did since.
    torch.manual_seed(123)
    again = run_probe(
        "random",
        scenes,
        backbone="resnet18",
        image_size=32,
        batch_size=8,
        workers=0,
        c_grid=[0.1, 1.0],
        progress=False,
    )
    assert torch.equal(again.features_2d, result.features_2d)


def test_run_probe_reads_a_geossl_checkpoint_and_export(
    scenes: Path, fmow_sample: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The architecture and the normalisation come from the file; the checkpoint and its export
    # hold the same backbone, so they give the same features and the same figures.
    from geossl.weights import export_weights

    checkpoint = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)
    exported = export_weights(checkpoint, tmp_path / "export")
    results = [
        run_probe(str(path), scenes, image_size=32, workers=0, c_grid=[1.0], progress=False)
        for path in (checkpoint, exported.weights)
    ]
    for result in results:
        assert result.weights["backbone"] == "resnet18"
        assert result.weights["kind"] == "file"
    assert results[0].weights["sha256"] == results[1].weights["sha256"]
    assert results[0].accuracy == results[1].accuracy


def _write_ucmerced(root: Path, classes: tuple[str, ...], per_class: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for cls in classes:
        folder = root / "UCMerced_LandUse" / "Images" / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            name = f"{cls}{i:02d}.tif"
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(folder / name)
            names[("train", "train", "val", "test")[i % 4]].append(name)
    for split, files in names.items():
        (root / f"uc_merced-{split}.txt").write_text("\n".join(files) + "\n")


def test_torchgeo_ucmerced_with_its_own_splits(tmp_path: Path) -> None:
    _write_ucmerced(tmp_path, ("agricultural", "beach", "forest"), per_class=4)
    data = load_probe_data(tmp_path, "ucmerced")
    assert data.classes == ("agricultural", "beach", "forest")
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [6, 3, 3]  # type: ignore[arg-type]
    assert data.scale == pytest.approx(1 / 255)
    result = run_probe(
        "random",
        tmp_path,
        dataset="ucmerced",
        backbone="resnet18",
        image_size=32,
        workers=0,
        c_grid=[1.0],
        progress=False,
    )
    assert result.split_rule == "ucmerced's own"
    assert result.sizes == {"train": 6, "val": 3, "test": 3}
