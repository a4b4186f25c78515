"""One tiny run through every stage: synth → train → export → render → site."""

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edvis.cli import main
from edvis.run import RenderStore, Run, Unit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    data, run, out = tmp / "data", tmp / "run", tmp / "site"
    assert main(["synth", "--out", str(data), "--classes", "3", "--train-per-class", "6", "--val-per-class", "3"]) == 0
    assert main(["train", "--data", str(data), "--run", str(run), "--epochs", "2", "--batch-size", "6",
                 "--device", "cpu"]) == 0
    # build.py: export → render → site, as `make site` runs it.
    proc = subprocess.run([sys.executable, str(REPO / "build.py"), "--run", str(run), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return data, run, out, proc.stderr


def test_every_stage_wrote_every_epoch(built):
    _, run, out, log = built
    r = Run(run)
    assert r.checkpoint_epochs() == [1, 2] and r.onnx_epochs() == [1, 2]
    store = RenderStore(r.render_dir)
    assert store.perturbations() == sorted(["clean", "gray", "blur3", "blur5", "bgr", "brg", "sp0.0005", "sp0.005"])
    for p in store.perturbations():
        assert store.epochs(p) == [1, 2]
    assert "CUDA" not in log  # a CPU-only machine shows no CUDA noise
    assert (out / "index.html").is_file()


def test_the_methods_and_their_faithfulness_are_measured_and_shown(built):
    _, run, out, _ = built
    doc = json.loads((run / "analysis" / "analysis.json").read_text(encoding="utf-8"))
    faith = doc["faithfulness"]
    assert faith["epochs"] == [1, 2] and faith["settings"] == ["clean"]  # first, middle (2 of [1, 2]) and last
    assert set(faith["methods"]) == {"model", "gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam",
                                     "centre", "random"}
    assert all(0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1 for r in faith["rows"])
    assert {r["method"] for r in doc["sanity"]["random_logit"]} >= {"gradcam", "own"}
    for method in ("gradcam", "scorecam"):
        assert RenderStore(run / "explain" / method).units() == [Unit("clean", 1), Unit("clean", 2)]
    assert (out / "faithfulness.html").is_file() and (out / "compare.html").is_file()


def test_onnxruntime_accuracy_equals_the_training_log(built):
    # metrics.jsonl comes from PyTorch in training; the store from onnxruntime: they must agree.
    _, run, _, _ = built
    store = RenderStore(Run(run).render_dir)
    labels = np.array(store.manifest()["val"]["labels"])
    for row in Run(run).read_metrics():
        top5 = store.read(Unit("clean", row["epoch"]))["top5"]
        assert (top5[:, 0] == labels).mean() == pytest.approx(row["val_top1"], abs=1 / len(labels) + 1e-9)


def test_analysis_agrees_with_the_training_log(built):
    # build.py ran analyze: its clean top-1 per epoch is PyTorch's validation accuracy
    _, run, _, _ = built
    doc = json.loads((run / "analysis" / "analysis.json").read_text(encoding="utf-8"))
    clean = {r["epoch"]: r for r in doc["epoch_rows"] if r["setting"] == "clean"}
    for row in Run(run).read_metrics():
        assert clean[row["epoch"]]["top1"] == pytest.approx(row["val_top1"], abs=1 / 9 + 1e-4)
    assert [r["setting"] for r in doc["table"]] == ["clean", "gray", "blur3", "blur5", "bgr", "brg", "sp0.0005",
                                                     "sp0.005"]
    assert [c["name"] for c in doc["classes"]] == ["disc", "red blob", "ring"]


def test_pages_hold_class_names_and_logged_accuracies(built):
    _, run, out, _ = built
    index = (out / "index.html").read_text(encoding="utf-8")
    classes = (out / "classes.html").read_text(encoding="utf-8")
    for name in ("disc", "red blob", "ring"):
        assert html.escape(name) in classes
    for row in Run(run).read_metrics():
        assert f"{100 * row['val_top1']:.2f}%" in index
    pages = sorted((out / "classes").glob("*.html"))
    assert len(pages) == 3
    assert "red blob" in pages[1].read_text(encoding="utf-8")
    # every relative link and source on every page resolves to a file in the site
    for page in sorted(out.rglob("*.html")):
        for ref in re.findall(r'(?<![\w-])(?:href|src)="([^"#?]+)', page.read_text(encoding="utf-8")):
            if not ref.startswith(("http:", "https:", "mailto:")):
                assert (page.parent / html.unescape(ref)).resolve().is_file(), (page, ref)


def test_rerun_is_a_no_op(built):
    _, run, out, _ = built
    proc = subprocess.run([sys.executable, str(REPO / "build.py"), "--run", str(run), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "export: all 2 epochs up to date" in proc.stderr
    assert "render: all 2 epochs × 8 setting(s) up to date" in proc.stderr
    assert f"analyze: {run / 'analysis' / 'analysis.json'} up to date" in proc.stderr
    assert "explain: gradcam: all 2 epochs × 1 setting(s) up to date" in proc.stderr
    assert "faithfulness: all 2 (setting, epoch) file(s) up to date" in proc.stderr
    assert "explain: sanity checks of epoch 2 up to date" in proc.stderr
    assert json.loads(Run(run).config_path.read_text())["train"]["epochs"] == 2


def test_a_perturbed_unit_equals_direct_inference_on_perturbed_images(built):
    import onnxruntime as ort

    from edvis.data import PERTURBATIONS, load_image
    from edvis.run import softmax

    data, run, _, _ = built
    store = RenderStore(Run(run).render_dir)
    files = store.manifest()["val"]["files"]
    n = len(files)
    for name in ("gray", "sp0.005"):
        images = np.stack([PERTURBATIONS[name](load_image(Path(data) / f), i) for i, f in enumerate(files)])
        session = ort.InferenceSession(str(Run(run).onnx(2)), providers=["CPUExecutionProvider"])
        logits, _ = session.run(["logits", "maps"], {"images": images})
        got = store.read(Unit(name, 2))["probs"].astype(np.float32)
        np.testing.assert_allclose(got, softmax(logits), atol=2e-3)  # stored as float16
    assert n == 9


def test_adding_a_perturbation_renders_only_its_units(built, tmp_path):
    _, run, _, _ = built
    r = subprocess.run([sys.executable, "-m", "edvis", "render", "--run", str(run), "--perturbations", "paper",
                        "jpeg-5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "render: 2 unit(s)" in r.stderr
    assert RenderStore(Run(run).render_dir).epochs("jpeg-5") == [1, 2]
    bad = subprocess.run([sys.executable, "-m", "edvis", "render", "--run", str(run), "--perturbations", "fog"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "'fog'" in bad.stderr


def test_a_torchvision_model_runs_through_every_stage_at_its_own_map_size(tmp_path):
    # MobileNetV3-Small (its hidden head layer moved ahead of the pooling) at 96 px: 3×3 maps,
    # so no mosaics (--recipe author).
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "site"
    assert main(["synth", "--out", str(data), "--classes", "2", "--train-per-class", "2", "--val-per-class", "2"]) == 0
    assert main(["train", "--data", str(data), "--run", str(run), "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                 "--model", "torchvision:mobilenet_v3_small", "--image-size", "96", "--recipe", "author",
                 "--workers", "0"]) == 0
    for argv in (["export"], ["render", "--perturbations"], ["analyze"], ["site", "--out", str(out)]):
        assert main([argv[0], "--run", str(run), *argv[1:]]) == 0, argv
    store = RenderStore(Run(run).render_dir)
    assert store.manifest()["map_size"] == 3 and store.manifest()["image_size"] == 96  # 96 / 32
    assert store.read(Unit("clean", 1), ("map_true",), ())["map_true"].shape == (4, 3, 3)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "torchvision:mobilenet_v3_small · 3×3 maps at 96 px · 2 classes" in page
    assert (out / "layers.html").is_file()  # the taps found from the model
