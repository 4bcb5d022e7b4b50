"""Atomic file output: nothing half-written is ever left under the final name."""

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary file lives in the same folder (so :func:`os.replace` is an atomic rename on
    the same file system) under a hidden, process- and call-unique name. If the block raises,
    or the process is interrupted, the temporary file is removed and ``path`` keeps whatever it
    held before.

    Args:
        path: the final file name.

    Yields:
        The temporary path to write to.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`).

    Args:
        path: the final file name.
        data: the bytes to write.
    """
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def prepare_sample_folder(
    root: str | os.PathLike[str], overwrite: bool, owned: Iterable[str]
) -> Path:
    """Create the output folder of a sample generator, or clear what the generator owns in it.

    A non-empty folder is refused unless ``overwrite``; then only the ``owned`` entries (folders
    removed recursively, files and links unlinked) go, never unrelated files in the folder.

    Args:
        root: the output folder.
        overwrite: replace the generator's own entries of a non-empty folder.
        owned: the entries, relative to ``root``, that the generator writes.

    Returns:
        ``root`` as a path, existing.

    Raises:
        FileExistsError: when ``root`` is a file, or a non-empty folder without ``overwrite``.
    """
    folder = Path(root)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: output exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{folder}: output folder is not empty (pass overwrite=True to replace it)"
            )
        for name in owned:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
