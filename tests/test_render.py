import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edvis.cli import main
from edvis.render import (
    clip_boxes,
    group_settings,
    layer_images,
    merge_stores,
    parse_shard,
    plan_units,
    render_run,
    session_providers,
)
from edvis.run import ARRAYS, RenderStore, StoreError, Unit


def test_cpu_provider_without_a_gpu(monkeypatch):
    monkeypatch.setattr("edvis.render.gpu_present", lambda: False)
    assert session_providers("auto") == ["CPUExecutionProvider"]
    assert session_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="--provider"):
        session_providers("tpu")


def test_render_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, edvis.render, edvis.run.store, edvis.site; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the whole renderer on a tiny trained run ------------------------------------------------------

PAPER = ["clean", "gray", "blur3", "blur5", "bgr", "brg", "sp0.0005", "sp0.005"]


def test_shards_deal_every_unit_exactly_once():
    every = plan_units([1, 2, 3], ["clean", "gray"])
    assert every[:3] == [Unit("clean", 1), Unit("gray", 1), Unit("clean", 2)]  # epoch-major
    shards = [plan_units([1, 2, 3], ["clean", "gray"], (i, 4)) for i in range(4)]
    assert [len(s) for s in shards] == [2, 2, 1, 1]  # 6 units dealt round-robin to 4 shards
    assert sorted(sum(shards, []), key=every.index) == every


@pytest.mark.parametrize("spec", ["2/2", "-1/3", "1", "a/b", "1/0"])
def test_bad_shard_names_the_flag(spec):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(spec)


def test_settings_are_grouped_to_fit_the_memory_budget():
    names = ["a", "b", "c", "d", "e"]
    assert group_settings(names, bytes_each=100, budget=250) == [["a", "b"], ["c", "d"], ["e"]]
    assert group_settings(names, bytes_each=1000, budget=250) == [[n] for n in names]  # at least one


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 3-class run, 2 epochs exported, 60 validation images; and its full paper-set render."""
    tmp = tmp_path_factory.mktemp("render")
    data, run = tmp / "data", tmp / "run"
    assert main(["synth", "--out", str(data), "--classes", "3", "--train-per-class", "4",
                 "--val-per-class", "20"]) == 0
    assert main(["train", "--data", str(data), "--run", str(run), "--epochs", "2", "--batch-size", "6",
                 "--device", "cpu"]) == 0
    assert main(["export", "--run", str(run)]) == 0
    reference = copy_run(run, tmp / "reference")
    assert main(["render", "--run", str(reference), "--perturbations", "paper"]) == 0
    return tmp, run, reference


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of ``run`` without its render store or checkpoints (rendering reads neither)."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("render", "checkpoints"))
    return dest


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = RenderStore(a / "render"), RenderStore(b / "render")
    assert sa.manifest() == sb.manifest()
    assert sa.units() == sb.units() and len(sa.units()) == 2 * len(PAPER)
    for u in sa.units():
        ra, rb = sa.read(u), sb.read(u)
        assert ra.keys() == rb.keys() and set(ARRAYS) <= ra.keys()
        for k in ra:
            np.testing.assert_array_equal(ra[k], rb[k], err_msg=f"{u.key} {k}")
        assert sa.meta(u) == sb.meta(u)
    assert sa.layer_epochs() == sb.layer_epochs() == [1, 2]
    for epoch in sa.layer_epochs():
        (ma, ia, la), (mb, ib, lb) = sa.read_layers(epoch), sb.read_layers(epoch)
        assert ma == mb
        np.testing.assert_array_equal(ia, ib)
        for (name, a), (_, b) in zip(la, lb):
            np.testing.assert_array_equal(a, b, err_msg=f"layer {name} epoch {epoch}")


def test_reference_store_holds_every_image_and_unit(exported):
    _, _, reference = exported
    store = RenderStore(reference / "render")
    assert store.perturbations() == sorted(PAPER) and store.epochs() == [1, 2]
    m = store.manifest()
    assert len(m["val"]["files"]) == 60 and m["map_size"] == 8
    unit = store.read(Unit("gray", 2))
    assert unit["probs"].shape == (60, 3) and unit["map_true"].shape == (60, 8, 8)
    assert "map_top5" not in unit and store.read(Unit("clean", 2))["map_top5"].shape == (60, 3, 8, 8)
    np.testing.assert_allclose(unit["probs"].astype(np.float32).sum(axis=1), 1.0, atol=3e-3)


def test_shards_into_one_store_equal_a_whole_render(exported):
    tmp, run, reference = exported
    both = copy_run(run, tmp / "shards")
    for i in range(3):
        render_run(both, perturbations=["paper"], shard=(i, 3))
    assert_same_store(both, reference)


def test_shards_in_copies_merge_into_one_store(exported):
    tmp, run, reference = exported
    parts = [copy_run(run, tmp / f"part{i}") for i in range(2)]
    for i, part in enumerate(parts):
        render_run(part, perturbations=["paper"], shard=(i, 2))
    merged = copy_run(run, tmp / "merged")
    copied = merge_stores(merged, parts)
    assert len(copied) == 2 * len(PAPER)
    assert_same_store(merged, reference)
    assert merge_stores(merged, parts) == []  # nothing new the second time


def test_merge_refuses_units_from_another_onnx_file(exported):
    tmp, run, reference = exported
    other = copy_run(run, tmp / "other")
    record = json.loads((other / "onnx/epoch_001.json").read_text())
    record["sha256"] = "0" * 64  # as if epoch 1 had been exported from another checkpoint
    (other / "onnx/epoch_001.json").write_text(json.dumps(record))
    with pytest.raises(StoreError, match="another ONNX file"):
        merge_stores(other, [reference])


def test_rerender_after_a_new_epoch_renders_only_it(exported):
    tmp, run, reference = exported
    partial = copy_run(reference, tmp / "partial")  # copy_run drops render/: bring it back
    shutil.copytree(reference / "render", partial / "render")
    for p in (partial / "render").glob("*/epoch_002.npz"):
        p.unlink()  # as if epoch 2 had just been exported
    done = render_run(partial, perturbations=["paper"])
    assert sorted(done, key=lambda u: u.perturbation) == [Unit(n, 2) for n in sorted(PAPER)]
    assert_same_store(partial, reference)


def _units_written(run: Path) -> int:
    return len(RenderStore(run / "render").units())


@pytest.mark.parametrize("kill_after", [0, 3, 9])
def test_sigkill_then_rerun_equals_an_uninterrupted_render(exported, kill_after):
    """Kill the renderer once ``kill_after`` units exist (0: while it starts up), rerun, compare."""
    tmp, run, reference = exported
    victim = copy_run(run, tmp / f"killed{kill_after}")
    cmd = [sys.executable, "-m", "edvis", "render", "--run", str(victim), "--perturbations", "paper"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _units_written(victim) < kill_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if kill_after == 0:
        time.sleep(0.5)  # inside imports, decoding or the first session
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the render finished before it could be killed"
    survivors = _units_written(victim)
    assert survivors < 2 * len(PAPER)
    done = render_run(victim, perturbations=["paper"])
    assert len(done) == 2 * len(PAPER) - survivors  # only what was missing
    assert_same_store(victim, reference)


def test_cpu_machine_prints_one_provider_line_and_no_cuda_noise(exported):
    tmp, run, _ = exported
    fresh = copy_run(run, tmp / "noise")
    proc = subprocess.run([sys.executable, "-m", "edvis", "render", "--run", str(fresh), "--perturbations"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    provider = [ln for ln in lines if "onnxruntime" in ln]
    assert len(provider) == 1 and "on CPU (CPUExecutionProvider" in provider[0], proc.stderr
    assert not any(("cuda" in ln.lower() or "error" in ln.lower()) for ln in lines), proc.stderr


def test_layer_images_one_per_class_seeded():
    labels = np.array([0, 0, 1, 1, 1, 2])
    picked = layer_images(labels, seed=3, k=2)
    assert len(picked) == 2 and len(set(labels[picked])) == 2  # two images of two classes
    assert (np.diff(picked) > 0).all()
    np.testing.assert_array_equal(picked, layer_images(labels, seed=3, k=2))  # same seed, same images
    assert sorted(labels[layer_images(labels, seed=0, k=12)]) == [0, 1, 2]  # k caps at the classes


def test_every_layer_is_stored_for_the_chosen_images(exported):
    _, _, reference = exported
    store = RenderStore(reference / "render")
    assert store.layer_epochs() == [1, 2]
    assert "layers" not in store.perturbations()  # not mistaken for a setting
    meta, index, layers = store.read_layers(2)
    labels = np.array(store.manifest()["val"]["labels"])
    np.testing.assert_array_equal(index, layer_images(labels, seed=0))
    assert [name for name, _ in layers] == ["conv1", "layer1", "layer2", "layer3", "layer4", "expand", "up1", "maps"]
    k = len(index)
    assert [a.shape for _, a in layers] == [(k, 64, 32, 32), (k, 64, 16, 16), (k, 128, 8, 8), (k, 256, 4, 4),
                                            (k, 512, 2, 2), (k, 3, 2, 2), (k, 3, 4, 4), (k, 3, 8, 8)]
    assert [m["name"] for m in meta["layers"]] == [name for name, _ in layers]
    # The last layer is the maps: the true class's map equals the one the main render stored.
    maps = dict(layers)["maps"]
    np.testing.assert_array_equal(maps[np.arange(k), labels[index]], store.read(Unit("clean", 2))["map_true"][index])


def test_boxes_are_scaled_to_the_image_the_model_sees(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    Image.new("RGB", (64, 32)).save(tmp_path / "a.png")  # 64 wide, 32 high
    samples = [SimpleNamespace(path=tmp_path / "a.png", box=(10, 20, 30, 40)), SimpleNamespace(path=None, box=None)]
    assert clip_boxes(samples) == [[10, 20, 30, 31], None]  # clipped to the 32 rows
    # At 224 px: column 10 covers [35, 38.5), column 30 [105, 108.5): 35..108; rows ×7: 140..223.
    assert clip_boxes(samples, 224) == [[35, 140, 108, 223], None]
    assert clip_boxes(samples, 64)[0] == [10, 40, 30, 63]  # rows ×2: row 20 → 40, row 31 → [62, 64)
