"""Checkpoints are written atomically: a full disk or a kill never breaks ``last.ckpt``."""

import builtins
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.trainers.checkpoint_io import AtomicCheckpointIO
from tests.interrupt_helpers import tiny_trainer

REPO = Path(__file__).resolve().parents[2]


class _FullDiskFile(io.FileIO):
    """A file on a disk with ``room`` bytes left: the write that does not fit raises ENOSPC."""

    room = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.tell() + len(view) > self.room:
            super().write(view[: max(0, self.room - self.tell())])  # what fits is written
            raise OSError(errno.ENOSPC, "No space left on device", self.name)
        return super().write(view)


def _fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path, room: int) -> None:
    """Make ``folder``'s file system full after ``room`` bytes per file, the rest of disk fine.

    Files staged elsewhere (the system temporary folder) are on another file system: renaming
    them into ``folder`` fails with EXDEV, so they are copied, as across real file systems.
    """
    real_open, real_rename = builtins.open, os.rename
    _FullDiskFile.room = room

    def inside(path: Any) -> bool:
        return isinstance(path, str | os.PathLike) and Path(os.fspath(path)).parent == folder

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if inside(file) and "w" in mode:
            raw = _FullDiskFile(os.fspath(file), "w")
            return raw if "b" in mode else io.TextIOWrapper(raw)
        return real_open(file, mode, *args, **kwargs)

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if inside(dst) and not inside(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link", os.fspath(src))
        real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False)  # copy through open()'s files


def test_a_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.ckpt"
    checkpoint_io = AtomicCheckpointIO()
    checkpoint_io.save_checkpoint({"step": 1}, target)
    _fill_disk(monkeypatch, tmp_path, room=4096)
    with pytest.raises((OSError, RuntimeError)):  # torch reports the writer's error as either
        checkpoint_io.save_checkpoint({"step": 2, "w": torch.zeros(100_000)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_a_kill_while_saving_leaves_the_previous_checkpoint_and_no_orphan(tmp_path: Path) -> None:
    folder, system_tmp = tmp_path / "checkpoints", tmp_path / "system-tmp"
    system_tmp.mkdir()
    code = "import sys; from tests.interrupt_helpers import save_until_killed; "
    code += "save_until_killed(sys.argv[1], 65536)"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(system_tmp)}
    killed = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True)
    assert killed.returncode < 0 or killed.returncode > 128, killed.stderr.decode()[-2000:]
    target = folder / "last.ckpt"
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p for p in system_tmp.rglob("*") if p.is_file()] == []  # nothing staged in /tmp
    (partial,) = (p for p in folder.iterdir() if p != target)  # the killed write, hidden
    assert partial.name.startswith(".last.ckpt.")
    # The next save of that name removes what the killed process left.
    AtomicCheckpointIO().save_checkpoint({"step": 3}, target)
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]
    assert torch.load(target, weights_only=True) == {"step": 3}


def test_remote_paths_and_storage_options_keep_lightnings_behaviour(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "a.ckpt", storage_options={"x": 1})
    AtomicCheckpointIO().save_checkpoint({"step": 1}, f"memory://{tmp_path}/a.ckpt")
    assert not (tmp_path / "a.ckpt").exists()


def test_the_trainer_saves_last_ckpt_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from geossl.trainers.checkpoint_io import use_atomic_checkpoints
    from tests.interrupt_helpers import TinyRegression

    saved: list[str] = []
    real_save = AtomicCheckpointIO.save_checkpoint

    def spy(self: AtomicCheckpointIO, checkpoint: dict[str, Any], path: Any, **kwargs: Any) -> None:
        saved.append(Path(path).name)
        real_save(self, checkpoint, path, **kwargs)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", spy)
    trainer = tiny_trainer(tmp_path, ModelCheckpoint(save_last=True), max_epochs=1)
    use_atomic_checkpoints(trainer)
    trainer.fit(TinyRegression())
    # ModelCheckpoint's epoch checkpoint and its last.ckpt (a save, not a copy) both go through it.
    assert saved == ["epoch=0-step=8.ckpt", "last.ckpt"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch=0-step=8.ckpt",
        "last.ckpt",
    ]
