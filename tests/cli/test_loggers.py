"""The logger is the config's choice: TensorBoard instead of the presets' CSV logger."""

from pathlib import Path

import pytest

from geossl.cli.pretrain_cli import run_pretrain
from geossl.trainers.loss_curve import LOSS_CURVE_NAME
from tests.cli.test_pretrain_cli import tiny_args
from tests.plot_helpers import assert_readable_png

TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"


def _args(root: Path, runs: Path, *extra: str) -> list[str]:
    # jsonargparse keeps the init arguments (save_dir) that the config's CSVLogger shares with it.
    return tiny_args(root, runs, "--trainer.logger", TENSORBOARD, *extra)


def test_the_parser_accepts_a_tensorboard_logger(
    fmow_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Parsing only (no logger is built), so tensorboard need not be installed.
    with pytest.raises(SystemExit):
        run_pretrain(_args(fmow_sample, tmp_path, "--print_config"))
    printed = capsys.readouterr().out
    assert f"class_path: {TENSORBOARD}" in printed
    assert f"save_dir: {tmp_path}" in printed
    assert "name: tiny" in printed


def test_a_run_logs_to_tensorboard(fmow_sample: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="pip install geossl[tensorboard]")
    cli = run_pretrain(_args(fmow_sample, tmp_path, "--trainer.max_steps", "2"))
    run_dir = Path(str(cli.trainer.log_dir))
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert not (run_dir / "metrics.csv").exists()
    assert_readable_png(run_dir / LOSS_CURVE_NAME)  # drawn whatever the logger
