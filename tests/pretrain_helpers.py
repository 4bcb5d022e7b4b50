"""A real, tiny pretraining checkpoint for the export / weights tests (resnet18, 32 px, CPU)."""

from pathlib import Path

import pytest

from geossl.cli.pretrain_cli import run_pretrain

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "conf" / "fmow_tiny.yaml"

#: One shared checkpoint per session and sample (tests only read it).
_SHARED: dict[Path, Path] = {}


def train_tiny_checkpoint(root: Path, workdir: Path, *extra: str) -> Path:
    """Pretrain ``tests/conf/fmow_tiny.yaml`` for 2 steps on ``root``; return ``last.ckpt``.

    ``extra`` LightningCLI arguments come last, so they override the defaults here.
    """
    cli = run_pretrain(
        [
            "--config",
            str(TINY),
            "--data.root",
            str(root),
            "--data.cache_dir",
            str(workdir / "index"),
            "--trainer.logger.init_args.save_dir",
            str(workdir),
            "--trainer.max_steps",
            "2",
            *extra,
        ]
    )
    callback = cli.trainer.checkpoint_callback
    assert callback is not None
    path = Path(getattr(callback, "last_model_path", ""))
    assert path.is_file(), path
    return path


def shared_tiny_checkpoint(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`train_tiny_checkpoint` once per session for ``root`` (read-only for the tests)."""
    if root not in _SHARED:
        _SHARED[root] = train_tiny_checkpoint(root, tmp_path_factory.mktemp("tiny-pretrain"))
    return _SHARED[root]
