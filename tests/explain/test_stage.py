"""``edvis explain`` end to end on the tiny rendered run: one unit per (rendered setting, epoch),
the shapes and meta it promises, the render's predictions, a rerun that does nothing, one-line
errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edvis.cli import main
from edvis.explain import EXPLAIN_FORMAT, SCORECAM_IMAGES, explain_run
from edvis.run import RenderStore, Run, Unit, checkpoint_digest


@pytest.fixture(scope="module")
def explained(rendered_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A copy of the rendered run, explained once with gradcam through the command line, and what it logged."""
    from tests.conftest import logged

    run = tmp_path_factory.mktemp("explained") / "run"
    shutil.copytree(rendered_run, run)
    with logged() as lines:
        assert main(["explain", "--run", str(run), "--method", "gradcam", "--device", "cpu"]) == 0
    return run, lines


def test_one_unit_per_rendered_setting_and_epoch_with_the_promised_arrays(explained):
    run, said = explained
    render = RenderStore(Run(run).render_dir)
    store = RenderStore(Run(run).explain_dir("gradcam"))
    settings = render.manifest()["settings"]
    assert len(settings) == 8  # clean and the paper's seven
    assert sorted((u.perturbation, u.epoch) for u in store.units()) == sorted((s, 1) for s in settings)
    manifest = store.manifest()
    assert manifest["method"] == "gradcam" and manifest["layer"] == "maps" and manifest["map_size"] == 8
    assert manifest["val"] == render.manifest()["val"] and manifest["dataset"] == render.manifest()["dataset"]
    n = len(render.manifest()["val"]["labels"])
    for unit in store.units():
        arrays = store.read(unit)
        assert arrays["map_true"].shape == arrays["map_pred"].shape == (n, 8, 8)
        assert arrays["map_true"].dtype == np.float16 and "map_top5" not in arrays
        np.testing.assert_array_equal(arrays["index"], np.arange(n))
        meta = store.meta(unit)
        assert meta["format"] == EXPLAIN_FORMAT and meta["layer"] == "maps" and meta["images"] == n
        assert meta["checkpoint_sha256"] == checkpoint_digest(Run(run).checkpoint(1))
        # The same images and network as the render: its probabilities, to float16 and ONNX parity.
        rendered = render.read(unit)
        np.testing.assert_allclose(arrays["probs"].astype(np.float32), rendered["probs"].astype(np.float32), atol=2e-3)
    assert any("explain: gradcam clean/epoch_001 (1/8)" in line and "img/s" in line for line in said)


def test_the_maps_are_the_renders_own_over_64_in_every_setting(explained):
    """Grad-CAM at the map layer is the model's map / 64 (S = 8): the render store's map_true and
    map_pred, to float16, on the same (perturbed) images."""
    run, _ = explained
    render, store = RenderStore(Run(run).render_dir), RenderStore(Run(run).explain_dir("gradcam"))
    for unit in render.units():
        ours, theirs = store.read(unit), render.read(unit)
        for key in ("map_true", "map_pred"):
            np.testing.assert_allclose(ours[key].astype(np.float32) * 64, theirs[key].astype(np.float32),
                                       rtol=1e-2, atol=2e-3, err_msg=f"{unit.key} {key}")


def test_a_rerun_explains_nothing(explained, said):
    run, _ = explained
    before = {p: p.stat().st_mtime_ns for p in (run / "explain").rglob("*.npz")}
    assert main(["explain", "--run", str(run), "--method", "gradcam", "--device", "cpu"]) == 0
    assert any("gradcam: all 1 epochs × 8 setting(s) up to date" in line for line in said)
    assert {p: p.stat().st_mtime_ns for p in (run / "explain").rglob("*.npz")} == before


def test_a_subset_and_another_seed_are_explained_again_with_their_index(explained, tmp_path):
    run = shutil.copytree(explained[0], tmp_path / "run")
    done = explain_run(run, "gradcam", images=4, seed=3, settings=["clean", "gray"])
    assert [u.key for u in done] == ["clean/epoch_001", "gray/epoch_001"]
    arrays = RenderStore(Run(run).explain_dir("gradcam")).read(done[0])
    assert arrays["index"].shape == (4,) and arrays["map_true"].shape == (4, 8, 8)
    assert explain_run(run, "gradcam", images=4, seed=3, settings=["clean", "gray"]) == []


def test_scorecam_defaults_to_the_seeded_subset(explained, tmp_path):
    run = shutil.copytree(explained[0], tmp_path / "run")
    done = explain_run(run, "scorecam", settings=["clean"])
    arrays = RenderStore(Run(run).explain_dir("scorecam")).read(done[0])
    n = len(RenderStore(Run(run).render_dir).manifest()["val"]["labels"])
    assert len(arrays["index"]) == min(n, SCORECAM_IMAGES)


@pytest.mark.parametrize("argv,flag", [(["--method", "gradcam", "--layer", "nope"], "--layer"),
                                       (["--method", "nope"], "--method"),
                                       (["--method", "gradcam,nope"], "got 'nope'"),
                                       (["--sanity", "--method", "eigencam,"], "got ''"),
                                       (["--method", "gradcam", "--images", "0"], "--images"),
                                       (["--method", "gradcam", "--epochs", "5"], "--epochs"),
                                       (["--method", "gradcam", "--epochs", "1,z"], "--epochs"),
                                       (["--method", "gradcam", "--settings", "fog"], "settings")])
def test_bad_values_are_one_line_naming_the_flag(explained, argv, flag, capsys):
    run, _ = explained
    assert main(["explain", "--run", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edvis: error:") and flag in err[0]


def test_a_store_of_another_layer_is_refused(explained, capsys):
    run, _ = explained
    assert main(["explain", "--run", str(run), "--method", "gradcam", "--layer", "up1"]) == 2
    err = capsys.readouterr().err
    assert "--layer up1" in err and "'maps'" in err
    assert json.loads((run / "explain" / "gradcam" / "manifest.json").read_text())["layer"] == "maps"


def test_another_seed_gives_other_noise_than_the_render(explained, tmp_path):
    """The check that the maps are the render's can fail: with seed 1 the salt-and-pepper images
    are not those rendered with seed 0, and their maps differ."""
    run = shutil.copytree(explained[0], tmp_path / "run")
    (unit,) = explain_run(run, "gradcam", seed=1, settings=["sp0.005"])
    ours = RenderStore(Run(run).explain_dir("gradcam")).read(unit)["map_true"].astype(np.float32) * 64
    theirs = RenderStore(Run(run).render_dir).read(unit)["map_true"].astype(np.float32)
    assert not np.allclose(ours, theirs, rtol=1e-2, atol=2e-3)


def test_a_damaged_unit_or_manifest_is_computed_again(explained, tmp_path):
    from tests.conftest import flip

    run = shutil.copytree(explained[0], tmp_path / "run")
    store = RenderStore(Run(run).explain_dir("gradcam"))
    first = store.read(store.units()[0], optional=("index",))
    flip(store.path(store.units()[0]))
    assert [u.key for u in explain_run(run, "gradcam")] == [store.units()[0].key]
    again = RenderStore(store.root).read(store.units()[0], optional=("index",))
    assert all(np.array_equal(first[k], again[k]) for k in first)  # computed again, the same bytes
    flip(store.manifest_path)
    assert len(explain_run(run, "gradcam")) == 8
    assert RenderStore(store.root).manifest()["layer"] == "maps"


def test_a_render_manifest_without_settings_is_read_by_its_units(explained, tmp_path):
    """A render store written before the manifest recorded its settings: the settings are the
    folders of its units."""
    from edvis.run import digest

    run = shutil.copytree(explained[0], tmp_path / "run")
    path = Run(run).render_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["settings"]
    digest.write_verified(path, json.dumps(manifest).encode())
    shutil.rmtree(run / "explain")
    done = explain_run(run, "gradcam", images=2)
    assert sorted(u.perturbation for u in done) == sorted(RenderStore(Run(run).render_dir).perturbations())
    assert len(done) == 8


def test_method_all_fills_one_store_per_method(explained, tmp_path):
    from edvis.explain import METHODS

    run = shutil.copytree(explained[0], tmp_path / "run")
    assert main(["explain", "--run", str(run), "--method", "all", "--images", "2", "--device", "cpu"]) == 0
    for method in METHODS:
        store = RenderStore(Run(run).explain_dir(method))
        assert store.manifest()["method"] == method and len(store.units()) == 8
        assert store.read(store.units()[0])["map_true"].shape == (2, 8, 8)


def test_settings_and_epochs_limit_what_is_explained(explained, tmp_path):
    run, _ = explained
    fresh = tmp_path / "run"
    shutil.copytree(run, fresh, ignore=shutil.ignore_patterns("explain"))
    assert main(["explain", "--run", str(fresh), "--method", "eigencam", "--settings", "clean", "gray",
                 "--epochs", "last", "--device", "cpu"]) == 0
    assert RenderStore(fresh / "explain" / "eigencam").units() == [Unit("clean", 1), Unit("gray", 1)]


def test_a_long_unit_reports_its_images_as_it_goes(rendered_run, tmp_path, said, monkeypatch):
    """Within a unit a line after each batch once PROGRESS_S has passed (0 here): 9 validation
    images in batches of 2 give 2, 4, 6 and 8 of 9; the ninth is the unit's own line."""
    monkeypatch.setattr("edvis.explain.stage.PROGRESS_S", 0.0)
    run = tmp_path / "run"
    shutil.copytree(rendered_run, run)
    explain_run(run, "gradcam", batch_size=2, settings=["clean"])
    within = [line for line in said if "images," in line]
    assert [line.split(") ")[1].split(" images")[0] for line in within] == ["2/9", "4/9", "6/9", "8/9"]
    assert all(line.startswith("explain: gradcam clean/epoch_001 (1/1) ") and "s left" in line for line in within)
