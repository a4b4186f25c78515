"""Download Tiny ImageNet: resumable, checksum-verified, unpacked atomically, idempotent.

``edvis data tiny-imagenet --out data/tiny-imagenet-200`` leaves, beside OUT::

    OUT.zip.part        the download so far; the next run resumes it with an HTTP Range request
    OUT.zip             the whole zip, kept only while unpacking (or with keep_zip)
    OUT.zip.bad         a download whose checksum did not match (never unpacked)
    .OUT.unpack-XXXX/   unpacking in progress; renamed onto OUT when complete

OUT appears in one rename, after the unpacked tree has opened as a dataset, so a folder at OUT
is always complete; an unpack cut short leaves only a hidden ``.OUT.unpack-*`` folder, which
the next run deletes. Standard library only (urllib, zipfile, hashlib); imports no torch.

The official zip's MD5 is widely published; no SHA-256 is, so the MD5 is checked by default
and ``sha256`` adds a SHA-256 check when you have one (both are logged after verifying).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO

from edvis.data.dataset import DatasetError, open_dataset
from edvis.errors import EdvisError, UsageError

log = logging.getLogger(__name__)

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
_HEX = {"md5": re.compile(r"^[0-9a-f]{32}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}
# Worth another attempt: the server or the network may recover.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})



class DownloadError(EdvisError):
    """A download, checksum or unpack failed; the message names the URL or file at fault."""



class _Meter:
    """Logs bytes done, share of the total, and MB/s at most once per ``interval`` seconds."""

    def __init__(self, start: int, total: int | None, interval: float = 2.0) -> None:
        self.total, self.interval = total, interval
        self.start_bytes = start
        self.t0 = self.last = time.monotonic()

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        rate = (done - self.start_bytes) / max(now - self.t0, 1e-9) / 1e6
        text = f"download: {done / 1e6:.1f}"
        if self.total:
            text += f" / {self.total / 1e6:.1f} MB ({100 * done / self.total:.0f}%)"
            if rate > 0:
                text += f", {(self.total - done) / 1e6 / rate:.0f} s left"
        else:
            text += " MB"
        log.info(f"{text} at {rate:.1f} MB/s")


def check_digests(md5: str | None, sha256: str | None) -> dict[str, str]:
    """The expected digests as {algorithm: lowercase hex}; at least one must be given."""
    wanted = {name: value.strip().lower() for name, value in (("md5", md5), ("sha256", sha256)) if value}
    if not wanted:
        raise UsageError("--md5/--sha256: give at least one checksum of the zip")
    for name, value in wanted.items():
        if not _HEX[name].match(value):
            digits = 32 if name == "md5" else 64
            raise UsageError(f"--{name}: expected {digits} hexadecimal digits, got {value!r}")
    return wanted


def file_digests(path: Path) -> dict[str, str]:
    """MD5 and SHA-256 of a file, in one pass."""
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def verify(path: Path, expected: dict[str, str]) -> dict[str, str]:
    """Check ``path`` against ``expected``; on a mismatch move it to ``*.bad`` and raise."""
    try:
        got = file_digests(path)
    except OSError as e:
        raise DownloadError(f"cannot read {path}: {e.strerror or e}") from None
    wrong = [name for name, value in expected.items() if got[name] != value]
    if wrong:
        bad = path.with_name(path.name.removesuffix(".part") + ".bad")
        os.replace(path, bad)
        detail = "; ".join(f"{name.upper()} expected {expected[name]}, got {got[name]}" for name in wrong)
        raise DownloadError(
            f"checksum mismatch for {path}: {detail}; it was not unpacked and is now {bad} "
            "(rerun to download again)"
        )
    log.info(f"verified {path.name}: " + ", ".join(f"{name.upper()} {value}" for name, value in got.items()))
    return got


def download(
    url: str,
    part: Path,
    *,
    retries: int = 5,
    retry_wait: float = 1.0,
    timeout: float = 60.0,
) -> int:
    """Fetch ``url`` into ``part``, resuming what it already holds; returns its final size.

    An existing ``part`` is continued with ``Range: bytes=N-``. A server that answers 200
    (ignoring the range) is read from the start again, overwriting ``part``. A dropped
    connection is retried with the same resume; ``retries`` attempts in a row that do not
    get further than before give up with a DownloadError (``part`` is kept for next time).
    """
    failures, best = 0, part.stat().st_size if part.exists() else 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        try:
            if _attempt(url, part, have, timeout):
                return part.stat().st_size
            reason = "the connection closed before the end of the file"
        except urllib.error.HTTPError as e:
            if e.code not in _RETRY_STATUS:
                raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
            reason = f"HTTP {e.code} {e.reason}"
        except urllib.error.URLError as e:
            reason = str(e.reason)
        except (http.client.HTTPException, OSError) as e:  # dropped, reset or timed out
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        except ValueError as e:  # not a URL urllib can fetch
            raise DownloadError(f"cannot download {url!r}: {e}") from None
        size = part.stat().st_size if part.exists() else 0
        if size > best:
            failures, best = 0, size
        else:
            failures += 1
        if failures >= retries:
            then = f"rerun to resume from {part} ({size / 1e6:.1f} MB)" if size else "rerun when it is reachable"
            raise DownloadError(f"cannot download {url}: {reason} ({retries} attempts without progress); {then}")
        wait = min(retry_wait * 2 ** max(failures - 1, 0), 30.0)
        log.info(f"download: {reason}; retrying in {wait:.0f} s from {size / 1e6:.1f} MB")
        time.sleep(wait)


def _attempt(url: str, part: Path, have: int, timeout: float) -> bool:
    """One request; True when ``part`` now holds the whole file, False when cut short."""
    headers = {"User-Agent": "edvis", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        # Range Not Satisfiable: either part already holds the whole file or it is too long.
        total = _parse_total(e.headers.get("Content-Range"))
        e.close()
        if total == have:
            return True
        log.info(f"download: {part} does not fit the file on the server; starting again")
        _truncate(part)
        return False
    with response:
        total: int | None = None
        mode = "wb"
        if response.status == 206:
            m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if m and m.group(1) is not None and int(m.group(1)) == have:
                mode = "ab"
                total = None if m.group(3) == "*" else int(m.group(3))
            else:  # a range other than the one asked for: do not stitch it on
                log.info("download: the server answered with another byte range; starting again")
                _truncate(part)
                return False
        else:
            if have:
                log.info("download: the server ignores Range requests; starting again from the beginning")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        done = have if mode == "ab" else 0
        meter = _Meter(done, total)
        with _open_for_write(part, mode) as f:
            while True:
                block = response.read(_CHUNK)  # network errors go to download()'s retry
                if not block:
                    break
                try:
                    f.write(block)
                except OSError as e:  # e.g. the disk is full: retrying will not help
                    raise DownloadError(f"cannot write {part}: {e.strerror or e}") from None
                done += len(block)
                meter.update(done)
            f.flush()
            os.fsync(f.fileno())
        meter.update(done, force=True)
    if total is None:
        return True
    if done > total:
        log.info(f"download: {part} is longer than the file on the server; starting again")
        _truncate(part)
        return False
    return done == total


def _open_for_write(path: Path, mode: str) -> BinaryIO:
    try:
        return open(path, mode)
    except OSError as e:
        raise DownloadError(f"cannot write {path}: {e.strerror or e}") from None


def _parse_total(content_range: str | None) -> int | None:
    m = _CONTENT_RANGE.match(content_range or "")
    return int(m.group(3)) if m and m.group(3) != "*" else None


def _truncate(path: Path) -> None:
    with open(path, "wb"):
        pass


def unpack(zip_path: Path, out: Path) -> Path:
    """Unpack ``zip_path`` so that its content appears at ``out`` in one rename.

    A zip holding one top-level folder (as Tiny ImageNet's does) has that folder become
    ``out``. The tree must open with :func:`edvis.data.dataset.open_dataset` before it is renamed.
    """
    _remove_stale_unpacks(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.unpack-", dir=out.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = zf.infolist()
                t0 = last = time.monotonic()
                for i, info in enumerate(members, 1):
                    zf.extract(info, tmp)  # zipfile drops absolute paths and ".." components
                    now = time.monotonic()
                    if now - last >= 2.0 or i == len(members):
                        last = now
                        log.info(f"unpack: {i}/{len(members)} files ({i / max(now - t0, 1e-9):.0f} files/s)")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
            raise DownloadError(f"cannot unpack {zip_path}: not a readable zip file ({e})") from None
        except OSError as e:
            raise DownloadError(f"cannot unpack {zip_path} into {tmp}: {e.strerror or e}") from None
        entries = [p for p in tmp.iterdir() if not p.name.startswith("__MACOSX")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        try:
            ds = open_dataset(root)
        except DatasetError as e:
            raise DownloadError(f"{zip_path} does not unpack to a usable dataset: {e}") from None
        log.info(f"unpack: {ds.num_classes} classes, {len(ds.train)} train and {len(ds.val)} val images")
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # an empty folder made beforehand, e.g. by mkdir -p
        try:
            os.rename(root, out)
        except OSError as e:
            raise DownloadError(f"cannot move the unpacked dataset to {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _remove_stale_unpacks(out: Path) -> None:
    """Delete what an unpack killed before its rename left behind."""
    for stale in out.parent.glob(f".{out.name}.unpack-*"):
        shutil.rmtree(stale, ignore_errors=True)


def fetch_tiny_imagenet(
    out: str | Path,
    url: str = TINY_IMAGENET_URL,
    md5: str | None = TINY_IMAGENET_MD5,
    sha256: str | None = None,
    keep_zip: bool = False,
    retries: int = 5,
    retry_wait: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Make ``out`` hold Tiny ImageNet (download, verify, unpack); returns ``out``.

    Does nothing when ``out`` already holds a dataset. Every step resumes: a partial
    download continues where it stopped and a verified zip is not fetched again.
    """
    expected = check_digests(md5, sha256)
    if retries < 1:
        raise UsageError(f"--retries must be at least 1, got {retries}")
    out = Path(out).expanduser().absolute()
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        try:
            ds = open_dataset(out)
        except DatasetError as e:
            raise DownloadError(
                f"{out} already exists but is not a complete dataset ({e}); "
                "move it away or choose another --out"
            ) from None
        log.info(f"data: {out} already holds {ds.num_classes} classes "
            f"({len(ds.train)} train, {len(ds.val)} val images); nothing to do")
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {out.parent}: {e.strerror or e}") from None
    zip_path = out.with_name(out.name + ".zip")
    part = zip_path.with_name(zip_path.name + ".part")

    if zip_path.exists():
        # Left by a run stopped while unpacking; checked again in case the file was swapped.
        log.info(f"data: {zip_path} is already downloaded")
        verify(zip_path, expected)
    else:
        have = part.stat().st_size if part.exists() else 0
        log.info(f"data: downloading {url} to {part}" + (f" (resuming at {have / 1e6:.1f} MB)" if have else ""))
        download(url, part, retries=retries, retry_wait=retry_wait, timeout=timeout)
        verify(part, expected)
        os.replace(part, zip_path)
    unpack(zip_path, out)
    if not keep_zip:
        zip_path.unlink()
    log.info(f"data: {out} is ready" + (f" ({zip_path} kept)" if keep_zip else ""))
    return out
