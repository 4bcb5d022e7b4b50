"""The one line ``geossl`` prints for a user's error, and ``--debug`` for its traceback."""

import errno
import os
from pathlib import Path

import pytest
import torch

from geossl.cli import main
from geossl.cli.user_errors import argument_error_line, os_error_line, user_error_line
from tests.payload_helpers import PicklePayload
from tests.pretrain_helpers import shared_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "conf" / "fmow_tiny.yaml"


def _pretrain(root: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "pretrain",
        *("--config", str(TINY), "--data.root", str(root)),
        *(
            "--data.cache_dir",
            str(runs / "index"),
            "--trainer.logger.init_args.save_dir",
            str(runs),
        ),
        *extra,
    ]


def _error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``geossl ARGV``: exit 2 and stderr ending in one error line, which is returned."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "usage:" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("geossl: error: ")
    return last


def test_evaluate_refuses_a_pickle_payload_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "geossl_task": "fmow-cls", "x": PicklePayload(marker)}, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    line = _error_of(["evaluate", str(evil)], capsys)
    assert line.startswith(f"geossl: error: {evil}: refused: it holds pickled Python objects")
    assert "weights_only" not in line
    assert not marker.exists()


def test_resuming_into_another_backbone_lists_a_few_keys(
    fmow_sample: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)  # a resnet18 run
    extra = ("--ckpt_path", str(ckpt), "--model.backbone", "resnet50", "--trainer.max_steps", "5")
    line = _error_of(_pretrain(fmow_sample, tmp_path, *extra), capsys)
    assert line.startswith(f"geossl: error: {ckpt}: its tensors do not fit the GeoSSLTask: ")
    assert " missing (backbone.layer1.0.conv3.weight, " in line
    assert line.count("backbone.") <= 6  # three keys of each kind; torch lists hundreds
    assert "config.yaml" in line


def test_evaluate_on_a_pretraining_checkpoint_says_to_finetune(
    fmow_sample: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = shared_tiny_checkpoint(fmow_sample, tmp_path_factory)
    for extra in ([], ["--task", "fmow-linear"]):  # --task gave a state-dict traceback
        line = _error_of(["evaluate", str(ckpt), *extra], capsys)
        assert f"{ckpt}: a pretraining checkpoint (geossl pretrain), not a fine-tuned" in line
        assert "geossl finetune --task TASK --weights" in line


def test_a_bad_option_value_is_one_line_naming_option_value_and_type(
    fmow_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # jsonargparse printed 79 lines: the usage and the union of every data module type.
    args = _pretrain(fmow_sample, tmp_path, "--data.batch_size", "abc")
    line = _error_of(args, capsys)
    assert line.startswith("geossl: error: --data.batch_size: expected int, got 'abc'")


def test_a_yaml_syntax_error_names_the_file_and_line(
    fmow_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trainer:\n  max_steps: 4\n bad: [\n")
    line = _error_of(_pretrain(fmow_sample, tmp_path, f"--config={config}"), capsys)
    assert line.startswith(f"geossl: error: {config}:3:2: not valid YAML: ")
    finetune = ["finetune", "--task", "fmow-cls", "--config", str(config)]
    assert f"{config}:3:2: not valid YAML" in _error_of(finetune, capsys)


def test_a_read_only_output_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders: chmod cannot refuse it")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        argv = ["datasets", "sample", "rasters", "--output", str(folder / "stack")]
        line = _error_of(argv, capsys)
    finally:
        folder.chmod(0o755)
    assert str(folder / "stack") in line
    assert "permission denied" in line


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only"), (errno.ENOSPC, "no space")],
)
def test_an_output_that_cannot_be_written_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    says: str,
) -> None:
    out = tmp_path / "stack"

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    line = _error_of(["datasets", "sample", "rasters", "--output", str(out)], capsys)
    assert line.startswith(f"geossl: error: {out}")
    assert says in line


def test_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.ckpt")
    assert "checkpoint not found" in _error_of(["evaluate", missing], capsys)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(["--debug", "evaluate", missing])
    monkeypatch.setenv("GEOSSL_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(["evaluate", missing])
    assert "--debug" in _help(capsys)


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


def test_a_bug_keeps_its_traceback() -> None:
    assert user_error_line(KeyError("x")) is None
    assert user_error_line(RuntimeError("x")) is None
    assert os_error_line(ConnectionResetError(errno.ECONNRESET, "reset")) is None


def test_argument_error_lines() -> None:
    union = (
        'Parser key "trainer.max_epochs":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [<class 'int'>, <class 'NoneType'>]\n  Errors:\n"
        "    - Expected a <class 'int'>\n    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'str'>\n  Given value: abc"
    )
    assert argument_error_line(union).startswith(
        "--trainer.max_epochs: expected int or null, got 'abc' ("
    )
    choice = "Parser key \"model.normalization\":\n  Expected a typing.Literal['auto', 'data']. "
    assert argument_error_line(choice + "Got value: foo").startswith(
        "--model.normalization: expected one of 'auto', 'data', got 'foo'"
    )
    unknown = (
        'Parser key "data":\n  Does not validate against any of the Union subtypes\n  Errors:\n'
        "    - Problem with given class_path 'geossl.datamodules.FMoWDataModule':\n"
        "        Option 'batchsize' is not accepted\n    - Expected a <class 'NoneType'>"
    )
    assert argument_error_line(unknown).startswith("--data.batchsize: no such option (")
    assert argument_error_line("Unrecognized arguments: --x 1").startswith(
        "Unrecognized arguments: --x 1 (--help"
    )
    repeated = 'Parser key "config":\n  Parser key "config": File does not exist: \'x.yaml\''
    assert argument_error_line(repeated) == "--config: File does not exist: 'x.yaml'"
