"""``edvis faithfulness`` end to end on the small rendered run, then ``edvis analyze``."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edvis.cli import main
from edvis.data import image_subset
from edvis.run import RenderStore, Unit, digest


def load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    data, _ = digest.read_verified(path, "faithfulness file", "")
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files if k != "meta"}, json.loads(str(z["meta"]))


@pytest.fixture
def run(rendered_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(rendered_run, tmp_path / "run"))


def test_faithfulness_then_analyze(run: Path, said: list[str]):
    assert main(["faithfulness", "--run", str(run), "--images", "6", "--steps", "4", "--settings", "clean", "sp0.005"]) == 0
    path = run / "faithfulness" / "clean" / "epoch_001.npz"
    arrays, meta = load(path)
    assert meta["methods"] == ["model", "centre", "random"] and meta["steps"] == 4
    assert arrays["deletion"].shape == arrays["insertion"].shape == (3, 6, 5)
    assert arrays["full"].shape == (6,) and arrays["masked"].shape == (3, 6) and arrays["covered"].all()
    store = RenderStore(run / "render")
    labels = np.asarray(store.manifest()["val"]["labels"])
    assert arrays["index"].tolist() == image_subset(labels, 6, 0).tolist()
    assert any("img/s" in line and "left" in line for line in said)
    # Y is the probability render computed for the same images (kept as float16 there), clean and
    # under a random perturbation: the images are perturbed as render perturbs them.
    for setting in ("clean", "sp0.005"):
        a, _ = load(run / "faithfulness" / setting / "epoch_001.npz")
        probs = store.read(Unit(setting, 1), ("probs",), ())["probs"].astype(np.float64)
        assert np.abs(a["full"] - probs[a["index"], a["labels"]]).max() < 2e-3
        assert np.allclose(a["deletion"][:, :, 0], a["full"]) and np.allclose(a["insertion"][:, :, -1], a["full"])

    # One point by hand: the first image with the 16 cells its model map ranks highest blurred.
    import onnxruntime as ort

    from edvis.data import load_images, open_dataset
    from edvis.data.perturb import gaussian_blur

    i = int(arrays["index"][0])
    ds = open_dataset(json.loads((run / "config.json").read_text())["dataset"]["root"])
    image = load_images([ds.val[i].path], size=64)[0]
    flat = store.read(Unit("clean", 1), ("map_true",), ())["map_true"][i].astype(np.float64).reshape(-1).tolist()
    top = sorted(range(64), key=lambda c: (-flat[c], c))[:16]
    blur, deleted = gaussian_blur(image, 5.0, 31), image.copy()
    for c in top:
        r, col = divmod(c, 8)
        deleted[8 * r:8 * r + 8, 8 * col:8 * col + 8] = blur[8 * r:8 * r + 8, 8 * col:8 * col + 8]
    session = ort.InferenceSession((run / "onnx" / "epoch_001.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": deleted[None]})
    p = np.exp(logits[0] - logits[0].max())
    want = p[labels[i]] / p.sum()
    # An untrained model: probabilities near 1/3 that move by 1e-5 to 1e-4, so the check is tight.
    assert arrays["deletion"][0, 0, 1] == pytest.approx(want, abs=1e-6)
    assert np.abs(arrays["deletion"][1:, 0, 1] - want).min() > 2e-6  # the references' orders give other values

    said.clear()
    before = path.stat().st_mtime_ns
    assert main(["faithfulness", "--run", str(run), "--images", "6", "--steps", "4", "--settings", "clean", "sp0.005"]) == 0
    assert path.stat().st_mtime_ns == before and any("up to date" in line for line in said)

    assert main(["analyze", "--run", str(run)]) == 0
    doc = json.loads((run / "analysis" / "analysis.json").read_text())
    section = doc["faithfulness"]
    assert section["methods"] == ["model", "centre", "random"] and section["steps"] == 4 and section["images"] == 6
    rows = section["rows"]
    assert {(r["setting"], r["method"]) for r in rows} == {(s, m) for s in ("clean", "sp0.005")
                                                          for m in ("model", "centre", "random")}
    for r in rows:
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1 and r["covered"] == 6
        assert 0 <= r["average_drop"] <= 100 and 0 <= r["increase"] <= 100
    assert set(doc["inputs"]["faithfulness"]) == {"clean/epoch_001.npz", "sp0.005/epoch_001.npz"}
    assert (run / "analysis" / "faithfulness.csv").read_text().count("\n") == 1 + 6


def test_an_explanation_store_is_measured_on_the_images_it_covers(run: Path, said: list[str]):
    argv = ["faithfulness", "--run", str(run), "--images", "6", "--steps", "4"]
    assert main(argv) == 0
    assert main(["analyze", "--run", str(run)]) == 0
    index = image_subset(np.asarray(RenderStore(run / "render").manifest()["val"]["labels"]), 6, 0)
    outside = next(j for j in range(9) if j not in index)
    rows = np.array([index[0], outside, index[2]])  # two of the subset, one outside it
    maps = np.random.default_rng(0).normal(size=(3, 2, 2)).astype(np.float16)  # coarser than the 8 × 8 cells
    buf = io.BytesIO()
    np.savez(buf, meta=np.array("{}"), map_true=maps, index=rows.astype(np.int64))
    digest.write_verified(run / "explain" / "fake" / "clean" / "epoch_001.npz", buf.getvalue())
    said.clear()
    assert main(argv) == 0 and not any("up to date" in line for line in said)
    arrays, meta = load(run / "faithfulness" / "clean" / "epoch_001.npz")
    assert meta["methods"] == ["model", "fake", "centre", "random"]
    assert arrays["covered"][1].tolist() == [i in (index[0], index[2]) for i in index]
    assert np.isnan(arrays["deletion"][1][~arrays["covered"][1]]).all()
    said.clear()
    assert main(["analyze", "--run", str(run)]) == 0 and not any("up to date" in line for line in said)
    fake = [r for r in json.loads((run / "analysis" / "analysis.json").read_text())["faithfulness"]["rows"]
            if r["method"] == "fake"]
    assert [(r["images"], r["covered"]) for r in fake] == [(6, 2)]
    # The explanation rendered again: the analysis refuses the faithfulness file until it is measured again.
    buf = io.BytesIO()
    np.savez(buf, meta=np.array("{}"), map_true=-maps, index=rows.astype(np.int64))
    digest.write_verified(run / "explain" / "fake" / "clean" / "epoch_001.npz", buf.getvalue())
    said.clear()
    assert main(["analyze", "--run", str(run)]) == 2
    assert any("faithfulness/clean/epoch_001.npz is out of date" in line and "'fake'" in line for line in said)
    assert main(argv) == 0 and main(["analyze", "--run", str(run)]) == 0


@pytest.mark.parametrize("argv,flag", [(["--steps", "0"], "--steps"), (["--images", "x"], "--images"),
                                       (["--epochs", "1,z"], "--epochs"), (["--batch-size", "-1"], "--batch-size"),
                                       (["--seed", "-2"], "--seed")])
def test_a_bad_flag_is_one_line_naming_it(tmp_path: Path, capsys, argv, flag):
    assert main(["faithfulness", "--run", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edvis: error:") and flag in err[0]


def test_an_unrendered_setting_is_refused_naming_the_unit(run: Path, capsys):
    assert main(["faithfulness", "--run", str(run), "--images", "2", "--settings", "jpeg-3"]) == 2
    err = capsys.readouterr().err
    assert "edvis: error:" in err and "jpeg-3/epoch_001.npz" in err


def test_a_random_perturbation_follows_the_render_seed(run: Path):
    import onnxruntime as ort

    from edvis.data import apply, load_images, open_dataset
    from edvis.render import render_run

    render_run(run, provider="cpu", perturbations=["sp0.005"], seed=3)  # keys 3 · N + i, not i
    assert main(["faithfulness", "--run", str(run), "--images", "9", "--steps", "1", "--settings", "sp0.005"]) == 0
    a, meta = load(run / "faithfulness" / "sp0.005" / "epoch_001.npz")
    assert meta["render_seed"] == 3
    ds = open_dataset(json.loads((run / "config.json").read_text())["dataset"]["root"])
    clean = load_images([ds.val[i].path for i in a["index"]], size=64)
    session = ort.InferenceSession((run / "onnx" / "epoch_001.onnx").read_bytes(), providers=["CPUExecutionProvider"])

    def p_true(images):
        (logits,) = session.run(["logits"], {"images": images})
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e[np.arange(len(images)), a["labels"]] / e.sum(axis=1)

    assert np.abs(a["full"] - p_true(apply("sp0.005", clean, 3 * len(ds.val) + a["index"]))).max() < 1e-6
    assert np.abs(a["full"] - p_true(apply("sp0.005", clean, a["index"]))).max() > 2e-6  # another seed: other noise
