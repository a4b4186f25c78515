"""Integrity: every file a later stage reads is verified against the digest recorded when it was
written. Damage (a few bytes flipped, the size kept) is refused in one line naming the file and the
command that rebuilds it, or rebuilt by that command when its source is sound.

The checkpoint and ONNX cases are in test_export.py and tests/run/test_checkpoint.py; here the
render store's files (units, layer files, manifest), old stores without digests, the digests the
store reports, merging, and a full disk during a render.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edvis.cli import main
from edvis.run import DamagedError, RenderStore, Run, Unit, atomic
from edvis.run.digest import sidecar
from tests.conftest import flip
from tests.test_bad_inputs import checkpoints, data, error_line, exported  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, exported: Path) -> Path:  # noqa: F811
    """``exported``, rendered (clean images only; made once, copy before use)."""
    run = Path(shutil.copytree(exported, tmp_path_factory.mktemp("rendered") / "run"))
    assert main(["render", "--run", str(run), "--perturbations"]) == 0
    return run


@pytest.fixture
def run(rendered: Path, tmp_path: Path) -> Run:
    return Run(Path(shutil.copytree(rendered, tmp_path / "run")))


def render(run: Run) -> int:
    return main(["render", "--run", str(run.root), "--perturbations"])


def test_every_store_file_has_its_digest_and_the_store_reports_what_it_verified(run: Run) -> None:
    store = RenderStore(run.render_dir)
    files = [store.manifest_path, store.path(Unit("clean", 1)), store.layers_path(1)]
    for f in files:
        assert sidecar(f).read_text().split()[0] == hashlib.sha256(f.read_bytes()).hexdigest()
    store.manifest()
    store.read(Unit("clean", 1))
    store.read_layers(1)
    want = {f.relative_to(store.root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert store.verified() == want
    assert store.digest(store.path(Unit("clean", 1))) == want["clean/epoch_001.npz"]
    assert store.units() == [Unit("clean", 1)]  # sidecars are no units


@pytest.mark.parametrize("kind", ["unit", "layers", "manifest"])
def test_a_damaged_store_file_is_refused_by_readers_and_rendered_again(run: Run, kind: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    store = RenderStore(run.render_dir)
    path = {"unit": store.path(Unit("clean", 1)), "layers": store.layers_path(1), "manifest": store.manifest_path}[kind]
    good = path.read_bytes()
    flip(path)
    read = {"unit": lambda s: s.read(Unit("clean", 1)), "layers": lambda s: s.read_layers(1),
            "manifest": lambda s: s.manifest()}[kind]
    with pytest.raises(DamagedError, match=f"{path} is damaged: its bytes") as e:
        read(RenderStore(run.render_dir))
    assert str(e.value).endswith("; run `edvis render` to render it again") and "\n" not in str(e.value)
    if kind != "manifest":
        with pytest.raises(DamagedError, match="is damaged"):
            (RenderStore(run.render_dir).meta(Unit("clean", 1)) if kind == "unit"
             else RenderStore(run.render_dir).layers_meta(1))
    if kind != "layers":  # analyze reads no layer file
        line = error_line(capsys, "analyze", "--run", run.root)
        assert line.startswith("edvis: error: ") and str(path) in line
    assert render(run) == 0  # the ONNX file is sound: the file is written again
    assert path.read_bytes() == good
    read(RenderStore(run.render_dir))


def test_a_store_without_digests_is_rendered_again_and_refused_until_then(run: Run) -> None:
    """A store of an edvis before digests (no .sha256 files): readers refuse, render redoes it."""
    store = RenderStore(run.render_dir)
    for f in store.root.rglob("*.sha256"):
        f.unlink()
    with pytest.raises(DamagedError, match="has no recorded digest .*; run `edvis render` to render it again"):
        RenderStore(run.render_dir).read(Unit("clean", 1))
    assert render(run) == 0
    assert RenderStore(run.render_dir).read(Unit("clean", 1))["probs"].shape[0] == 6
    assert sidecar(store.layers_path(1)).is_file() and sidecar(store.manifest_path).is_file()


def test_a_merge_refuses_a_damaged_source_unit(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = Path(shutil.copytree(run.root, tmp_path / "other"))
    shutil.rmtree(run.render_dir)
    flip(other / "render" / "clean" / "epoch_001.npz")
    line = error_line(capsys, "render", "--run", run.root, "--merge", other)
    assert line.startswith(f"edvis: error: render unit {other / 'render' / 'clean' / 'epoch_001.npz'} is damaged")
    assert not RenderStore(run.render_dir).path(Unit("clean", 1)).exists()


def test_a_full_disk_during_a_render_is_one_line_and_leaves_no_stray_file(
        run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(run.render_dir / "clean")
    real = atomic.write_bytes

    def full(path: str | os.PathLike[str], payload: bytes) -> None:
        if Path(path).suffix == ".npz":
            with atomic.atomic_path(path) as tmp:
                tmp.write_bytes(payload[: len(payload) // 2])  # part of it fits, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, payload)

    monkeypatch.setattr(atomic, "write_bytes", full)
    line = error_line(capsys, "render", "--run", run.root, "--perturbations")
    unit = RenderStore(run.render_dir).path(Unit("clean", 1))
    assert line in (f"edvis: error: {unit}: No space left on device",
                    f"edvis: error: {RenderStore(run.render_dir).layers_path(1)}: No space left on device")
    left = sorted(p.relative_to(run.render_dir).as_posix() for p in run.render_dir.rglob("*") if p.is_file())
    assert not [p for p in left if ".tmp-" in p]
    npz = {p for p in left if p.endswith(".npz")}
    assert {p.removesuffix(".sha256") for p in left if p.endswith(".npz.sha256")} == npz  # none without its digest
    monkeypatch.setattr(atomic, "write_bytes", real)
    assert render(run) == 0


def test_a_damaged_unit_bytes_are_hashed_once_per_read(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """read() reads the file once and parses those bytes (no second open by np.load)."""
    opened: list[str] = []
    real = Path.read_bytes

    def counting(self: Path) -> bytes:
        opened.append(self.name)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    monkeypatch.setattr(np, "load", _only_from_memory(np.load))
    RenderStore(run.render_dir).read(Unit("clean", 1))
    assert opened == ["epoch_001.npz"]


def _only_from_memory(load):  # noqa: ANN001, ANN202
    def wrapped(file, *args, **kwargs):  # noqa: ANN001, ANN202
        assert not isinstance(file, str | os.PathLike), "np.load was given a path: the file is read twice"
        return load(file, *args, **kwargs)

    return wrapped


def test_a_damaged_explanation_unit_names_the_command_that_computes_it(run: Run, tmp_path) -> None:
    """A unit of RUN/explain/<method>/ is written by `edvis explain`, not `edvis render`."""
    import shutil

    dest = tmp_path / "run" / "explain" / "gradcam"
    shutil.copytree(run.render_dir, dest, ignore=shutil.ignore_patterns("layers"))
    path = RenderStore(dest).path(Unit("clean", 1))
    flip(path)
    with pytest.raises(DamagedError, match=f"{path} is damaged: its bytes") as e:
        RenderStore(dest).read(Unit("clean", 1))
    assert str(e.value).endswith("; run `edvis explain --method gradcam` to compute it again")
