"""Atomic file output: nothing half-written is ever left under the final name."""

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_name(final: Path, keep_suffix: bool) -> Path:
    """The hidden, process- and call-unique temporary name next to ``final``."""
    tail = f".tmp{final.suffix}" if keep_suffix else ".tmp"
    return final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{tail}")


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, keep_suffix: bool = False, durable: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary file lives in the same folder (so `os.replace` is an atomic rename on
    the same file system) under a hidden, process- and call-unique name
    (``.NAME.PID.RANDOM.tmp``). If the block raises, or the process is interrupted, the
    temporary file is removed and ``path`` keeps whatever it held before. A process killed
    outright (``kill -9``) leaves its temporary file behind:
    [`remove_stale_temporaries`][geossl.utils.io.remove_stale_temporaries] removes it later.

    Args:
        path: the final file name.
        keep_suffix: end the temporary name with ``path``'s suffix (``.tmp.gpkg``) instead of
            ``.tmp``, for formats whose driver checks it (GDAL's GeoPackage warns otherwise).
        durable: `os.fsync` the file before the rename and the folder after it, so that a
            power cut cannot leave an empty file under the final name (checkpoints).

    Yields:
        The temporary path to write to.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_output(folder / "a.txt", durable=True) as tmp:
        ...     _ = tmp.write_text("done")
        >>> [p.name for p in folder.iterdir()], (folder / "a.txt").read_text()
        (['a.txt'], 'done')
    """
    final = Path(path)
    tmp = _temporary_name(final, keep_suffix)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
        if durable:
            _sync_folder(final.parent)
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        # A failed write (a full disk) names no file: name the output's folder (with several
        # outputs open at once, each of them sees the error of whichever one was written).
        raise OSError(error.errno, error.strerror, str(final.parent)) from error
    finally:
        tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of ``path`` left by processes that no longer run.

    [`atomic_output`][geossl.utils.io.atomic_output] cleans up after itself unless the
    process is killed outright; its temporary name holds the writer's process id, so a file
    whose writer is gone is known to be an abandoned partial write.

    Args:
        path: the final file name whose temporaries to look for (in its folder).

    Returns:
        The files removed.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> orphan = folder / ".last.ckpt.999999999.0123abcd.tmp"  # no such process
        >>> _ = orphan.write_bytes(b"half")
        >>> [p.name for p in remove_stale_temporaries(folder / "last.ckpt")]
        ['.last.ckpt.999999999.0123abcd.tmp']
    """
    final = Path(path)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp(\.[^.]+)?$")
    removed: list[Path] = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            entry.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
        removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see [`atomic_output`][geossl.utils.io.atomic_output]).

    Args:
        path: the final file name.
        data: the bytes to write.
    """
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
