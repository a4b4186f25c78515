"""Tests for edvis.data.download against a local HTTP server serving a small zip built here."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edvis.cli import build_parser, main
from edvis.data import DownloadError, fetch_tiny_imagenet, open_dataset, write_dataset
from tests.conftest import logged

REPO = Path(__file__).resolve().parents[2]
NAME = "tiny-imagenet-200"


# --- a small Tiny ImageNet zip and a server for it ------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tree the zip is made from: 3 classes, 2 train and 2 val images each."""
    root = tmp_path_factory.mktemp("src") / NAME
    return write_dataset(root, classes=3, seed=0, train_per_class=2, val_per_class=2)


@pytest.fixture(scope="module")
def archive(source: Path) -> bytes:
    """``source`` zipped as the official zip is: one top-level tiny-imagenet-200/ folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, f"{NAME}/{path.relative_to(source).as_posix()}")
    return buf.getvalue()


class Server(ThreadingHTTPServer):
    body: bytes
    ranges: bool  # honour Range headers
    drops: int  # this many responses stop after drop_after bytes and close the connection
    drop_after: int
    requests: list[str | None]  # the Range header of every GET, None when absent


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        srv = self.server
        asked = self.headers.get("Range")
        srv.requests.append(asked)
        if self.path != "/tiny.zip":
            self.send_error(404)
            return
        body, start = srv.body, 0
        if asked and srv.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.drops:
            srv.drops -= 1
            payload = payload[: srv.drop_after]
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(body: bytes, ranges: bool = True, drops: int = 0, drop_after: int = 0) -> Iterator[Server]:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.body, srv.ranges, srv.drops, srv.drop_after, srv.requests = body, ranges, drops, drop_after, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def url_of(srv: Server, path: str = "/tiny.zip") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fetch(srv: Server, out: Path, archive: bytes, lines: list[str] | None = None, **kw: object) -> Path:
    """fetch_tiny_imagenet from the test server with the archive's MD5, no retry waits."""
    kw = {"md5": md5(archive), "retry_wait": 0.0, "timeout": 10.0, **kw}
    with logged() as said:
        try:
            return fetch_tiny_imagenet(out, url=url_of(srv), **kw)
        finally:
            if lines is not None:
                lines.extend(said)


def assert_same_tree(got: Path, want: Path) -> None:
    files = sorted(p.relative_to(want) for p in want.rglob("*") if p.is_file())
    assert sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (got / rel).read_bytes() == (want / rel).read_bytes(), rel


def leftovers(parent: Path) -> list[str]:
    """Everything beside the dataset folder: zips, parts, unpack folders."""
    return sorted(p.name for p in parent.iterdir() if p.name != NAME)


# --- the happy path ---------------------------------------------------------------------------


def test_download_verify_unpack_open(tmp_path: Path, source: Path, archive: bytes) -> None:
    out = tmp_path / "data" / NAME  # data/ does not exist yet
    lines: list[str] = []
    with serve(archive) as srv:
        assert fetch(srv, out, archive, lines) == out
        assert srv.requests == [None]  # one plain request, nothing to resume
    assert_same_tree(out, source)
    ds = open_dataset(out)
    assert ds.wnids == ("disc", "red-blob", "ring")
    assert (len(ds.train), len(ds.val)) == (6, 6)
    assert leftovers(out.parent) == []  # the zip is deleted once unpacked
    sha = hashlib.sha256(archive).hexdigest()
    assert any(md5(archive) in line and sha in line for line in lines), lines
    assert any(re.search(r"MB/s", line) for line in lines), lines


def test_keep_zip_and_sha256(tmp_path: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    with serve(archive) as srv:
        fetch(srv, out, archive, md5=None, sha256=hashlib.sha256(archive).hexdigest(), keep_zip=True)
    assert (tmp_path / f"{NAME}.zip").read_bytes() == archive
    assert leftovers(tmp_path) == [f"{NAME}.zip"]


def test_second_run_does_nothing(tmp_path: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    with serve(archive) as srv:
        fetch(srv, out, archive)
        lines: list[str] = []
        fetch(srv, out, archive, lines)
        assert srv.requests == [None]  # the second run asked the server nothing
    assert len(lines) == 1 and "nothing to do" in lines[0] and str(out) in lines[0]
    assert "3 classes" in lines[0]


def test_empty_out_folder_is_filled(tmp_path: Path, source: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    out.mkdir()  # as `mkdir -p` would leave it
    with serve(archive) as srv:
        fetch(srv, out, archive)
    assert_same_tree(out, source)


# --- resuming ---------------------------------------------------------------------------------


def test_dropped_connection_is_resumed_with_range(tmp_path: Path, source: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    cut = len(archive) // 3
    lines: list[str] = []
    with serve(archive, drops=2, drop_after=cut) as srv:
        fetch(srv, out, archive, lines)
        # First request: everything, cut at `cut`; second: from `cut`, cut again; third: the rest.
        assert srv.requests == [None, f"bytes={cut}-", f"bytes={2 * cut}-"]
    assert_same_tree(out, source)
    assert sum("retrying" in line for line in lines) == 2, lines


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path: Path, source: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    (tmp_path / f"{NAME}.zip.part").write_bytes(archive[:7000])
    lines: list[str] = []
    with serve(archive) as srv:
        fetch(srv, out, archive, lines)
        assert srv.requests == ["bytes=7000-"]
    assert_same_tree(out, source)
    assert any("resuming at 0.0 MB" in line for line in lines), lines


def test_complete_part_file_gets_416_and_is_used(tmp_path: Path, source: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    (tmp_path / f"{NAME}.zip.part").write_bytes(archive)  # killed after the last byte, before verifying
    with serve(archive) as srv:
        fetch(srv, out, archive)
        assert srv.requests == [f"bytes={len(archive)}-"]
    assert_same_tree(out, source)


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, source: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    # A stale part whose bytes are wrong: appending the full body to it would fail the checksum.
    (tmp_path / f"{NAME}.zip.part").write_bytes(b"x" * 5000)
    lines: list[str] = []
    with serve(archive, ranges=False, drops=1, drop_after=len(archive) // 2) as srv:
        fetch(srv, out, archive, lines)
        assert srv.requests == ["bytes=5000-", f"bytes={len(archive) // 2}-"]
    assert_same_tree(out, source)
    assert sum("ignores Range" in line for line in lines) == 2, lines


def test_no_progress_gives_up_with_the_part_kept(tmp_path: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    # Ignores Range and always drops at the same byte: each attempt gets no further.
    with serve(archive, ranges=False, drops=99, drop_after=4000) as srv:
        with pytest.raises(DownloadError) as info:
            fetch(srv, out, archive, retries=3)
        assert len(srv.requests) == 4  # the first attempt makes progress, then 3 that do not
    msg = str(info.value)
    assert url_of(srv) in msg and "3 attempts without progress" in msg and f"{NAME}.zip.part" in msg
    assert (tmp_path / f"{NAME}.zip.part").stat().st_size == 4000
    assert not out.exists()


# --- checksums and errors ---------------------------------------------------------------------


def test_checksum_mismatch_names_file_and_digests_and_does_not_unpack(tmp_path: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    wrong = md5(b"another file")
    with serve(archive) as srv, pytest.raises(DownloadError) as info:
        fetch(srv, out, archive, md5=wrong)
    msg = str(info.value)
    assert str(tmp_path / f"{NAME}.zip.part") in msg
    assert f"MD5 expected {wrong}, got {md5(archive)}" in msg
    assert not out.exists()
    assert leftovers(tmp_path) == [f"{NAME}.zip.bad"]  # kept aside, never unpacked
    assert (tmp_path / f"{NAME}.zip.bad").read_bytes() == archive


def test_swapped_zip_is_caught_before_unpacking(tmp_path: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    (tmp_path / f"{NAME}.zip").write_bytes(archive[:-1] + b"!")
    with serve(archive) as srv, pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(srv, out, archive)
    assert not out.exists()


def test_zip_that_is_not_a_dataset(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("stuff/readme.txt", "no images here")
    body = buf.getvalue()
    out = tmp_path / NAME
    with serve(body) as srv, pytest.raises(DownloadError) as info:
        fetch(srv, out, body)
    assert f"{NAME}.zip does not unpack to a usable dataset" in str(info.value)
    assert not out.exists()
    assert leftovers(tmp_path) == [f"{NAME}.zip"]


def test_out_holding_something_else(tmp_path: Path, archive: bytes) -> None:
    out = tmp_path / NAME
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with serve(archive) as srv, pytest.raises(DownloadError) as info:
        fetch(srv, out, archive)
    assert str(info.value).startswith(f"{out} already exists but is not a complete dataset")
    assert srv.requests == []
    assert (out / "notes.txt").read_text() == "mine"


def test_unreachable_server(tmp_path: Path, archive: bytes) -> None:
    with serve(archive) as srv:
        url = url_of(srv)
    # The server is closed now: every connection is refused.
    with pytest.raises(DownloadError) as info:
        fetch_tiny_imagenet(tmp_path / NAME, url=url, md5=md5(archive), retries=2, retry_wait=0.0)
    assert url in str(info.value) and "2 attempts" in str(info.value)


# --- interrupted unpacking ----------------------------------------------------------------------


def test_interrupted_unpack_leaves_no_folder_and_resumes(
    tmp_path: Path, source: Path, archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / NAME
    real_extract = zipfile.ZipFile.extract
    calls = []

    def extract_then_stop(self: zipfile.ZipFile, member: object, path: object = None, pwd: object = None) -> str:
        calls.append(member)
        if len(calls) == 5:
            raise KeyboardInterrupt  # as Ctrl-C would, half way through
        return real_extract(self, member, path, pwd)

    with serve(archive) as srv:
        monkeypatch.setattr(zipfile.ZipFile, "extract", extract_then_stop)
        with pytest.raises(KeyboardInterrupt):
            fetch(srv, out, archive)
        assert not out.exists()
        assert leftovers(tmp_path) == [f"{NAME}.zip"]  # verified zip kept; unpack folder removed
        monkeypatch.setattr(zipfile.ZipFile, "extract", real_extract)

        # A SIGKILL would skip the clean-up: leave a half unpack folder as it would.
        stale = tmp_path / f".{NAME}.unpack-killed"
        shutil.copytree(source / "train", stale / NAME / "train")
        lines: list[str] = []
        fetch(srv, out, archive, lines)
        assert srv.requests == [None]  # the zip was not fetched again
    assert any("already downloaded" in line for line in lines)
    assert_same_tree(out, source)
    assert leftovers(tmp_path) == []


# --- command line and Makefile ------------------------------------------------------------------


def test_cli_data_verb_help_for_every_flag() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    data = sub.choices["data"]
    datasets = next(a for a in data._actions if a.dest == "dataset")
    assert set(datasets.choices) == {"tiny-imagenet"}
    tiny = datasets.choices["tiny-imagenet"]
    flags = {s for a in tiny._actions for s in a.option_strings}
    assert {"--out", "--url", "--md5", "--sha256", "--keep-zip", "--retries"} <= flags
    for action in tiny._actions:
        assert action.help, action.option_strings


def test_cli_downloads_and_reports_mismatch(tmp_path: Path, archive: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / NAME
    with serve(archive) as srv:
        argv = ["data", "tiny-imagenet", "--out", str(out), "--url", url_of(srv)]
        assert main([*argv, "--md5", "0" * 32]) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("edvis: error:")]
        assert len(errors) == 1 and "Traceback" not in err
        assert f"MD5 expected {'0' * 32}, got {md5(archive)}" in errors[0]
        assert main([*argv, "--md5", md5(archive)]) == 0
    assert open_dataset(out).num_classes == 3
    assert main([*argv, "--md5", md5(archive)]) == 0
    assert "nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "culprit"),
    [(["--md5", "xyz"], "--md5: expected 32 hexadecimal digits"), (["--md5", ""], "--md5/--sha256"),
     (["--sha256", "ab"], "--sha256: expected 64"), (["--retries", "0"], "--retries")],
)
def test_cli_bad_flags(tmp_path: Path, flags: list[str], culprit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "tiny-imagenet", "--out", str(tmp_path / NAME), *flags]) == 2
    assert culprit in capsys.readouterr().err


def test_cli_http_404(tmp_path: Path, archive: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(archive) as srv:
        url = url_of(srv, "/missing.zip")
        assert main(["data", "tiny-imagenet", "--out", str(tmp_path / NAME), "--url", url]) == 2
        assert srv.requests == [None]  # a 404 is not retried
    assert f"edvis: error: cannot download {url}: HTTP 404" in capsys.readouterr().err


def _make_dry_run(data: str) -> str:
    r = subprocess.run(["make", "-n", "data", f"DATA={data}"], cwd=REPO, capture_output=True, text=True, check=True)
    return r.stdout


def test_make_data_downloads_only_a_missing_tiny_imagenet_folder(tmp_path: Path, source: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    missing = tmp_path / "data" / NAME
    assert f"edvis data tiny-imagenet --out {missing}" in _make_dry_run(str(missing))
    assert f"edvis data tiny-imagenet --out {missing}" in _make_dry_run(f"{missing}/")
    assert "edvis data" not in _make_dry_run(str(source))  # present already
    assert "edvis data" not in _make_dry_run(str(tmp_path / "other"))  # not named tiny-imagenet-200
    assert "edvis data" not in _make_dry_run("data/embedded")


def test_download_module_does_not_import_torch() -> None:
    code = "import sys, edvis.data.download; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0
