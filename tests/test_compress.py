"""The Try it page's fp16 copies (edvis.compress): half the bytes, float32 in and out, and a
record whose deviation figures are recomputed here from both files with onnxruntime and numpy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edvis.compress import compress_epochs, fp16_path, fp16_record_path
from edvis.data import load_images
from edvis.run import RenderStore, Run
from edvis.site import SiteError, read_sources, write_site
from tests.conftest import flip


@pytest.fixture(scope="module")
def compressed(rendered_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = Run(Path(shutil.copytree(rendered_run, tmp_path_factory.mktemp("compress") / "run")))
    assert compress_epochs(run.root, [1]) == [1]
    return run


def validation_images(run: Run) -> np.ndarray:
    manifest = RenderStore(run.render_dir).manifest()
    return load_images([Path(manifest["dataset"]["root"]) / f for f in manifest["val"]["files"]])


def test_the_copy_stores_weights_as_float16_and_keeps_float32_in_and_out(compressed: Run) -> None:
    full, half = onnx.load(str(compressed.onnx(1))), onnx.load(str(fp16_path(compressed, 1)))
    assert fp16_path(compressed, 1).stat().st_size < 0.52 * compressed.onnx(1).stat().st_size
    big = [i for i in half.graph.initializer if np.prod(i.dims) >= 16]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    assert [(o.name, o.type.tensor_type.elem_type) for o in half.graph.output] == \
           [(o.name, o.type.tensor_type.elem_type) for o in full.graph.output]
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_the_record_states_the_deviation_measured_over_the_validation_set(compressed: Run) -> None:
    record = json.loads(fp16_record_path(compressed, 1).read_text())
    images = validation_images(compressed)
    out = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits", "maps"], {"images": images})
           for p in (compressed.onnx(1), fp16_path(compressed, 1))]
    (l32, m32), (l16, m16) = out
    assert record["images"] == len(images) == 9
    assert record["top1_agreement"] == np.mean(l32.argmax(1) == l16.argmax(1))
    assert record["max_map_abs_diff"] == pytest.approx(float(np.abs(m16 - m32).max()), rel=1e-6)
    assert record["max_logit_abs_diff"] == pytest.approx(float(np.abs(l16 - l32).max()), rel=1e-6)
    assert 0 < record["max_map_abs_diff"] < 1e-2  # float16 weights: a small, nonzero change
    assert record["source_sha256"] == json.loads(compressed.export_record(1).read_text())["sha256"]


def test_an_up_to_date_copy_is_kept_and_the_site_ships_it_with_its_numbers(compressed: Run, tmp_path: Path) -> None:
    assert compress_epochs(compressed.root, [1]) == []
    out = tmp_path / "site"
    write_site(read_sources(compressed.root), out, draw_figures=False, try_precision="fp16")
    assert (out / "models" / "epoch_001.fp16.onnx").read_bytes() == fp16_path(compressed, 1).read_bytes()
    assert not (out / "models" / "epoch_001.onnx").exists()
    page = (out / "try.html").read_text(encoding="utf-8")
    record = json.loads(fp16_record_path(compressed, 1).read_text())
    assert "weights stored as float16" in page and f"{100 * record['top1_agreement']:.2f}% of the images" in page


def test_a_damaged_copy_is_refused(compressed: Run, tmp_path: Path) -> None:
    run = Run(Path(shutil.copytree(compressed.root, tmp_path / "run")))
    flip(fp16_path(run, 1))
    with pytest.raises(SiteError, match=r"epoch_001\.fp16\.onnx does not match the sha256 of its record"):
        write_site(read_sources(run.root), tmp_path / "site", draw_figures=False, try_precision="fp16")
