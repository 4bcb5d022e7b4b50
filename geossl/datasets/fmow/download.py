"""Resumable, size-checked downloader of fMoW from the public SpaceNet S3 bucket (HTTPS).

The bucket holds two releases, each with a ``manifest.json.bz2`` listing its files:

* ``{base_url}/fmow-rgb/`` (JPEG, about 200 GB): ``_rgb.jpg`` / ``_msrgb.jpg`` and their ``.json``;
* ``{base_url}/fmow-full/`` (GeoTIFF, about 3.5 TB): ``_rgb.tif`` / ``_ms.tif`` and their ``.json``.

[`download_fmow`][geossl.datasets.fmow.download.download_fmow] fetches the manifest (kept at
``{root}/manifest.json.bz2`` and reused), selects the files of the requested splits, products and
first locations, and downloads each one to ``{root}/{path}`` through ``{path}.part``: an existing
``.part`` is resumed with an HTTP ``Range`` request (a server that ignores ``Range`` and answers
``200`` restarts the file), the final size is checked against the manifest size or
``Content-Length`` before ``os.replace`` gives the file its name, so a file under its final name is
always complete. Files already present with the expected size are skipped. Failures are retried with
exponential backoff and reported, not raised, unless every file fails. Only the standard library's
``urllib`` is used.

The bucket can also be copied with the AWS CLI::

    aws s3 sync --no-sign-request s3://spacenet-dataset/Hosted-Datasets/fmow/fmow-rgb/ DIR
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from geossl import __version__
from geossl.datasets.fmow.constants import FMOW_ANONYMOUS_SPLITS, FMOW_SPLITS
from geossl.datasets.fmow.manifest import (
    ManifestEntry,
    ManifestError,
    _safe_relative,
    parse_manifest,
    select_files,
)

__all__ = ["FMOW_BASE_URL", "DownloadReport", "FMoWDownloadError", "download_fmow"]

logger = logging.getLogger(__name__)


#: Public HTTPS root of the fMoW releases (``fmow-rgb/`` and ``fmow-full/`` live under it).
FMOW_BASE_URL = "https://spacenet-dataset.s3.amazonaws.com/Hosted-Datasets/fmow"


#: The products each subset offers (the ``{product}`` of ``..._{t}_{product}.{ext}``) and the
#: default.
SUBSET_PRODUCTS: dict[str, tuple[str, ...]] = {"rgb": ("rgb", "msrgb"), "full": ("rgb", "ms")}


DEFAULT_PRODUCTS: dict[str, tuple[str, ...]] = {"rgb": ("rgb",), "full": ("rgb", "ms")}


USER_AGENT = f"geossl/{__version__} (fMoW downloader; +https://github.com/geossl/geossl)"


TIMEOUT_S = 60.0  # per connect / read


_CHUNK = 1 << 20


_BACKOFF_S = 1.0  # first retry delay; doubles on every retry (patched to 0 by the tests)


_BACKOFF_MAX_S = 30.0


_PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410})


class FMoWDownloadError(OSError):
    """The manifest could not be fetched, or every file failed; the message is one line."""


@dataclass(frozen=True)
class DownloadReport:
    """What [`download_fmow`][geossl.datasets.fmow.download.download_fmow] did.

    Attributes:
        downloaded: files downloaded (completely, size-checked) in this run.
        skipped_existing: files already on disk with the expected size.
        failed: ``(path, reason)`` of every file that could not be downloaded.
        bytes: bytes received in this run (resumed files count only the new part).
    """

    downloaded: int = 0
    skipped_existing: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0


class _RetryableError(Exception):
    """A transient failure: worth another attempt."""


class _PermanentError(Exception):
    """A failure that another attempt will not fix (404, unsafe path, ...)."""


def _url(base: str, subset: str, path: str) -> str:
    return f"{base.rstrip('/')}/fmow-{subset}/{urllib.parse.quote(path, safe='/')}"


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> HTTPResponse:
    req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    resp: HTTPResponse = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    return resp


def _classify(exc: BaseException) -> Exception:
    """Turn an urllib / socket error into a retryable or permanent one with a short reason."""
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
        return _PermanentError(reason) if exc.code in _PERMANENT_HTTP else _RetryableError(reason)
    if isinstance(exc, urllib.error.URLError):
        return _RetryableError(f"{type(exc.reason).__name__}: {exc.reason}")
    return _RetryableError(f"{type(exc).__name__}: {exc}")


def _head_size(url: str) -> int | None:
    try:
        with _request(url, "HEAD") as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None else None
    except (OSError, HTTPException, ValueError):
        return None


def _with_retries(
    func: Callable[[], Any], retries: int, what: str, sleep: Callable[[float], None] = time.sleep
) -> Any:
    """Call ``func`` up to ``retries + 1`` times with exponential backoff on retryable errors."""
    delay = _BACKOFF_S
    for attempt in range(retries + 1):
        try:
            return func()
        except _PermanentError:
            raise
        except _RetryableError as exc:
            if attempt == retries:
                raise
            logger.info("%s: %s; retry %d/%d in %.1f s", what, exc, attempt + 1, retries, delay)
            sleep(delay)
            delay = min(delay * 2.0, _BACKOFF_MAX_S)
    raise AssertionError("unreachable")  # pragma: no cover


def _download_once(url: str, dest: Path, expected: int | None, counter: list[int]) -> None:
    """One attempt: resume or start ``dest.part``, check its size, rename it to ``dest``."""
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if expected is not None and offset > expected:
        part.unlink()
        offset = 0
    if expected is not None and offset == expected and offset > 0:
        os.replace(part, dest)
        return
    headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
    try:
        resp = _request(url, headers=headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:  # the .part is not a prefix we can extend: start over
            part.unlink(missing_ok=True)
            raise _RetryableError("HTTP 416 on resume; restarting the file") from None
        raise _classify(exc) from None
    except (OSError, HTTPException) as exc:
        raise _classify(exc) from None
    with resp:
        total: int | None = None
        if resp.status == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _RetryableError("bad Content-Range on resume; restarting the file")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:  # 200: the whole file (a server that ignores Range lands here too)
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
            offset = 0
            mode = "wb"
        if expected is not None and total is not None and total != expected:
            raise _PermanentError(f"size mismatch: server has {total} bytes, manifest {expected}")
        try:
            with open(part, mode) as fh:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    counter[0] += len(chunk)
        except (OSError, HTTPException) as exc:  # timeouts, resets, IncompleteRead
            raise _classify(exc) from None
    size = part.stat().st_size
    want = expected if expected is not None else total
    if want is not None and size != want:
        if size > want:
            part.unlink(missing_ok=True)
        raise _RetryableError(f"size mismatch: got {size} bytes, expected {want}")
    os.replace(part, dest)


def _fetch_manifest(root: Path, subset: str, base_url: str, retries: int) -> list[ManifestEntry]:
    local = root / "manifest.json.bz2"
    url = _url(base_url, subset, "manifest.json.bz2")
    if not local.is_file():
        root.mkdir(parents=True, exist_ok=True)
        counter = [0]
        try:
            _with_retries(
                lambda: _download_once(url, local, None, counter), retries, f"manifest {url}"
            )
        except (_RetryableError, _PermanentError) as exc:
            raise FMoWDownloadError(f"cannot fetch the fMoW manifest {url}: {exc}") from None
    try:
        return parse_manifest(local.read_bytes(), subset, str(local))
    except ManifestError as exc:
        raise ManifestError(f"{exc} (delete it to fetch it again from {url})") from None


def _read_mappings(
    root: Path, splits: Sequence[str], entries: Sequence[ManifestEntry]
) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    names = {e.path for e in entries}
    for split in splits:
        name = f"{split}_gt_mapping.json"
        if name not in names or not (root / name).is_file():
            continue
        try:
            data = json.loads((root / name).read_text())
        except (OSError, ValueError) as exc:
            logger.warning("%s: unreadable mapping (%s); keeping the first gt folders", name, exc)
            continue
        if isinstance(data, list):
            out[split] = [d for d in data if isinstance(d, dict)]
    return out


def _check_download_arguments(
    subset: str,
    splits: Sequence[str],
    products: Sequence[str] | None,
    max_locations: int | None,
    workers: int,
    retries: int,
    base_url: str,
) -> tuple[Sequence[str], tuple[str, ...]]:
    """Check `download_fmow`'s arguments; return the splits and the products (defaulted).

    Raises:
        ValueError: on a bad argument.
    """
    if subset not in SUBSET_PRODUCTS:
        raise ValueError(f"subset must be 'rgb' or 'full', got {subset!r}")
    if isinstance(splits, str):
        splits = (splits,)
    bad = [s for s in splits if s not in FMOW_SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be among {list(FMOW_SPLITS)}, got {list(splits)}")
    prods = tuple(DEFAULT_PRODUCTS[subset] if products is None else products)
    unknown = [p for p in prods if p not in SUBSET_PRODUCTS[subset]]
    if unknown or not prods:
        raise ValueError(
            f"products for fmow-{subset} must be among {list(SUBSET_PRODUCTS[subset])}, got "
            f"{list(prods)}"
        )
    if max_locations is not None and (isinstance(max_locations, bool) or max_locations < 1):
        raise ValueError(f"max_locations must be a positive integer or None, got {max_locations!r}")
    if workers < 1 or retries < 0:
        raise ValueError(f"workers must be >= 1 and retries >= 0, got {workers} and {retries}")
    if not base_url.startswith(("https://", "http://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    return splits, prods


class _Downloader:
    """Fetches manifest entries on a thread pool, counting files, bytes and failures."""

    def __init__(self, root: Path, subset: str, base_url: str, workers: int, retries: int) -> None:
        self.root = root
        self.subset = subset
        self.base_url = base_url
        self.workers = workers
        self.retries = retries
        self.failed: list[tuple[str, str]] = []
        self.counter = [0]  # bytes written, also by interrupted downloads
        self.lock = threading.Lock()
        self.stats = {"downloaded": 0, "skipped": 0}

    def fetch(self, entry: ManifestEntry) -> None:
        """Download one file unless it is already complete (its size is the expected one)."""
        if not _safe_relative(entry.path):
            raise _PermanentError("unsafe path in the manifest")
        dest = self.root / entry.path
        url = _url(self.base_url, self.subset, entry.path)
        if dest.is_file():
            expected = entry.size if entry.size is not None else _head_size(url)
            if expected is not None and dest.stat().st_size == expected:
                with self.lock:
                    self.stats["skipped"] += 1
                return
        dest.parent.mkdir(parents=True, exist_ok=True)
        local = [0]
        try:
            _with_retries(
                lambda: _download_once(url, dest, entry.size, local), self.retries, entry.path
            )
        finally:
            with self.lock:
                self.counter[0] += local[0]
        with self.lock:
            self.stats["downloaded"] += 1

    def run(self, batch: Sequence[ManifestEntry], bar: tqdm[Any]) -> None:
        """Fetch ``batch`` on `workers` threads; failures go to `failed`."""
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fmow-dl") as pool:
            futures = {pool.submit(self.fetch, e): e for e in batch}
            for fut in as_completed(futures):
                entry = futures[fut]
                try:
                    fut.result()
                except (_RetryableError, _PermanentError) as exc:
                    self.failed.append((entry.path, str(exc)))
                    logger.warning("%s: %s", entry.path, exc)
                except (OSError, HTTPException, ValueError) as exc:  # disk errors, bad headers
                    self.failed.append((entry.path, f"{type(exc).__name__}: {exc}"))
                bar.update(1)
                bar.set_postfix_str(f"{self.counter[0] / 1e6:.1f} MB", refresh=False)

    def report(self, selected: Sequence[ManifestEntry]) -> DownloadReport:
        """The report of the downloads of ``selected``, failures sorted by path.

        Raises:
            FMoWDownloadError: when every file of ``selected`` failed.
        """
        report_failed = self.failed
        report_failed.sort()
        if selected and report_failed and len(report_failed) == len(selected):
            path, reason = report_failed[0]
            raise FMoWDownloadError(
                f"all {len(selected)} files from {_url(self.base_url, self.subset, '')} failed; "
                f"first: {path}: {reason}"
            )
        return DownloadReport(
            downloaded=self.stats["downloaded"],
            skipped_existing=self.stats["skipped"],
            failed=report_failed,
            bytes=self.counter[0],
        )


def download_fmow(
    root: str | Path,
    subset: Literal["rgb", "full"] = "rgb",
    splits: Sequence[str] = ("train", "val"),
    *,
    max_locations: int | None = None,
    products: Sequence[str] | None = None,
    base_url: str = FMOW_BASE_URL,
    workers: int = 8,
    retries: int = 3,
    progress: bool = True,
) -> DownloadReport:
    """Download (part of) fMoW-rgb or fMoW-full into ``root``, resumably and size-checked.

    Each manifest path ``P`` is fetched from ``{base_url}/fmow-{subset}/P`` into ``{root}/P``.
    Test/seq splits also bring ``{split}_gt_mapping.json`` and their ``{split}_gt/`` JSONs. Running
    it again completes an interrupted download and skips the files that are already complete.

    Args:
        root: the local dataset root.
        subset: ``"rgb"`` (JPEG, ~200 GB) or ``"full"`` (GeoTIFF, ~3.5 TB).
        splits: splits among ``train``, ``val``, ``test``, ``seq``.
        max_locations: per split, keep only the first N location folders (natural sort order); for a
            quick start. ``None`` keeps all.
        products: which images (each with its ``.json``): ``rgb``/``msrgb`` for ``subset="rgb"``,
            ``rgb``/``ms`` for ``"full"``. Default ``("rgb",)`` for rgb and ``("rgb", "ms")`` for
            full.
        base_url: the HTTPS root above ``fmow-{subset}/`` (a mirror, or a local server in tests).
        workers: concurrent downloads.
        retries: further attempts per file after a transient failure (exponential backoff).
        progress: show a progress bar over files.

    Returns:
        A [`DownloadReport`][geossl.datasets.fmow.download.DownloadReport]; files that failed are
        listed in ``failed``.

    Raises:
        ValueError: on a bad argument.
        FMoWDownloadError: when the manifest cannot be fetched, or every selected file failed.
        ManifestError: when the manifest cannot be parsed.
    """
    splits, prods = _check_download_arguments(
        subset, splits, products, max_locations, workers, retries, base_url
    )
    root = Path(root)
    entries = _fetch_manifest(root, subset, base_url, retries)
    selected = select_files(entries, splits, prods)
    downloader = _Downloader(root, subset, base_url, workers, retries)
    if not selected:
        logger.warning(
            "no file of fmow-%s matches splits=%s products=%s", subset, list(splits), list(prods)
        )
    with tqdm(total=0, unit="file", desc=f"fmow-{subset}", disable=not progress) as bar:
        if max_locations is not None and any(s in FMOW_ANONYMOUS_SPLITS for s in splits):
            # the mappings decide which ground-truth folders belong to the kept test/seq ids
            maps = [e for e in selected if "/" not in e.path]
            bar.total = len(maps)
            downloader.run(maps, bar)
            mappings = _read_mappings(root, splits, entries)
            selected = select_files(entries, splits, prods, max_locations, mappings)
            rest = [e for e in selected if "/" in e.path]
        else:
            selected = select_files(entries, splits, prods, max_locations)
            rest = selected
        bar.total = (bar.total or 0) + len(rest)
        bar.refresh()
        downloader.run(rest, bar)

    return downloader.report(selected)
