"""Atomic file output: nothing half-written is ever left under the final name."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary file lives in the same folder (so `os.replace` is an atomic rename on
    the same file system) under a hidden, process- and call-unique name. If the block raises,
    or the process is interrupted, the temporary file is removed and ``path`` keeps whatever it
    held before.

    Args:
        path: the final file name.
        keep_suffix: end the temporary name with ``path``'s suffix (``.tmp.gpkg``) instead of
            ``.tmp``, for formats whose driver checks it (GDAL's GeoPackage warns otherwise).

    Yields:
        The temporary path to write to.
    """
    final = Path(path)
    tail = f".tmp{final.suffix}" if keep_suffix else ".tmp"
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{tail}")
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        # A failed write (a full disk) names no file: name the output's folder (with several
        # outputs open at once, each of them sees the error of whichever one was written).
        raise OSError(error.errno, error.strerror, str(final.parent)) from error
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see [`atomic_output`][geossl.utils.io.atomic_output]).

    Args:
        path: the final file name.
        data: the bytes to write.
    """
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
