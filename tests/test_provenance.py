"""Provenance: each stage checks that its inputs are the ones its outputs claim. The site refuses a
dataset, a store or an analysis that does not match the run, names a missing unit instead of
skipping it, and publishes digests computed from the bytes it read (inputs.sha256).

Every case runs the real commands on the small rendered run of conftest.py (one epoch, the
paper's perturbations, analysed), copied first.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from edvis.cli import main
from edvis.data import write_dataset
from edvis.run import RenderStore, Run, Unit
from tests.run.test_lock import hold_in_child


@pytest.fixture
def run(rendered_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(rendered_run, tmp_path / "run"))


def edvis(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and stderr of one command."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one error line of a command that must fail."""
    code, err = edvis(capsys, *args)
    lines = [line for line in err.splitlines() if line.startswith("edvis: error:")]
    assert code != 0 and len(lines) == 1, (code, err)
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inputs_sha256_lists_every_file_read_with_its_true_digest(run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site"
    assert edvis(capsys, "site", "--run", str(run), "--out", str(out))[0] == 0
    listed = dict(reversed(line.split("  ", 1)) for line in (out / "inputs.sha256").read_text().splitlines())
    units = {f"render/{u.key}.npz" for u in RenderStore(run / "render").units()}
    assert units | {"render/manifest.json", "analysis/analysis.json", "config.json"} <= listed.keys()
    for name, digest in listed.items():  # what `sha256sum -c` would check, in the run folder
        assert digest == sha256(run / name), name
    index = (out / "index.html").read_text(encoding="utf-8")
    assert sha256(run / "analysis" / "analysis.json") in index
    assert sha256(Run(run).onnx(1)) in index  # the ONNX file the units were rendered from


def test_another_dataset_is_refused_and_a_moved_copy_accepted(run: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    other = write_dataset(tmp_path / "other", classes=3, seed=1, train_per_class=2, val_per_class=3)
    line = refused(capsys, "site", "--run", str(run), "--out", str(tmp_path / "a"), "--data", str(other))
    assert f"--data {other} is not the dataset this run was rendered from" in line
    assert not (tmp_path / "a" / "index.html").exists()
    moved = shutil.copytree(_data_of(run), tmp_path / "moved")
    assert edvis(capsys, "site", "--run", str(run), "--out", str(tmp_path / "b"), "--data", str(moved))[0] == 0


def _data_of(run: Path) -> Path:
    return Path(json.loads((run / "config.json").read_text())["dataset"]["root"])


def test_a_dataset_changed_since_rendering_is_refused(run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(shutil.copytree(_data_of(run), tmp_path / "data"))
    victim = next(p for p in sorted(data.rglob("*")) if p.is_file() and "val" in p.parts and p.suffix != ".txt")
    victim.write_bytes(victim.read_bytes() + b"\0")  # rewritten with another size
    line = refused(capsys, "site", "--run", str(run), "--out", str(tmp_path / "a"), "--data", str(data))
    assert "is not the dataset this run was rendered from" in line


def test_a_unit_rendered_again_after_the_analysis_is_refused_until_analysed(run: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # The random perturbations rendered again with another seed: new units, the old analysis.
    assert edvis(capsys, "render", "--run", str(run), "--perturbations", "paper", "--seed", "7")[0] == 0
    line = refused(capsys, "site", "--run", str(run), "--out", str(tmp_path / "a"))
    assert re.search(r"render unit \S+/epoch_001\.npz is not the one \S+analysis\.json was computed from", line)
    assert "run `edvis analyze`" in line
    assert edvis(capsys, "analyze", "--run", str(run))[0] == 0
    assert edvis(capsys, "site", "--run", str(run), "--out", str(tmp_path / "a"))[0] == 0


def test_a_missing_unit_is_named_by_analyze_and_site(run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    store = RenderStore(run / "render")
    gone = store.path(Unit("blur3", 1))
    gone.unlink()
    for command in (["site", "--run", str(run), "--out", str(tmp_path / "a")], ["analyze", "--run", str(run)]):
        line = refused(capsys, *command)
        assert f"render unit missing: {gone}" in line and "edvis render" in line, line


def test_an_exported_epoch_without_units_is_named(run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = Run(run)
    shutil.copy(r.onnx(1), r.onnx(2))  # as if epoch 2 had just been exported
    shutil.copy(r.export_record(1), r.export_record(2))
    want = RenderStore(run / "render").path(Unit("clean", 2))
    for command in (["analyze", "--run", str(run)], ["site", "--run", str(run), "--out", str(tmp_path / "a")]):
        line = refused(capsys, *command)
        assert f"render unit missing: {want}" in line, line


def test_units_of_another_onnx_file_are_refused(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = Run(run)
    record = json.loads(r.export_record(1).read_text())
    record["sha256"] = "0" * 64  # as if epoch 1 had been exported again from another checkpoint
    r.export_record(1).write_text(json.dumps(record))
    line = refused(capsys, "site", "--run", str(run), "--out", str(tmp_path / "a"))
    assert f"was rendered from another ONNX file than {r.onnx(1)}" in line and "edvis render" in line


def test_a_second_site_build_into_one_folder_is_refused(run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site"
    child = hold_in_child(out, "site")
    try:
        line = refused(capsys, "site", "--run", str(run), "--out", str(out))
        assert f"{out}: another `edvis site` is writing it" in line
    finally:
        child.kill()
        child.wait()
    assert edvis(capsys, "site", "--run", str(run), "--out", str(out))[0] == 0  # the killed holder blocks nothing
