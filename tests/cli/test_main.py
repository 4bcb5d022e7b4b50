"""The ``geossl`` command: dispatch, help, one-line errors."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from geossl import __version__
from geossl.cli import COMMANDS, build_parser, main
from geossl.cli._args import split_flag

REPO = Path(__file__).resolve().parents[2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "geossl", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0
    for command in ("pretrain", "datasets", "demo"):
        assert command in result.stdout


#: What every help screen must answer without: each costs seconds to import.
HEAVY_MODULES = ("torch", "lightning", "torchgeo", "rasterio", "numpy", "pandas", "timm")


HELP_SCREENS = [
    ["--help"],
    ["--version"],
    ["pretrain", "--help"],
    ["finetune", "--help"],
    ["compare", "--help"],
    ["evaluate", "--help"],
    ["datasets", "sample", "--help"],
    ["embed", "--help"],
    ["export", "weights", "--help"],
    ["demo", "--help"],
]

_HELP_SCRIPT = """
import sys
from geossl.cli import main
for argv in ARGV:
    try:
        main(argv)
    except SystemExit as error:
        assert error.code in (0, None), (argv, error.code)
print("LOADED", sorted(m for m in HEAVY if m in sys.modules))
"""


def test_help_and_version_import_no_torch() -> None:
    # `geossl --help` took ~10 s when building the parser imported Lightning.
    script = _HELP_SCRIPT.replace("ARGV", repr(HELP_SCREENS)).replace("HEAVY", repr(HEAVY_MODULES))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "LOADED []"


def test_command_table_matches_the_parser() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(actions[0].choices) == list(COMMANDS)


def test_split_flag() -> None:
    assert split_flag(["--dataset", "fmow", "--data.root", "x"], "--dataset") == (
        "fmow",
        ["--data.root", "x"],
    )
    assert split_flag(["--dataset=fmow"], "--dataset") == ("fmow", [])
    assert split_flag(["--trainer.max_epochs", "1"], "--dataset") == (
        None,
        ["--trainer.max_epochs", "1"],
    )
    with pytest.raises(ValueError, match="--dataset needs"):
        split_flag(["--dataset"], "--dataset")


def test_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["pretrain", "--dataset", "nope"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "unknown --dataset 'nope'" in err
    assert "fmow" in err


def test_pretrain_without_data_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as excinfo:
        main(
            [
                "pretrain",
                "--config",
                str(REPO / "tests" / "conf" / "fmow_tiny.yaml"),
                "--data.root",
                str(missing),
                "--trainer.logger.init_args.save_dir",
                str(tmp_path / "runs"),
            ]
        )
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("geossl: error:")
    assert str(missing) in last
    assert "geossl datasets download fmow" in last
    assert "geossl datasets sample fmow" in last


def test_sample_command_writes_layout(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    main(["datasets", "sample", "fmow", "--output", str(out), "--locations", "6"])
    assert (out / "train").is_dir()
    assert any(out.glob("train/*/*/*_rgb.jpg"))
    # A second run refuses to overwrite without --overwrite, in one line.
    with pytest.raises(SystemExit) as excinfo:
        main(["datasets", "sample", "fmow", "--output", str(out), "--locations", "6"])
    assert excinfo.value.code == 2


def test_sample_rasters_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "stack"
    main(["datasets", "sample", "rasters", "--output", str(out), "--dates", "3"])
    assert "3 dates" in capsys.readouterr().out
    assert len(list(out.glob("*.tif"))) == 3
    with pytest.raises(SystemExit) as excinfo:  # exists: one line, exit 2
        main(["datasets", "sample", "rasters", "--output", str(out), "--dates", "3"])
    assert excinfo.value.code == 2
    main(["datasets", "sample", "rasters", "--output", str(out), "--dates", "4", "--overwrite"])
    assert len(list(out.glob("*.tif"))) == 4


def test_sample_xview_and_spacenet_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["datasets", "sample", "xview", "--output", str(tmp_path / "xv"), "--images", "2"])
    assert "1 image(s) missing on purpose" in capsys.readouterr().out
    assert (tmp_path / "xv" / "xView_train.geojson").is_file()
    assert len(list((tmp_path / "xv" / "train_images").glob("*.tif"))) == 2
    main(["datasets", "sample", "spacenet1", "--output", str(tmp_path / "sn1"), "--tiles", "2"])
    assert "2 spacenet1 chips" in capsys.readouterr().out
    assert (tmp_path / "sn1" / "SN1_buildings").is_dir()
    with pytest.raises(SystemExit) as excinfo:  # exists: one line, exit 2
        main(["datasets", "sample", "spacenet1", "--output", str(tmp_path / "sn1")])
    assert excinfo.value.code == 2


def test_fmow_sentinel_sample_and_index_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fmow-sentinel"
    main(["datasets", "sample", "fmow-sentinel", "--output", str(out), "--locations", "5"])
    assert "13-band GeoTIFFs of 5 locations" in capsys.readouterr().out
    assert (out / "train.csv").is_file()
    assert (out / "test_gt.csv").is_file()
    args = ["datasets", "index", "fmow", "--root", str(out), "--product", "sentinel"]
    main([*args, "--splits", "train", "val", "test", "--num-geo-clusters", "2"])
    assert "images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as excinfo:  # fMoW-Sentinel has no seq split: one line, exit 2
        main([*args, "--splits", "seq"])
    assert excinfo.value.code == 2
    assert "fMoW-Sentinel has the splits" in capsys.readouterr().err


def test_index_command(
    fmow_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The sample is shared: index into a private cache folder through the library, then check the
    # CLI reuses it.
    main(["datasets", "index", "fmow", "--root", str(fmow_sample), "--num-geo-clusters", "4"])
    first = capsys.readouterr().out
    assert "images" in first
    main(["datasets", "index", "fmow", "--root", str(fmow_sample), "--num-geo-clusters", "4"])
    assert "loaded from cache" in capsys.readouterr().out


def test_parser_lists_subcommands() -> None:
    help_text = build_parser().format_help()
    assert "pretrain" in help_text
    assert "datasets" in help_text
