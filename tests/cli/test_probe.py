"""``geossl probe`` and ``geossl datasets sample scenes`` from the command line."""

import json
from pathlib import Path

import pytest

from geossl.cli import main


def _probe(*args: str) -> list[str]:
    return ["probe", "--backbone", "resnet18", "--image-size", "32", "--workers", "0", *args]


def test_sample_then_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenes = tmp_path / "scenes"
    main(
        [
            "datasets",
            "sample",
            "scenes",
            "--output",
            str(scenes),
            "--classes",
            "3",
            "--per-class",
            "5",
        ]
    )
    assert "wrote 15 scenes of 3 classes" in capsys.readouterr().out
    out = tmp_path / "result.json"
    main(_probe("--weights", "random", str(scenes), "--output", str(out)))
    printed = capsys.readouterr().out
    assert "knn" in printed
    assert f"result: {out}" in printed
    saved = json.loads(out.read_text())
    assert 0.0 <= saved["knn_top1"] <= 1.0
    assert out.with_suffix(".png").is_file()
    # An existing result is kept unless --overwrite.
    with pytest.raises(SystemExit) as excinfo:
        main(_probe("--weights", "random", str(scenes), "--output", str(out)))
    assert excinfo.value.code == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    main(_probe("--weights", "random", str(scenes), "--output", str(out), "--overwrite"))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-labels", "no labels.csv in the scene folder"),
        ("one-class", "one class only"),
        ("not-json", "--output must be a .json file"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    output = tmp_path / "r.json"
    if setup == "one-class":
        from PIL import Image

        Image.new("RGB", (8, 8)).save(folder / "a.png")
        (folder / "labels.csv").write_text("path,class_name,class_idx\na.png,x,0\n")
    if setup == "not-json":
        output = tmp_path / "r.txt"
    with pytest.raises(SystemExit) as excinfo:
        main(_probe("--weights", "random", str(folder), "--output", str(output)))
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert message in err


def test_cli_choices_are_the_library_datasets() -> None:
    # The front-end lists the datasets without importing torch; the library is their home.
    from geossl.cli.probe import _DATASETS
    from geossl.evaluation.probe_data import PROBE_DATASETS

    assert _DATASETS == PROBE_DATASETS
