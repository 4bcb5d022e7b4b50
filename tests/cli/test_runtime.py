"""The CLI's quiet start: Lightning's litlogger tip is dropped, its other messages are kept."""

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning
import pytest
from lightning.pytorch.loggers import CSVLogger

from geossl.cli.runtime import _RANK_ZERO_LOGGERS, quiet_lightning


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_messages() -> Iterator[_Collect]:
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in _RANK_ZERO_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def _start_a_trainer(tmp_path: Path) -> None:
    lightning.Trainer(logger=CSVLogger(tmp_path), enable_progress_bar=False)


def test_lightning_prints_the_tip_without_it(tmp_path: Path, lightning_messages: _Collect) -> None:
    # The premise: a Trainer with a logger advertises litlogger (Lightning 2.6).
    for logger in (logging.getLogger(name) for name in _RANK_ZERO_LOGGERS):
        for f in [f for f in logger.filters if type(f).__name__ == "_DropLitLoggerTip"]:
            logger.removeFilter(f)
    _start_a_trainer(tmp_path)
    assert any("litlogger" in m for m in lightning_messages.messages)


def test_quiet_lightning_drops_the_litlogger_tip(
    tmp_path: Path, lightning_messages: _Collect
) -> None:
    # lightly's benchmarking module imports the standalone pytorch_lightning, which makes its
    # own logger the one that Lightning's rank-zero messages go to: the filter covers it too.
    import lightly.utils.benchmarking  # noqa: F401

    quiet_lightning()
    quiet_lightning()  # idempotent
    _start_a_trainer(tmp_path)
    assert not any("litlogger" in m for m in lightning_messages.messages)
    assert any("GPU available" in m for m in lightning_messages.messages)
    for name in _RANK_ZERO_LOGGERS:
        assert len(logging.getLogger(name).filters) <= 1


def test_resolve_device_auto_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from geossl.cli.runtime import resolve_device

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    # torchrun: one process per GPU, each on its own.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("auto") == "cuda:2"
    assert resolve_device("cpu") == "cpu"
