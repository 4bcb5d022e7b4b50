"""Tests of the fMoW downloader against a local HTTP server (127.0.0.1) with Range support."""

from __future__ import annotations

import bz2
import functools
import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from geossl.datasets.fmow import download as fmow_download
from geossl.datasets.fmow.download import FMoWDownloadError, download_fmow
from geossl.datasets.fmow.manifest import ManifestEntry, ManifestError, parse_manifest, select_files
from geossl.synthetic.fmow import generate_fmow_sample


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = (
        64  # the default backlog of 5 makes 8 parallel connects wait 1 s for a SYN retry
    )
    log: list[tuple[str, str, str | None]]
    agents: set[str]
    ignore_range: bool
    truncate_once: set[str]  # URL paths whose next GET body is cut in the middle


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with ``Range: bytes=N-`` support (SimpleHTTPRequestHandler has none)."""

    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        rng = self.headers.get("Range")
        self.server.log.append((self.command, self.path.split("?")[0], rng))
        self.server.agents.add(self.headers.get("User-Agent", ""))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        if rng and not self.server.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m, rng
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            if self.path in self.server.truncate_once:
                self.server.truncate_once.discard(self.path)
                payload = data[start:]
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated sample laid out as ``{served}/fmow-rgb/...`` with its manifest."""
    served = tmp_path_factory.mktemp("served")
    generate_fmow_sample(served / "fmow-rgb", locations=10, seed=4, image_size=(16, 40))
    return served


@pytest.fixture(scope="module")
def server(served: Path) -> Iterator[_Server]:
    handler = functools.partial(RangeHandler, directory=str(served))
    httpd = _Server(("127.0.0.1", 0), handler)
    httpd.log = []
    httpd.agents = set()
    httpd.ignore_range = False
    httpd.truncate_once = set()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def base_url(server: _Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(fmow_download, "_BACKOFF_S", 0.0)
    server.log.clear()
    server.agents.clear()
    server.ignore_range = False
    server.truncate_once.clear()
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def source_paths(served: Path) -> list[str]:
    paths = json.loads(bz2.decompress((served / "fmow-rgb" / "manifest.json.bz2").read_bytes()))
    return [str(p) for p in paths]


def expected(served: Path, splits: tuple[str, ...], products: tuple[str, ...]) -> set[str]:
    out = set()
    for p in source_paths(served):
        top = p.split("/")[0]
        split = top.removesuffix("_gt").removesuffix("_gt_mapping.json")
        if split not in splits:
            continue
        if p.endswith("_mapping.json") or p.rsplit(".", 1)[0].rsplit("_", 1)[1] in products:
            out.add(p)
    return out


def local_files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != "manifest.json.bz2"
    }


def test_full_download_byte_for_byte_then_skip(
    served: Path, server: _Server, base_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "fmow"
    splits = ("train", "val", "test", "seq")
    report = download_fmow(
        root, splits=splits, products=("rgb", "msrgb"), base_url=base_url, workers=4, progress=False
    )
    want = set(source_paths(served))
    assert local_files(root) == want
    for p in want:
        assert (root / p).read_bytes() == (served / "fmow-rgb" / p).read_bytes(), p
    assert report.downloaded == len(want)
    assert report.failed == []
    assert report.skipped_existing == 0
    assert report.bytes == sum((served / "fmow-rgb" / p).stat().st_size for p in want)
    assert (root / "manifest.json.bz2").is_file()
    assert server.agents == {fmow_download.USER_AGENT}

    server.log.clear()
    again = download_fmow(
        root, splits=splits, products=("rgb", "msrgb"), base_url=base_url, progress=False
    )
    assert again.downloaded == 0
    assert again.skipped_existing == len(want)
    assert again.bytes == 0
    assert not [r for r in server.log if r[0] == "GET"]  # manifest reused, files checked by HEAD


def test_default_selection_rgb_train_val(served: Path, base_url: str, tmp_path: Path) -> None:
    root = tmp_path / "fmow"
    report = download_fmow(root, base_url=base_url, progress=False)
    want = expected(served, ("train", "val"), ("rgb",))
    assert local_files(root) == want
    assert report.downloaded == len(want)
    assert all(p.endswith(("_rgb.jpg", "_rgb.json")) for p in want)


def test_resume_part_and_redownload_bad_size(
    served: Path, server: _Server, base_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "fmow"
    src = served / "fmow-rgb"
    jpgs = sorted(p for p in expected(served, ("train",), ("rgb",)) if p.endswith(".jpg"))
    resumed, corrupted = jpgs[0], jpgs[1]
    data = (src / resumed).read_bytes()
    half = len(data) // 2
    (root / resumed).parent.mkdir(parents=True)
    (root / (resumed + ".part")).write_bytes(data[:half])
    (root / corrupted).parent.mkdir(parents=True, exist_ok=True)
    (root / corrupted).write_bytes(b"short")
    report = download_fmow(root, splits=("train",), base_url=base_url, progress=False)
    assert report.failed == []
    assert (root / resumed).read_bytes() == data
    assert (root / corrupted).read_bytes() == (src / corrupted).read_bytes()
    assert not (root / (resumed + ".part")).exists()
    ranged = [r for r in server.log if r[0] == "GET" and r[1].endswith(resumed)]
    assert ranged == [("GET", f"/fmow-rgb/{resumed}", f"bytes={half}-")]
    assert report.downloaded == len(expected(served, ("train",), ("rgb",)))


def test_connection_cut_is_resumed(
    served: Path, server: _Server, base_url: str, tmp_path: Path
) -> None:
    src = served / "fmow-rgb"
    target = sorted(p for p in expected(served, ("val",), ("rgb",)) if p.endswith(".jpg"))[0]
    data = (src / target).read_bytes()
    server.truncate_once.add(f"/fmow-rgb/{target}")
    report = download_fmow(tmp_path / "r", splits=("val",), base_url=base_url, progress=False)
    assert report.failed == []
    assert (tmp_path / "r" / target).read_bytes() == data
    gets = [r[2] for r in server.log if r[0] == "GET" and r[1].endswith(target)]
    assert gets == [None, f"bytes={len(data) // 2}-"]


def test_server_ignoring_range_restarts(
    served: Path, server: _Server, base_url: str, tmp_path: Path
) -> None:
    server.ignore_range = True
    root = tmp_path / "fmow"
    src = served / "fmow-rgb"
    target = sorted(p for p in expected(served, ("val",), ("rgb",)) if p.endswith(".jpg"))[0]
    data = (src / target).read_bytes()
    (root / target).parent.mkdir(parents=True)
    (root / (target + ".part")).write_bytes(data[:10])
    report = download_fmow(root, splits=("val",), base_url=base_url, progress=False)
    assert report.failed == []
    assert (root / target).read_bytes() == data


def test_part_longer_than_file_restarts(served: Path, base_url: str, tmp_path: Path) -> None:
    root = tmp_path / "fmow"
    src = served / "fmow-rgb"
    target = sorted(p for p in expected(served, ("val",), ("rgb",)) if p.endswith(".json"))[0]
    data = (src / target).read_bytes()
    (root / target).parent.mkdir(parents=True)
    (root / (target + ".part")).write_bytes(data + b"garbage-after-the-end")
    report = download_fmow(root, splits=("val",), base_url=base_url, progress=False)
    assert report.failed == []
    assert (root / target).read_bytes() == data


def test_max_locations_and_splits(served: Path, base_url: str, tmp_path: Path) -> None:
    root = tmp_path / "fmow"
    download_fmow(
        root, splits=("train", "test"), max_locations=1, base_url=base_url, progress=False
    )
    files = local_files(root)
    train_locs = {"/".join(p.split("/")[:3]) for p in files if p.startswith("train/")}
    test_locs = {"/".join(p.split("/")[:2]) for p in files if p.startswith("test/")}
    gt_locs = {"/".join(p.split("/")[:3]) for p in files if p.startswith("test_gt/")}
    all_train = sorted(
        {"/".join(p.split("/")[:3]) for p in source_paths(served) if p.startswith("train/")}
    )
    assert len(train_locs) == 1
    assert train_locs <= set(all_train)
    assert len(test_locs) == 1
    assert "test_gt_mapping.json" in files
    mapping = json.loads((root / "test_gt_mapping.json").read_text())
    (test_loc,) = test_locs
    assert gt_locs == {m["input"] for m in mapping if m["output"] == test_loc}
    assert not [p for p in files if p.startswith(("val/", "seq", "seq_gt"))]
    # the whole first train location is there, rgb only
    first = [p for p in source_paths(served) if p.startswith(next(iter(train_locs)) + "/")]
    assert {p for p in first if "_rgb." in p} == {p for p in files if p.startswith("train/")}


def _serve_manifest(served: Path, name: str, entries: list[Any]) -> str:
    """A copy of the sample at ``{served}/{name}/fmow-rgb`` with its own manifest; returns name."""
    folder = served / name / "fmow-rgb"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(served / "fmow-rgb", folder)
    (folder / "manifest.json.bz2").write_bytes(bz2.compress(json.dumps(entries).encode()))
    return name


def test_404_is_reported_and_sizes_checked(served: Path, base_url: str, tmp_path: Path) -> None:
    src = served / "fmow-rgb"
    val = sorted(expected(served, ("val",), ("rgb",)))
    entries: list[Any] = [{"path": f"fmow-rgb/{p}", "size": (src / p).stat().st_size} for p in val]
    entries.append("val/airport/airport_99/airport_99_0_rgb.jpg")  # not on the server
    entries.append({"key": val[0].replace("_rgb.", "_x_rgb."), "size": 1})  # not there either
    bad_size = val[1]
    entries[1] = {"path": bad_size, "size": (src / bad_size).stat().st_size + 7}
    sub = _serve_manifest(served, "mirror404", entries)
    root = tmp_path / "fmow"
    report = download_fmow(
        root, splits=("val",), base_url=f"{base_url}/{sub}", progress=False, retries=1
    )
    failed = dict(report.failed)
    assert "404" in failed["val/airport/airport_99/airport_99_0_rgb.jpg"]
    assert "size mismatch" in failed[bad_size]
    assert not (root / bad_size).exists()
    assert len(report.failed) == 3
    assert report.downloaded == len(val) - 1
    for p in val:
        if p != bad_size:
            assert (root / p).read_bytes() == (src / p).read_bytes()


def test_all_failed_raises(served: Path, base_url: str, tmp_path: Path) -> None:
    sub = _serve_manifest(served, "mirror_none", ["train/airport/airport_77/airport_77_0_rgb.jpg"])
    with pytest.raises(FMoWDownloadError, match=r"all 1 files .* failed; first: .*HTTP 404"):
        download_fmow(tmp_path / "r", base_url=f"{base_url}/{sub}", progress=False, retries=0)


def test_unreachable_manifest_raises(base_url: str, tmp_path: Path) -> None:
    with pytest.raises(
        FMoWDownloadError,
        match=r"cannot fetch the fMoW manifest http://127\.0\.0\.1:\d+/nowhere/fmow-rgb/"
        r"manifest\.json\.bz2: HTTP 404",
    ):
        download_fmow(tmp_path / "r", base_url=f"{base_url}/nowhere", progress=False, retries=0)
    # a closed port: connection refused, retried, then one clear line
    with pytest.raises(
        FMoWDownloadError, match=r"cannot fetch the fMoW manifest http://127\.0\.0\.1:9/"
    ):
        download_fmow(tmp_path / "r2", base_url="http://127.0.0.1:9", progress=False, retries=1)
    assert not (tmp_path / "r2" / "manifest.json.bz2").exists()


def test_corrupt_manifest_raises(tmp_path: Path, base_url: str) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "manifest.json.bz2").write_bytes(b"BZh9 definitely not bz2")
    with pytest.raises(ManifestError, match=r"manifest\.json\.bz2: not a valid manifest"):
        download_fmow(root, base_url=base_url, progress=False)
    (root / "manifest.json.bz2").write_bytes(bz2.compress(b'{"files": 3}'))
    with pytest.raises(ManifestError, match="'files' is not a list"):
        download_fmow(root, base_url=base_url, progress=False)


def test_parse_manifest_shapes() -> None:
    plain = json.dumps(["fmow-rgb/train/a/a_0/a_0_0_rgb.jpg", "/val/b/b_0/b_0_0_rgb.json"]).encode()
    assert parse_manifest(bz2.compress(plain)) == [
        ManifestEntry("train/a/a_0/a_0_0_rgb.jpg"),
        ManifestEntry("val/b/b_0/b_0_0_rgb.json"),
    ]
    mapping = json.dumps({"fmow-full/x/y_0_ms.tif": 12}).encode()
    assert parse_manifest(mapping, subset="full") == [ManifestEntry("x/y_0_ms.tif", 12)]
    objs = json.dumps({"Contents": [{"Key": "a_0_rgb.jpg", "Size": "5"}]}).encode()
    assert parse_manifest(objs) == [ManifestEntry("a_0_rgb.jpg", 5)]
    with pytest.raises(ManifestError, match="bad size"):
        parse_manifest(json.dumps([{"path": "a", "size": "x"}]).encode(), where="m.json")
    with pytest.raises(ManifestError, match="not a JSON list"):
        parse_manifest(b'"just a string"')


def test_select_files_natural_order_and_products() -> None:
    paths = [
        f"train/airport/airport_{i}/airport_{i}_0_{p}.{e}"
        for i in (0, 2, 10)
        for p in ("rgb", "msrgb")
        for e in ("jpg", "json")
    ]
    sel = select_files([ManifestEntry(p) for p in paths], ["train"], ["rgb"], max_locations=2)
    assert {s.path.split("/")[2] for s in sel} == {"airport_0", "airport_2"}
    assert all("_rgb." in s.path for s in sel)


def test_unsafe_paths_are_refused(served: Path, base_url: str, tmp_path: Path) -> None:
    good = sorted(expected(served, ("train",), ("rgb",)))[0]
    sub = _serve_manifest(served, "mirror_unsafe", [good, "train/a/a_0/../../../../evil_0_rgb.jpg"])
    root = tmp_path / "r"
    report = download_fmow(root, splits=("train",), base_url=f"{base_url}/{sub}", progress=False)
    assert report.downloaded == 1
    assert [r for _, r in report.failed] == ["unsafe path in the manifest"]
    assert not (tmp_path / "evil_0_rgb.jpg").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subset": "jpeg"}, "subset"),
        ({"splits": ("train", "bogus")}, "splits"),
        ({"products": ("ms",)}, "products"),
        ({"max_locations": 0}, "max_locations"),
        ({"workers": 0}, "workers"),
        ({"base_url": "ftp://x"}, "base_url"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        download_fmow(tmp_path, progress=False, **kwargs)
