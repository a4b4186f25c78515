"""`edvis analyze` on small hand-made stores: every figure below is worked out by hand."""

import csv
import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edvis.analyze import AnalysisError, analyze_run
from edvis.data import order_settings, setting_kind
from edvis.errors import EdvisError
from edvis.run import RenderStore, Unit
from tests.conftest import flip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fullstore import make_full_store

LABELS = [0, 0, 1, 1, 2, 2]
# Boxes on a 4×4 image: even images top-left (0, 0, 1, 1), odd ones bottom-right; image 5 has none.
BOXES = [[0, 0, 1, 1], [2, 2, 3, 3], [0, 0, 1, 1], [2, 2, 3, 3], [0, 0, 1, 1], None]
TL = [[1.0, 0.0], [0.0, 0.0]]  # upsampled to 4×4: outer([1, .75, .25, 0]) → peak (0, 0)
BR = [[0.0, 0.0], [0.0, 1.0]]  # outer([0, .25, .75, 1]) → peak (3, 3)
MAPS = np.array([TL, BR] * 3)  # (6, 2, 2): each image's hot cell sits in its own box


def manifest(labels=LABELS, fingerprint="hand", map_size=2):
    return {
        "dataset": {"fingerprint": fingerprint, "wnids": ["n0", "n1", "n2"], "names": ["cat", "dog", "eel, moray"]},
        "val": {"files": [f"val/images/{i}.png" for i in range(len(labels))], "labels": labels, "boxes": BOXES},
        "image_size": 4,
        "map_size": map_size,
    }


def write_unit(store, setting, epoch, preds, maps=MAPS, labels=LABELS):
    """Predicted class gets 0.6; the true class 0.3 when it is not the prediction; the rest 0.1."""
    n = len(preds)
    probs = np.full((n, 3), 0.1, dtype=np.float32)
    for i, (p, t) in enumerate(zip(preds, labels)):
        probs[i, p] = 0.6
        probs[i, t if t != p else (p + 1) % 3] = 0.3
    top = np.argsort(-probs, axis=1, kind="stable")
    store.write(Unit(setting, epoch), {
        "probs": probs.astype(np.float16), "top5": top.astype(np.int16),
        "top5_prob": np.take_along_axis(probs, top, axis=1),
        "map_true": maps.astype(np.float16), "map_pred": maps.astype(np.float16),
    }, {})


@pytest.fixture
def run(tmp_path):
    store = RenderStore(tmp_path / "run" / "render")
    store.init(manifest())
    e1_maps = MAPS.copy()
    e1_maps[4:] *= -1  # class 2's maps point the other way at epoch 1
    write_unit(store, "clean", 1, [0, 1, 1, 1, 0, 2], e1_maps)  # 4/6 right
    write_unit(store, "clean", 2, [0, 0, 1, 1, 2, 0])  # 5/6 right; image 5 (class 2) taken for class 0
    write_unit(store, "gray", 1, [0, 1, 1, 1, 0, 2], e1_maps)
    gray_maps = MAPS.copy()
    gray_maps[3] *= -1  # image 3's map flips under gray: correlation −1 with clean
    write_unit(store, "gray", 2, [2, 0, 1, 1, 2, 0], gray_maps)  # image 0 flips from 0 to 2
    for severity in (1, 2):  # a render gives every setting every epoch: at epoch 1 noise changes nothing
        write_unit(store, f"gaussian_noise-{severity}", 1, [0, 1, 1, 1, 0, 2], e1_maps)
    write_unit(store, "gaussian_noise-1", 2, [0, 0, 1, 0, 2, 0])  # error 2/6
    write_unit(store, "gaussian_noise-2", 2, [1, 0, 0, 0, 2, 0])  # error 4/6
    return tmp_path / "run"


def strict_json(path):
    def no_constant(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=no_constant)


def test_setting_names():
    assert setting_kind("gaussian_noise-3") == ("gaussian_noise", 3)
    assert setting_kind("blur5") == ("blur", None)
    assert setting_kind("mystery") == ("mystery", None)
    assert order_settings(["zz", "gaussian_noise-1", "gray", "clean", "bgr"]) == [
        "clean", "gray", "bgr", "gaussian_noise-1", "zz"]


def test_table_and_shift_from_clean(run):
    doc = strict_json(analyze_run(run))
    assert doc["schema"] == 2 and doc["final_epoch"] == 2 and doc["epochs"] == [1, 2]
    assert doc["settings"] == ["clean", "gray", "gaussian_noise-1", "gaussian_noise-2"]
    table = {r["setting"]: r for r in doc["table"]}
    clean, gray = table["clean"], table["gray"]
    assert clean["top1"] == pytest.approx(5 / 6, abs=1e-4)
    assert clean["top5"] == 1.0  # three classes: the top-5 holds them all
    # every top-1 probability is 0.6, all in one bin: ECE = |5/6 − 0.6|
    assert clean["ece"] == pytest.approx(5 / 6 - 0.6, abs=1e-4)
    assert clean["auroc"] == 0.5  # equal scores: every (right, wrong) pair is a tie
    assert clean["spearman_right"] is None  # constant confidence: no rank correlation
    assert clean["sharpness"] == 4.0  # one hot cell of four: 1 / (1/4)
    # gray: image 0 flips 0 → 2 (wrong now): drop 1/6, flip 1/6; its true-class probability goes
    # 0.6 → 0.3 (float16: 0.60009765625 → 0.2998046875), so the mean change is −0.3003 / 6
    assert gray["top1"] == pytest.approx(4 / 6, abs=1e-4)
    assert gray["top1_drop"] == pytest.approx(1 / 6, abs=1e-4)
    assert gray["flip_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert gray["p_true_change"] == pytest.approx(-0.30029296875 / 6, abs=1e-4)
    # five maps unchanged (r = 1), one negated (r = −1): (5 − 1) / 6
    assert gray["map_corr"] == pytest.approx(4 / 6, abs=1e-4)
    assert "top1_drop" not in clean
    assert doc["definitions"]["ece_bins"] == 15 and doc["definitions"]["pattern_threshold"] == 0.8


def test_per_class_learning_dynamics(run):
    doc = strict_json(analyze_run(run))
    classes = doc["classes"]
    assert [c["name"] for c in classes] == ["cat", "dog", "eel, moray"]
    # clean top-1 per class: epoch 1 → 0.5, 1, 0.5; epoch 2 → 1, 1, 0.5
    assert [c["top1_by_epoch"] for c in classes] == [[0.5, 1.0], [1.0, 1.0], [0.5, 0.5]]
    assert [c["epoch_50"] for c in classes] == [1, 1, 1]
    assert [c["epoch_90"] for c in classes] == [2, 1, 1]  # class 0 needs 0.9 · 1 → epoch 2
    # similarity to epoch 2: classes 0 and 1 unchanged (1, 1); class 2 negated at epoch 1 (−1, 1)
    assert [c["similarity_by_epoch"] for c in classes] == [[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]]
    assert [c["pattern_formed"] for c in classes] == [1, 1, 2]
    # order by epoch_90 (2, 1, 1), ties by mean accuracy (0.75, 1, 0.5): dog, eel, cat
    assert [c["name"] for c in doc["learning_order"]] == ["dog", "eel, moray", "cat"]
    assert [c["learned_rank"] for c in classes] == [3, 1, 2]
    gray = {s["setting"]: s for s in classes[0]["settings"]}["gray"]
    # class 0 under gray at epoch 2: image 0 flips of images 0, 1
    assert gray["flip_rate"] == 0.5 and gray["top1_drop"] == 0.5 and gray["map_corr"] == 1.0
    dog_gray = {s["setting"]: s for s in classes[1]["settings"]}["gray"]
    assert dog_gray["map_corr"] == 0.0  # images 2 (r = 1) and 3 (r = −1)


def test_confusion_corruption_localisation(run):
    doc = strict_json(analyze_run(run))
    pairs = {p["setting"]: p["pairs"] for p in doc["confused_pairs"]}
    # clean, epoch 2: only image 5 (eel) is wrong, taken for a cat
    assert pairs["clean"] == [{"rank": 1, "a": 0, "a_wnid": "n0", "a_name": "cat", "b": 2, "b_wnid": "n2",
                               "b_name": "eel, moray", "a_as_b": 0, "b_as_a": 1, "total": 1,
                               "images_a_as_b": [], "images_b_as_a": [5]}]
    # noise errors 2/6 and 4/6, mean 1/2, over the clean error 1/6: 3
    (kind,) = doc["corruption"]["kinds"]
    assert kind["kind"] == "gaussian_noise" and kind["severities"] == [1, 2]
    assert kind["errors"] == [0.3333, 0.6667] and kind["clean_error"] == 0.1667
    assert kind["relative_ce"] == pytest.approx(3.0, abs=1e-4)
    assert doc["corruption"]["mean_relative_ce"] == kind["relative_ce"]
    loc = doc["localisation"]["epochs"]
    assert doc["localisation"]["has_boxes"] and [r["images"] for r in loc] == [5, 5]
    # epoch 2: every peak in its box; energy inside (1 + .75)² / 2² = 0.765625 for each image
    assert loc[1]["pointing"] == 1.0 and loc[1]["energy_in_box"] == 0.7656
    # epoch 1: image 4's map is negative: its upsampled maximum (0) first occurs at x 3, y 0,
    # outside its top-left box; it has no positive energy, so the energy mean is over 4 images
    assert loc[0]["pointing"] == 0.8 and loc[0]["energy_in_box"] == 0.7656
    # the centre pixel (2, 2) lies in the bottom-right boxes only: images 1 and 3 of 5
    assert loc[0]["centre_pointing"] == 0.4
    # a 4-pixel box is a quarter of the image; the centred Gaussian is symmetric, so also a quarter
    assert loc[0]["energy_uniform"] == 0.25 and loc[0]["energy_centre"] == 0.25
    assert doc["compare"] is None and len(doc["models"]) == 1


def test_csv_tables(run):
    analyze_run(run)
    out = run / "analysis"
    with open(out / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["epoch"]) for r in rows] == [
        ("clean", "1"), ("clean", "2"), ("gray", "1"), ("gray", "2"), ("gaussian_noise-1", "1"),
        ("gaussian_noise-1", "2"), ("gaussian_noise-2", "1"), ("gaussian_noise-2", "2")]
    assert rows[3]["flip_rate"] == "0.1667" and rows[0]["top1_drop"] == ""  # clean has no shift
    with open(out / "classes.csv", newline="") as f:
        classes = list(csv.DictReader(f))
    assert classes[2]["name"] == "eel, moray" and classes[2]["pattern_formed"] == "2"
    with open(out / "confusion.csv", newline="") as f:
        cells = [(r["setting"], r["true"], r["predicted"], r["count"]) for r in csv.DictReader(f)]
    # clean at epoch 2: 2 cats right, 2 dogs right, 1 eel right, 1 eel as cat
    assert [c[1:] for c in cells if c[0] == "clean"] == [("0", "0", "2"), ("1", "1", "2"), ("2", "0", "1"),
                                                          ("2", "2", "1")]
    with open(out / "reliability.csv", newline="") as f:
        bins = [r for r in csv.DictReader(f) if r["setting"] == "clean" and r["epoch"] == "2" and r["count"] != "0"]
    # float32 0.6 · 15 = 9.0000004 → bin 9
    assert [(b["bin"], b["count"], b["accuracy"]) for b in bins] == [("9", "6", "0.8333")]
    assert (out / "class_epochs.csv").read_text().count("\n") == 1 + 3 * 8  # 8 (setting, epoch) units × 3 classes


def test_rerun_skips_until_an_input_changes(run, said):
    logs = said
    path = analyze_run(run)
    mtime = path.stat().st_mtime_ns
    analyze_run(run)
    assert logs[-1] == f"analyze: {path} up to date" and path.stat().st_mtime_ns == mtime
    write_unit(RenderStore(run / "render"), "gray", 2, [0, 0, 1, 1, 2, 0])  # gray now changes nothing
    doc = strict_json(analyze_run(run))
    assert {r["setting"]: r for r in doc["table"]}["gray"]["flip_rate"] == 0.0
    analyze_run(run, force=True)
    assert logs[-1].startswith("analyze: wrote")


def test_a_unit_rewritten_with_its_size_and_mtime_kept_is_analysed_again(run, said):
    analyze_run(run)
    store = RenderStore(run / "render")
    unit = store.path(Unit("gray", 2))
    st = unit.stat()
    write_unit(store, "gray", 2, [0, 0, 1, 1, 2, 0])  # another unit of the same shapes: the same size
    os.utime(unit, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert unit.stat().st_size == st.st_size
    doc = strict_json(analyze_run(run))
    assert said[-1].startswith("analyze: wrote")
    assert {r["setting"]: r for r in doc["table"]}["gray"]["flip_rate"] == 0.0
    assert doc["inputs"]["render"]["gray/epoch_002.npz"] == hashlib.sha256(unit.read_bytes()).hexdigest()


def test_a_damaged_analysis_json_is_computed_again(run, said):
    path = analyze_run(run)
    flip(path)
    analyze_run(run)
    assert said[-1].startswith("analyze: wrote")


def test_a_gap_in_the_store_is_named_not_skipped(run):
    RenderStore(run / "render").path(Unit("gray", 1)).unlink()
    with pytest.raises(EdvisError, match=r"render unit missing: \S+/render/gray/epoch_001\.npz .*run `edvis render`"):
        analyze_run(run)


def test_compare_run_side_by_side(run, tmp_path):
    other = RenderStore(tmp_path / "cam" / "render")
    other.init(manifest(map_size=4))
    hot = np.zeros((6, 4, 4))
    hot[0::2, 0, 0] = 1  # size 4 = S: no resizing; each peak in its box, all energy inside
    hot[1::2, 3, 3] = 1
    write_unit(other, "clean", 1, LABELS, hot)
    doc = strict_json(analyze_run(run, compare=tmp_path / "cam"))
    own, cam = doc["models"]
    assert own["top1"] == 0.8333 and own["pointing"] == 1.0 and own["epoch"] == 2
    assert cam["model"] == "cam" and cam["epoch"] == 1  # no config.json: the folder's name
    assert cam["top1"] == 1.0 and cam["pointing"] == 1.0 and cam["energy_in_box"] == 1.0
    assert doc["compare"]["settings"] == [{"setting": "clean", "epoch": 1, "top1": 1.0, "top5": 1.0}]
    with open(run / "analysis" / "localisation.csv", newline="") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["run", "run", "cam"]


def test_compare_on_another_validation_set_is_refused(run, tmp_path):
    other = RenderStore(tmp_path / "cam" / "render")
    other.init(manifest(labels=[0, 1, 1, 1, 2, 2], fingerprint="other"))
    with pytest.raises(AnalysisError, match="--compare .*cam.*another validation set"):
        analyze_run(run, compare=tmp_path / "cam")


def test_cli_errors_name_the_culprit(tmp_path):
    missing = tmp_path / "nowhere"
    r = subprocess.run([sys.executable, "-m", "edvis", "analyze", "--run", str(missing)],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("edvis: error:")] == [
        f"edvis: error: no render store at {missing / 'render'} (run `edvis render` first)"]
    store = RenderStore(tmp_path / "run" / "render")
    store.init(manifest())
    write_unit(store, "clean", 1, LABELS[:5], MAPS[:5], LABELS[:5])  # 5 images, the manifest says 6
    r = subprocess.run([sys.executable, "-m", "edvis", "analyze", "--run", str(tmp_path / "run")],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 2
    assert f"edvis: error: {store.path(Unit('clean', 1))}: probs has shape (5, 3), the manifest implies (6, 3)" \
        in r.stderr


def test_memory_does_not_grow_with_the_store(tmp_path):
    # The same images over 4 and over 16 epochs: 4× the units, about the same peak memory.
    peaks, sizes = [], []
    for epochs in (4, 16):
        root = tmp_path / f"e{epochs}"
        make_full_store(root, classes=20, images=2000, epochs=epochs, settings=2, seed=0)
        sizes.append(sum(p.stat().st_size for p in (root / "render").glob("*/*.npz")))
        tracemalloc.start()
        analyze_run(root)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert sizes[1] - sizes[0] > 15e6  # 24 more units of about 0.7 MB
    assert peaks[1] - peaks[0] < 0.1 * (sizes[1] - sizes[0]), (peaks, sizes)


def test_analysis_imports_no_torch():
    code = "import sys, edvis.analyze.metrics, edvis.analyze; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- schema 2: every number the site shows ------------------------------------------------------


def test_flip_counts_per_setting_and_epoch(run):
    store = RenderStore(run / "render")
    # against clean epoch 1 [0, 1, 1, 1, 0, 2]: image 0 right → wrong, image 1 wrong → right, image 4 stays 0
    write_unit(store, "bgr", 1, [1, 0, 1, 1, 0, 2])
    # against clean epoch 2 [0, 0, 1, 1, 2, 0]: image 4 right → wrong, image 5 wrong → right
    write_unit(store, "bgr", 2, [0, 0, 1, 1, 1, 2])
    write_unit(store, "brg", 1, [0, 1, 1, 1, 0, 2])  # as clean
    write_unit(store, "brg", 2, [0, 0, 1, 1, 2, 1])  # image 5: wrong (as 0) → wrong as another class (1)
    doc = strict_json(analyze_run(run))
    flips = {(r["setting"], r["epoch"]): (r["right_to_wrong"], r["wrong_to_right"], r["wrong_to_wrong"])
             for r in doc["epoch_rows"] if r["setting"] != "clean"}
    assert flips == {
        ("gray", 1): (0, 0, 0),  # the same predictions as clean
        ("gray", 2): (1, 0, 0),  # image 0: 0 → 2
        ("bgr", 1): (1, 1, 0), ("bgr", 2): (1, 1, 0), ("brg", 1): (0, 0, 0), ("brg", 2): (0, 0, 1),
        ("gaussian_noise-1", 1): (0, 0, 0), ("gaussian_noise-2", 1): (0, 0, 0),  # as clean
        ("gaussian_noise-1", 2): (1, 0, 0),  # image 3: 1 → 0; image 5 stays wrong as 0: no flip
        ("gaussian_noise-2", 2): (3, 0, 0),  # images 0, 2 and 3
    }
    assert not any("right_to_wrong" in r for r in doc["epoch_rows"] if r["setting"] == "clean")
    table = {r["setting"]: r["wrong_to_wrong"] for r in doc["table"] if r["setting"] != "clean"}
    assert table == {"gray": 0, "bgr": 0, "brg": 1, "gaussian_noise-1": 0, "gaussian_noise-2": 0}
    with open(run / "analysis" / "epochs.csv", newline="") as f:
        assert "right_to_wrong" not in next(csv.reader(f))  # JSON only: the CSV tables keep their columns


def test_confidence_histogram_and_clean_confusion(run):
    doc = strict_json(analyze_run(run))
    assert doc["definitions"]["histogram_bins"] == 20
    hist = {h["setting"]: h for h in doc["confidence_histogram"]}
    assert list(hist) == ["clean", "gray", "gaussian_noise-1", "gaussian_noise-2"]
    # every top-1 probability is 0.6 (float32 0.600000024): bin floor(20 · 0.6) = 12 of 20
    counts = {s: (h["epoch"], h["right"][12], h["wrong"][12], sum(h["right"]), sum(h["wrong"])) for s, h in hist.items()}
    assert counts == {"clean": (2, 5, 1, 5, 1), "gray": (2, 4, 2, 4, 2), "gaussian_noise-1": (2, 4, 2, 4, 2),
                      "gaussian_noise-2": (2, 2, 4, 2, 4)}
    assert all(len(h["right"]) == len(h["wrong"]) == 20 for h in hist.values())
    # clean at epoch 2: cats and dogs right, one eel right and one taken for a cat
    assert doc["confusion"] == {"setting": "clean", "epoch": 2, "matrix": [[2, 0, 0], [0, 2, 0], [1, 0, 1]]}


def test_the_compared_runs_settings_at_its_final_epoch(run, tmp_path):
    other = RenderStore(tmp_path / "cam" / "render")
    other.init(manifest())
    write_unit(other, "clean", 1, LABELS)
    write_unit(other, "gaussian_noise-1", 1, LABELS)
    write_unit(other, "gray", 1, LABELS)
    write_unit(other, "clean", 2, [0, 0, 1, 1, 2, 0])  # 5/6
    write_unit(other, "gaussian_noise-1", 2, [1, 0, 0, 0, 2, 0])  # 2/6
    write_unit(other, "gray", 2, [2, 0, 1, 1, 2, 0])  # 4/6
    doc = strict_json(analyze_run(run, compare=tmp_path / "cam"))
    assert doc["compare"]["settings"] == [
        {"setting": "clean", "epoch": 2, "top1": 0.8333, "top5": 1.0},
        {"setting": "gray", "epoch": 2, "top1": 0.6667, "top5": 1.0},
        {"setting": "gaussian_noise-1", "epoch": 2, "top1": 0.3333, "top5": 1.0},
    ]
    assert [r["epoch"] for r in doc["compare"]["epochs"]] == [1, 2] and doc["models"][1]["epoch"] == 2


# Seven classes, one image each: top-5 can miss. Each image's true class is put at a given rank.
SEVEN = list(range(7))
RANK_PROBS = [0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.03]


def write_ranked(store, setting, epoch, ranks):
    """Image i (class i) ranks its true class at ``ranks[i]``; the other classes in index order
    around it; probabilities RANK_PROBS by rank."""
    order = []
    for t, r in enumerate(ranks):
        others = [c for c in SEVEN if c != t]
        order.append(others[:r] + [t] + others[r:])
    order = np.array(order)
    probs = np.zeros((7, 7), dtype=np.float32)
    np.put_along_axis(probs, order, np.array([RANK_PROBS] * 7, dtype=np.float32), axis=1)
    maps = np.array([TL, BR] * 3 + [TL])
    store.write(Unit(setting, epoch), {
        "probs": probs.astype(np.float16), "top5": order[:, :5].astype(np.int16),
        "top5_prob": np.take_along_axis(probs, order[:, :5], axis=1),
        "map_true": maps.astype(np.float16), "map_pred": maps.astype(np.float16),
    }, {})


def test_top5_by_epoch_and_a_compared_runs_top5_on_seven_classes(tmp_path):
    seven = {"dataset": {"fingerprint": "seven", "wnids": [f"n{c}" for c in SEVEN], "names": [f"c{c}" for c in SEVEN]},
             "val": {"files": [f"val/images/{i}.png" for i in SEVEN], "labels": SEVEN}, "image_size": 4, "map_size": 2}
    store = RenderStore(tmp_path / "run" / "render")
    store.init(seven)
    write_ranked(store, "clean", 1, [0, 4, 5, 6, 1, 2, 3])  # top-1: image 0; top-5: all but images 2 and 3
    write_ranked(store, "clean", 2, [0, 0, 4, 5, 0, 0, 0])  # top-1: all but 2 and 3; top-5: all but 3
    other = RenderStore(tmp_path / "cam" / "render")
    other.init(seven)
    write_ranked(other, "clean", 1, [0, 0, 0, 0, 0, 0, 6])  # top-1 and top-5 6/7
    write_ranked(other, "gray", 1, [1, 1, 1, 5, 6, 0, 0])  # top-1 2/7, top-5 5/7
    doc = strict_json(analyze_run(tmp_path / "run", compare=tmp_path / "cam"))
    assert [c["top5_by_epoch"] for c in doc["classes"]] == [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0],
                                                            [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    assert [c["top1_by_epoch"] for c in doc["classes"]] == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0],
                                                            [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    assert [c["top5"] for c in doc["classes"]] == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]  # the last entries
    assert doc["compare"]["settings"] == [{"setting": "clean", "epoch": 1, "top1": 0.8571, "top5": 0.8571},
                                          {"setting": "gray", "epoch": 1, "top1": 0.2857, "top5": 0.7143}]
    # images 2 and 3 (classes 2, 3) are taken for class 0, the first of the other classes
    matrix = np.eye(7, dtype=int)
    matrix[2, 2] = matrix[3, 3] = 0
    matrix[2, 0] = matrix[3, 0] = 1
    assert doc["confusion"]["matrix"] == matrix.tolist()
    # every top-1 probability is 0.4 (float32 0.400000006): bin 8; five right, two wrong
    (h,) = doc["confidence_histogram"]
    assert h["right"] == [0] * 8 + [5] + [0] * 11 and h["wrong"] == [0] * 8 + [2] + [0] * 11


# -- spreadsheet-safe CSV ---------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", 'eel, "moray"', '=a,"b"']


@pytest.mark.parametrize("wnids, names", [
    (HOSTILE[0:3], HOSTILE[3:6]),  # every OWASP first character, as wnids and as names
    (["n0", HOSTILE[6], HOSTILE[7]], [HOSTILE[7], "plain", HOSTILE[6]]),  # commas and quotes too
])
def test_csv_cells_are_spreadsheet_safe_and_json_keeps_the_text(tmp_path, wnids, names):
    run = tmp_path / "run"
    store = RenderStore(run / "render")
    store.init({**manifest(), "dataset": {"fingerprint": "hand", "wnids": wnids, "names": names}})
    e1_maps = MAPS.copy()
    e1_maps[4:] *= -1  # class 2's maps at epoch 1 are the negatives of epoch 2's: similarity −1
    write_unit(store, "clean", 1, [0, 1, 1, 1, 0, 2], e1_maps)
    write_unit(store, "clean", 2, [0, 0, 1, 1, 2, 0])  # image 5 (class 2) taken for class 0
    write_unit(store, "gray", 1, [0, 1, 1, 1, 0, 2], e1_maps)
    write_unit(store, "gray", 2, [2, 0, 1, 1, 2, 0])  # image 0 flips: p_true_change < 0
    cam = tmp_path / HOSTILE[3]  # the compared model is named after its folder: @SUM(A1)
    other = RenderStore(cam / "render")
    other.init({**manifest(), "dataset": {"fingerprint": "hand", "wnids": wnids, "names": names}})
    write_unit(other, "clean", 1, LABELS)
    doc = strict_json(analyze_run(run, compare=cam))

    # JSON: the exact text, no quote added
    assert [c["wnid"] for c in doc["classes"]] == wnids and [c["name"] for c in doc["classes"]] == names
    assert doc["compare"]["model"] == HOSTILE[3]
    pair = {p["setting"]: p["pairs"] for p in doc["confused_pairs"]}["clean"][0]
    assert (pair["a_wnid"], pair["b_wnid"], pair["b_name"]) == (wnids[0], wnids[2], names[2])

    def safe(text):  # OWASP: a quote before = + - @ tab CR; by hand, not by edvis.run.tables
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

    def read(name):
        with open(run / "analysis" / name, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    classes = read("classes.csv")
    assert [r["wnid"] for r in classes] == [safe(w) for w in wnids]
    assert [r["name"] for r in classes] == [safe(n) for n in names]
    assert [r["index"] for r in classes] == ["0", "1", "2"]
    assert {r["wnid"] for r in read("class_epochs.csv")} == {safe(w) for w in wnids}
    confusion = read("confusion.csv")
    assert {(r["true"], r["true_wnid"]) for r in confusion} == {(str(c), safe(w)) for c, w in enumerate(wnids)}
    assert {r["predicted_wnid"] for r in confusion} <= {safe(w) for w in wnids}
    pairs = [r for r in read("confused_pairs.csv") if r["setting"] == "clean"]
    assert (pairs[0]["a_wnid"], pairs[0]["b_wnid"]) == (safe(wnids[0]), safe(wnids[2]))
    assert [r["model"] for r in read("localisation.csv")] == ["run", "run", safe(HOSTILE[3])]

    # numbers stay numbers: negative ones keep their sign and get no quote
    gray = next(r for r in read("epochs.csv") if r["setting"] == "gray" and r["epoch"] == "2")
    # float16 0.6 → 0.3 for image 0: −0.30029296875 / 6 = −0.05005 → −0.0500
    assert gray["p_true_change"] == "-0.0500" and gray["top1_drop"] == "0.1667"
    text = (run / "analysis" / "epochs.csv").read_text(encoding="utf-8")
    assert ",-0.0500," in text and "'-" not in text
    sims = [(r["epoch"], r["index"], r["similarity"]) for r in read("class_epochs.csv") if r["setting"] == "clean"]
    assert sims == [("1", "0", "1.0000"), ("1", "1", "1.0000"), ("1", "2", "-1.0000"),
                    ("2", "0", "1.0000"), ("2", "1", "1.0000"), ("2", "2", "1.0000")]
    # every text cell is quoted, so no comma or semicolon inside one can start a new cell
    assert (run / "analysis" / "classes.csv").read_text(encoding="utf-8").startswith('"index","wnid","name",')
