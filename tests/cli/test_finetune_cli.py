"""geossl finetune / evaluate / compare through the real CLI on the generated fMoW sample."""

import json
import math
from pathlib import Path

import pytest
import torch

from geossl.cli import main
from geossl.cli.finetune import DOWNSTREAM_TASKS, get_task_spec
from geossl.cli.finetune_cli import (
    EvaluationResult,
    format_comparison,
    run_compare,
    run_evaluate,
    run_finetune,
)
from tests.plot_helpers import assert_readable_png

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "conf" / "fmow_cls_tiny.yaml"


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def tiny_args(root: Path, workdir: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(TINY),
        "--data.init_args.root",
        str(root),
        "--data.init_args.cache_dir",
        str(workdir / "index"),
        "--trainer.logger.init_args.save_dir",
        str(workdir / "runs"),
        *extra,
    ]


@pytest.fixture(scope="module")
def finetuned(fmow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    workdir = tmp_path_factory.mktemp("finetune")
    return run_finetune("fmow-cls", "random", tiny_args(fmow_sample, workdir))


def test_finetune_writes_metrics_and_report(finetuned: EvaluationResult) -> None:
    assert finetuned.run_dir is not None
    assert finetuned.checkpoint is not None
    assert finetuned.checkpoint.is_file()
    for name in ("test_top1", "test_macro_f1", "test_top5", "test_loss"):
        assert math.isfinite(finetuned.metrics[name]), name
    saved = json.loads((finetuned.run_dir / "metrics.json").read_text())
    assert saved["task"] == "fmow-cls"
    assert saved["weights"]["kind"] == "random"
    assert saved["metrics"] == pytest.approx(finetuned.metrics)
    report = json.loads((finetuned.run_dir / "report.json").read_text())
    assert report["top1"] == pytest.approx(finetuned.metrics["test_top1"])
    assert len(report["classes"]) == 62
    assert (finetuned.run_dir / "confusion_matrix.png").stat().st_size > 0
    assert finetuned.loss_curve == finetuned.run_dir / "loss_curve.png"
    assert_readable_png(finetuned.loss_curve)
    assert "macro F1" in (finetuned.run_dir / "report.txt").read_text()
    checkpoint = torch.load(finetuned.checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["geossl_task"] == "fmow-cls"
    assert checkpoint["geossl_init_weights"]["kind"] == "random"


def test_evaluate_reproduces_the_test_metrics(finetuned: EvaluationResult, tmp_path: Path) -> None:
    assert finetuned.checkpoint is not None
    result = run_evaluate(finetuned.checkpoint, output=tmp_path / "eval")
    assert result.task == "fmow-cls"  # read from the checkpoint
    assert result.metrics == pytest.approx(finetuned.metrics, abs=1e-5)
    assert result.weights["kind"] == "random"
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_evaluate_command_on_another_split(
    finetuned: EvaluationResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert finetuned.checkpoint is not None
    main(["evaluate", str(finetuned.checkpoint), "--split", "test", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert "test_top1" in out
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["metrics"]) >= {"test_top1", "test_macro_f1"}
    # A second evaluation into the same folder keeps the first one's metrics.json...
    (tmp_path / "metrics.json").write_text("{}")
    args = ["evaluate", str(finetuned.checkpoint), "--split", "val", "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"geossl: error: {tmp_path / 'metrics.json'} exists; pass --overwrite to replace it"
    )
    assert (tmp_path / "metrics.json").read_text() == "{}"
    main([*args, "--overwrite"])  # ... unless asked to replace it
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]


def test_compare_temporal_linear_probes(fmow_sample: Path, tmp_path: Path) -> None:
    exported = tmp_path / "random_resnet18.pth"
    torch.manual_seed(1)
    import timm

    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), exported)
    results = run_compare(
        "fmow-linear",
        ["random", str(exported)],
        tiny_args(
            fmow_sample,
            tmp_path,
            "--model.init_args.backbone",
            "resnet18",
            "--data.init_args.temporal",
            "true",
            "--data.init_args.max_views",
            "2",
        ),
        output=tmp_path / "cmp",
    )
    digest = results[f"random_resnet18.pth ({_sha(exported)})"].weights["sha256"]
    assert list(results) == ["random", f"random_resnet18.pth ({digest})"]
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert table.startswith("| weights | top1 | macro_f1 | top5 |")
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [row["kind"] for row in saved["rows"]] == ["random", "file"]


def test_format_comparison() -> None:
    results = {
        "random": EvaluationResult("x", {}, {"test_top1": 0.5, "test_macro_f1": 0.25}),
        "geossl": EvaluationResult("x", {}, {"test_top1": 0.6}),
    }
    text = format_comparison(results, ["test_top1", "test_macro_f1"])
    assert text.splitlines()[1].split() == ["random", "50.00", "25.00"]
    assert text.splitlines()[2].split() == ["geossl", "60.00", "-"]
    markdown = format_comparison(results, ["test_top1"], markdown=True)
    assert markdown.splitlines()[2] == "| random | 50.00 |"


def test_registry_and_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(DOWNSTREAM_TASKS) == {"fmow-cls", "fmow-linear", "xview-det", "spacenet-seg"}
    with pytest.raises(ValueError, match="unknown --task 'seg': choose one of fmow-cls"):
        get_task_spec("seg")
    with pytest.raises(SystemExit):
        main(["finetune", "--weights", "random"])
    assert "geossl finetune needs --task" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert "xview-det" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "missing.ckpt"])
    assert "checkpoint not found: missing.ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--task", "fmow-cls", "--weights", "random", "random"])
    assert "--weights repeats a value" in capsys.readouterr().err


def test_fmow_sentinel_links_the_band_count_into_the_model(
    tmp_path: Path, fmow_sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 13-band weights on fMoW-Sentinel: model.init_args.in_channels follows data.product without
    # a second flag. The same weights on RGB data: the constructor's one-line message, not
    # jsonargparse's "Does not validate against any of the Union subtypes".
    import timm

    from geossl.synthetic.fmow_sentinel import generate_fmow_sentinel_sample

    root = tmp_path / "fmow-sentinel"
    generate_fmow_sentinel_sample(root, locations=6, seed=3, image_size=(16, 20))
    weights = tmp_path / "resnet18_13band.pth"
    torch.save(timm.create_model("resnet18", in_chans=13, num_classes=0).state_dict(), weights)
    stats = ["--model.init_args.mean", str([0.1] * 13), "--model.init_args.std", str([0.05] * 13)]
    result = run_finetune(
        "fmow-linear",
        str(weights),
        tiny_args(root, tmp_path / "sentinel", "--data.init_args.product", "sentinel", *stats),
    )
    assert math.isfinite(result.metrics["test_top1"])
    assert result.checkpoint is not None
    saved = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["in_channels"] == 13

    argv = ["finetune", "--task", "fmow-linear", "--weights", str(weights)]
    with pytest.raises(SystemExit) as excinfo:
        main([*argv, *tiny_args(fmow_sample, tmp_path / "rgb", *stats)])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "in_chans mismatch: the weights have 13 input bands but the data has 3" in err
    assert "Union subtypes" not in err


def test_fine_tunes_the_sample_command_output_without_geo_clusters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The sequence of the issue: `geossl datasets sample fmow --output DIR` (48 locations, 34 of
    # them in train) then `geossl finetune --task fmow-cls --weights random --data.root DIR`.
    # It stopped with "data.num_geo_clusters=100 is larger than the number of distinct training
    # locations (34)": classification has no use for geo clusters.
    root = tmp_path / "fmow"
    main(["datasets", "sample", "fmow", "--output", str(root)])
    assert "48 locations" in capsys.readouterr().out
    main(
        [
            "finetune",
            "--task",
            "fmow-cls",
            "--weights",
            "random",
            "--data.root",
            str(root),
            "--config",
            str(TINY),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"),
        ]
    )
    assert "test_top1" in capsys.readouterr().out
    cached = list((root / ".geossl").glob("fmow-index-rgb-*.parquet"))
    assert len(cached) == 1
    import pyarrow.parquet as pq

    geo_label = pq.read_table(cached[0], columns=["geo_label"]).column("geo_label").to_numpy()
    assert (geo_label == -1).all()  # no clustering was done


def test_evaluate_ignores_arguments_the_data_module_no_longer_takes(
    finetuned: EvaluationResult, tmp_path: Path
) -> None:
    # A checkpoint of the previous geossl stores data.num_geo_clusters=100 for the fMoW
    # classification data, which no longer takes it: evaluation warns and goes on.
    assert finetuned.checkpoint is not None
    saved = torch.load(finetuned.checkpoint, map_location="cpu", weights_only=True)
    saved["datamodule_hyper_parameters"]["num_geo_clusters"] = 100
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    with pytest.warns(UserWarning, match="no longer takes num_geo_clusters; ignored"):
        result = run_evaluate(old, output=tmp_path / "eval")
    assert result.metrics == pytest.approx(finetuned.metrics, abs=1e-5)
