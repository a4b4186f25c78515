import math

import numpy as np
import pytest

from edvis.render import session_providers, softmax, summarise


def test_softmax_by_hand_and_stable_for_large_logits():
    p = softmax(np.array([[0.0, math.log(2.0), 0.0], [1000.0, 1000.0, 1000.0]]))
    np.testing.assert_allclose(p[0], [0.25, 0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)


def test_summarise_picks_true_and_top1_maps():
    # Class c's map is filled with the value 10 + c, so each picked map says which class it is.
    n, c = 2, 6
    maps = np.broadcast_to((10.0 + np.arange(c))[None, :, None, None], (n, c, 8, 8)).astype(np.float32)
    logits = np.array([[0, 0, 3, 1, 2, 0.5], [5, 0, 0, 0, 0, 0]], dtype=np.float32)
    labels = np.array([4, 0])
    out = summarise(logits, maps, labels)
    assert out["top5"].tolist() == [[2, 4, 3, 5, 0], [0, 1, 2, 3, 4]]  # ties: lower index first
    assert out["top5"].dtype == np.int16 and out["probs"].dtype == np.float16
    e = np.exp([0, 0, 3, 1, 2, 0.5])
    np.testing.assert_allclose(out["top5_prob"][0], (e / e.sum())[[2, 4, 3, 5, 0]], rtol=1e-6)
    assert (out["map_true"][0] == 14).all() and (out["map_pred"][0] == 12).all()
    assert (out["map_true"][1] == 10).all() and (out["map_pred"][1] == 10).all()


def test_cpu_provider_without_a_gpu(monkeypatch):
    monkeypatch.setattr("edvis.render.gpu_present", lambda: False)
    assert session_providers("auto") == ["CPUExecutionProvider"]
    assert session_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="--provider"):
        session_providers("tpu")


def test_render_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, edvis.render, edvis.store, edvis.site; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
