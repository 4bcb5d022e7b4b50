import errno
from pathlib import Path

import pytest

from geossl.utils.io import atomic_output, atomic_write_bytes


def test_atomic_output_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # not visible before the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_keeps_old_file_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def write_then_fail() -> None:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_then_fail()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_write_bytes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert (tmp_path / "a.json").read_bytes() == b"{}"


def test_atomic_output_can_keep_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "chips.gpkg"
    with atomic_output(target, keep_suffix=True) as tmp:
        assert tmp.name.startswith(".chips.gpkg.")
        assert tmp.name.endswith(".tmp.gpkg")
        tmp.write_text("x")
    assert target.read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["chips.gpkg"]


def test_a_full_disk_names_the_output_folder(tmp_path: Path) -> None:
    # A write that fails for lack of space names no file; the error names the output's folder.
    target = tmp_path / "out" / "a.json"
    target.parent.mkdir()

    def write_on_a_full_disk() -> None:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left") as caught:
        write_on_a_full_disk()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(target.parent)
    assert list(target.parent.iterdir()) == []  # nothing half-written left


def test_remove_stale_temporaries_keeps_those_of_running_writers(tmp_path: Path) -> None:
    import os

    from geossl.utils.io import remove_stale_temporaries

    target = tmp_path / "last.ckpt"
    with atomic_output(target) as live:  # this process writes it: not stale
        live.write_bytes(b"being written")
        dead = tmp_path / ".last.ckpt.999999999.0123abcd.tmp"  # no such process
        dead.write_bytes(b"half")
        other = tmp_path / f".other.ckpt.{os.getpid() + 10**8}.0123abcd.tmp"  # another name
        other.write_bytes(b"x")
        assert remove_stale_temporaries(target) == [dead]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
    assert target.read_bytes() == b"being written"


def test_a_durable_output_is_synced_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    synced: list[bool] = []
    real_fsync = os.fsync
    target = tmp_path / "a.bin"

    def fsync(fd: int) -> None:
        synced.append(target.exists())  # False: the file, before it has its name; True: folder
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_output(target, durable=True) as tmp:
        tmp.write_bytes(b"data")
    assert synced == [False, True]
    assert target.read_bytes() == b"data"
