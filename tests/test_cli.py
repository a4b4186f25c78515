"""Bad input gets one clear line naming the path, and a non-zero exit, not a traceback."""

import subprocess
import sys

import pytest
from PIL import Image

from edvis.cli import build_parser


def _edvis(*args):
    return subprocess.run([sys.executable, "-m", "edvis", *args], capture_output=True, text=True)


def test_every_verb_has_help_for_every_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"synth", "data", "train", "export", "render", "analyze", "site"}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"edvis {name} {action.option_strings} has no help"


def test_missing_dataset_folder(tmp_path):
    missing = tmp_path / "nowhere"
    r = _edvis("train", "--data", str(missing), "--run", str(tmp_path / "run"), "--device", "cpu")
    assert r.returncode == 2
    assert str(missing) in r.stderr and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("edvis: error:")]
    assert len(errors) == 1 and str(missing) in errors[0]


@pytest.mark.parametrize("problem", ["not-an-image", "empty-class"])
def test_bad_imagefolder(tmp_path, problem):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            Image.new("RGB", (64, 64), (10, 20, 30)).save(d / "a.png")
    if problem == "not-an-image":
        bad = root / "train" / "dog" / "b.jpg"
        bad.write_text("this is text, not a JPEG")
    else:
        (root / "train" / "dog" / "a.png").unlink()
        bad = root / "train" / "dog"
    r = _edvis("train", "--data", str(root), "--run", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1")
    assert r.returncode == 2, r.stderr
    assert str(bad) in r.stderr and "Traceback" not in r.stderr


def test_site_without_a_run(tmp_path):
    r = _edvis("site", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "missing" in r.stderr and "Traceback" not in r.stderr


def test_site_bad_seed_and_missing_compare_run(tmp_path):
    import numpy as np

    from edvis.store import RenderStore, Unit

    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(data / "val" / "a.png")
    store = RenderStore(tmp_path / "run" / "render")
    store.init({"dataset": {"root": str(data), "fingerprint": "f", "wnids": ["a", "b"], "names": ["a", "b"]},
                "val": {"files": ["val/a.png"], "labels": [0], "boxes": [None]}, "image_size": 64, "map_size": 8})
    maps = np.ones((1, 8, 8), np.float16)
    store.write(Unit("clean", 1), {"probs": np.array([[0.6, 0.4]], np.float16), "top5": np.array([[0, 1]], np.int16),
                                   "top5_prob": np.array([[0.6, 0.4]], np.float32), "map_true": maps, "map_pred": maps},
                meta={})
    run, out = str(tmp_path / "run"), str(tmp_path / "out")
    r = _edvis("site", "--run", run, "--out", out, "--seed", "-1")
    assert r.returncode == 2 and "edvis: error: --seed must be >= 0, got -1" in r.stderr
    missing = tmp_path / "missing"
    r = _edvis("site", "--run", run, "--out", out, "--compare", str(missing))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"edvis: error: --compare {missing}: no render store at {missing / 'render'}" in r.stderr
