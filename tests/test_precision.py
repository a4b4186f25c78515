"""Precision options: int8 and fp16 files beside the float32 ones, each rendered and analysed
into its own folders (float32 results untouched), each measured against float32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edvis.cli import main
from edvis.errors import UsageError
from edvis.precision import calibration_indices
from edvis.run import Run


def test_each_precision_names_its_own_folders(tmp_path: Path):
    assert (Run(tmp_path).onnx_dir, Run(tmp_path).render_dir) == (tmp_path / "onnx", tmp_path / "render")
    r = Run(tmp_path, "int8")
    assert (r.onnx_dir, r.render_dir, r.analysis_dir) == (tmp_path / "onnx-int8", tmp_path / "render-int8",
                                                          tmp_path / "analysis-int8")
    assert r.checkpoint_dir == tmp_path / "checkpoints" and r.config_path == tmp_path / "config.json"
    with pytest.raises(UsageError, match=r"--precision must be one of \('fp32', 'fp16', 'int8'\), got 'int4'"):
        Run(tmp_path, "int4")


def test_calibration_images_are_a_seeded_sorted_draw_without_repeats():
    a = calibration_indices(100, 10, seed=0)
    assert len(a) == 10 and len(set(a.tolist())) == 10 and list(a) == sorted(a) and a.max() < 100
    assert np.array_equal(a, calibration_indices(100, 10, seed=0))
    assert not np.array_equal(a, calibration_indices(100, 10, seed=1))
    assert list(calibration_indices(5, 10, seed=3)) == [0, 1, 2, 3, 4]  # all of them when fewer
    with pytest.raises(UsageError, match="--calibration-images must be at least 1"):
        calibration_indices(5, 0, seed=0)


def _digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_int8_renders_into_its_own_store_and_leaves_fp32_alone(rendered_run: Path, tmp_path: Path, said):
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    fp32_before = _digests(run / "render") | {f"a/{k}": v for k, v in _digests(run / "analysis").items()}
    assert main(["export", "--run", str(run), "--precision", "int8", "--calibration-images", "4"]) == 0
    record = json.loads((run / "onnx-int8" / "epoch_001.json").read_text())
    fp32_record = json.loads((run / "onnx" / "epoch_001.json").read_text())
    assert record["source"]["sha256"] == fp32_record["sha256"] and record["calibration"] == 4
    assert record["outputs"] == fp32_record["outputs"]  # the layers page's outputs are kept
    report = json.loads((run / "onnx-int8" / "report.json").read_text())
    assert report["precision"] == "int8" and report["images"] == 9 and 0 <= report["top1_agreement"] <= 1
    assert report["map_max_abs_dev"] >= report["map_mean_abs_dev"] >= 0 and "pointing_change" in report
    assert any(line.startswith("export: int8 vs fp32 at epoch 1 on 9 validation images") for line in said)
    onnx_bytes = (run / "onnx-int8" / "epoch_001.onnx").read_bytes()
    assert main(["export", "--run", str(run), "--precision", "int8", "--calibration-images", "4"]) == 0
    assert (run / "onnx-int8" / "epoch_001.onnx").read_bytes() == onnx_bytes  # up to date: not converted again
    assert main(["render", "--run", str(run), "--precision", "int8", "--provider", "cpu", "--perturbations"]) == 0
    assert main(["analyze", "--run", str(run), "--precision", "int8"]) == 0
    assert json.loads((run / "render-int8" / "manifest.json").read_text())["precision"] == "int8"
    assert (run / "render-int8" / "clean" / "epoch_001.npz").is_file()
    assert (run / "analysis-int8" / "analysis.json").is_file()
    after = _digests(run / "render") | {f"a/{k}": v for k, v in _digests(run / "analysis").items()}
    assert after == fp32_before


def test_render_of_a_precision_not_exported_names_the_command(rendered_run: Path, tmp_path: Path, said):
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    assert main(["render", "--run", str(run), "--precision", "fp16", "--provider", "cpu"]) == 2
    assert any("onnx-fp16" in line and "edvis export" in line for line in said)


def test_the_report_points_with_boxes_scaled_to_the_image_the_model_sees(rendered_run: Path, tmp_path: Path):
    """Images of 128 px seen at 64: a box on the top-left quarter of the file covers 0..31 of
    what the model sees, not 0..63 (the whole image)."""
    import onnxruntime as ort
    from PIL import Image

    from edvis.analyze.metrics import localisation
    from edvis.data import load_images, open_dataset
    from edvis.precision import report_run

    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    shutil.copytree(run / "onnx", run / "onnx-int8")  # the float32 files as the "int8" ones: same maps
    data = tmp_path / "data128"
    shutil.copytree(open_dataset(json.loads((run / "config.json").read_text())["dataset"]["root"]).root, data)
    lines, want = [], []
    for n, line in enumerate((data / "val" / "val_annotations.txt").read_text().splitlines()):
        name, wnid = line.split("\t")[:2]
        path = data / "val" / "images" / name
        Image.open(path).convert("RGB").resize((128, 128), Image.NEAREST).save(path)
        corner = (0, 0, 63, 63) if n % 2 == 0 else (64, 64, 127, 127)  # top-left or bottom-right quarter
        lines.append("\t".join([name, wnid, *map(str, corner)]))
        want.append([v // 2 for v in corner])  # at 64 px: 0..31 or 32..63
    (data / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ds = open_dataset(data)
    images = load_images([s.path for s in ds.val], size=64)
    labels = np.array([s.label for s in ds.val])
    session = ort.InferenceSession((run / "onnx" / "epoch_001.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    maps = session.run(["maps"], {"images": images})[0][np.arange(len(labels)), labels]
    expected = localisation(maps, np.array(want), 64)["pointing"]
    unscaled = localisation(maps, np.minimum([list(s.box) for s in ds.val], 63), 64)["pointing"]
    assert expected != unscaled  # the test tells the two apart
    report = report_run(run, "int8", data_root=data)
    assert report["reference_pointing"] == report["pointing"] == pytest.approx(expected)


def test_int8_export_prints_each_line_once(rendered_run: Path, tmp_path: Path):
    """onnxruntime's quantisation module calls logging.basicConfig when imported; the export's
    lines must not come out a second time through it ("INFO:edvis.precision:...")."""
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    done = subprocess.run([sys.executable, "-m", "edvis", "export", "--run", str(run), "--precision", "int8",
                           "--calibration-images", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert sum(line.startswith("export: int8 vs fp32 at epoch 1") for line in lines) == 1
    assert not [line for line in lines if line.startswith("INFO:")]


def test_a_precision_s_messages_name_the_command_with_its_flag(rendered_run: Path, tmp_path: Path, said):
    """Following the message mends the file: `edvis export` alone leaves onnx-int8/ as it is."""
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    assert main(["analyze", "--run", str(run), "--precision", "int8"]) == 2
    assert said[-1] == (f"edvis: error: no render store at {run / 'render-int8'} "
                        "(run `edvis render --precision int8` first)")
    shutil.copytree(run / "onnx", run / "onnx-int8")
    data = bytearray((run / "onnx-int8" / "epoch_001.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run / "onnx-int8" / "epoch_001.onnx").write_bytes(bytes(data))
    assert main(["render", "--run", str(run), "--precision", "int8", "--provider", "cpu", "--perturbations"]) == 2
    assert said[-1].startswith(f"edvis: error: ONNX file {run / 'onnx-int8' / 'epoch_001.onnx'} is damaged")
    assert said[-1].endswith("; run `edvis export --precision int8` to export it again")
    (run / "onnx-int8" / "epoch_001.onnx").unlink()
    assert main(["render", "--run", str(run), "--precision", "int8", "--provider", "cpu", "--perturbations"]) == 2
    assert said[-1] == (f"edvis: error: no ONNX files in {run / 'onnx-int8'} "
                        "(run `edvis export --precision int8` first)")


def test_a_report_of_another_file_is_measured_again(rendered_run: Path, tmp_path: Path):
    """An export killed after converting but before measuring leaves the report of the file
    before: the next export measures the file there now."""
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    args = ["export", "--run", str(run), "--precision", "int8", "--calibration-images", "2"]
    assert main(args) == 0
    path = run / "onnx-int8" / "report.json"
    current = json.loads(path.read_text())
    assert current["onnx_sha256"] == json.loads((run / "onnx-int8" / "epoch_001.json").read_text())["sha256"]
    path.write_text(json.dumps({**current, "onnx_sha256": "0" * 64, "top1_agreement": 0.25}))
    assert main(args) == 0
    assert json.loads(path.read_text())["onnx_sha256"] == current["onnx_sha256"]
    assert json.loads(path.read_text())["top1_agreement"] == current["top1_agreement"]
