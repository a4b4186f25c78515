"""The sanity checks' similarities: Spearman against scipy, SSIM against scikit-image, and the
analysis.json record from a hand-made sanity file."""

from __future__ import annotations

import numpy as np
import pytest

from edvis.analyze import sanity
from tests.analyze.test_stage import run  # noqa: F401 (fixture)

rank_correlation, sanity_section, ssim = sanity.rank_correlation, sanity.sanity_section, sanity.ssim


def test_rank_correlation_by_hand_and_against_scipy() -> None:
    from scipy.stats import spearmanr

    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    assert rank_correlation(a, a[:, ::-1, ::-1]).tolist() == [-1.0]  # the order reversed
    assert rank_correlation(a, a * 10 + 3).tolist() == [1.0]  # a monotone change keeps the ranks
    assert np.isnan(rank_correlation(a, np.zeros_like(a))[0])  # a constant map has no ranks
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (5, 8, 8)).astype(float)  # many ties
    y = rng.integers(0, 4, (5, 8, 8)).astype(float)
    want = [spearmanr(x[i].ravel(), y[i].ravel()).statistic for i in range(5)]
    np.testing.assert_allclose(rank_correlation(x, y), want, atol=1e-12)


@pytest.mark.parametrize("side", [8, 5, 2])
def test_ssim_equals_scikit_image(side: int) -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(side)
    a, b = rng.random((4, side, side)), rng.random((4, side, side))
    b[0] = a[0]
    got = ssim(a * 3 + 1, b)  # each map is scaled to [0, 1] first
    win = min(7, side) - (min(7, side) + 1) % 2

    def unit(x: np.ndarray) -> np.ndarray:
        return (x - x.min()) / (x.max() - x.min())

    if side < 3:  # scikit-image refuses windows under 3: one window, the whole map, by hand
        for i in range(4):
            x, y = unit(a[i]).ravel(), unit(b[i]).ravel()
            mx, my = x.mean(), y.mean()
            vx, vy, cxy = x.var(ddof=1), y.var(ddof=1), np.cov(x, y)[0, 1]
            c1, c2 = 1e-4, 9e-4
            assert got[i] == pytest.approx((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        return
    want = [structural_similarity(unit(a[i]), unit(b[i]), win_size=win, data_range=1.0) for i in range(4)]
    np.testing.assert_allclose(got, want, atol=1e-10)
    assert got[0] == pytest.approx(1.0)


def test_the_record_per_method_and_step() -> None:
    rng = np.random.default_rng(1)
    trained = rng.random((3, 8, 8))
    maps = np.stack([
        np.stack([trained, trained * 2, 1 - trained]),  # "fixed": unchanged, then its ranks reversed
        np.stack([trained, rng.random((3, 8, 8)), rng.random((3, 8, 8))]),
    ])  # (M=2, T+1=3, K=3, 8, 8)
    other = np.stack([trained * 5, trained[:, ::-1]])
    doc = sanity_section({"maps": maps, "other_class_maps": other, "index": np.array([4, 7, 9])},
                         {"methods": ["fixed", "own"], "steps": ["original", "up2", "up1"], "epoch": 3, "layer": "maps"})
    rows = {(r["method"], r["step"]): r for r in doc["randomisation"]}
    assert rows[("fixed", "original")] == {"method": "fixed", "step": "original", "spearman": 1.0, "ssim": 1.0}
    assert rows[("fixed", "up2")]["spearman"] == 1.0 and rows[("fixed", "up2")]["ssim"] == 1.0  # scaling changes nothing
    assert rows[("fixed", "up1")]["spearman"] == -1.0
    assert abs(rows[("own", "up2")]["spearman"]) < 0.5
    logit = {r["method"]: r for r in doc["random_logit"]}
    assert logit["fixed"]["spearman"] == 1.0 and logit["own"]["spearman"] < 1.0
    assert doc["images"] == 3 and doc["index"] == [4, 7, 9] and doc["steps"] == ["original", "up2", "up1"]


def _write_sanity(root, maps, other, meta):
    import io
    import json

    from edvis.run import digest

    buf = io.BytesIO()
    np.savez(buf, index=np.arange(maps.shape[2]), labels=np.zeros(maps.shape[2], np.int64),
             other_class=np.ones(maps.shape[2], np.int64), maps=maps.astype(np.float16),
             other_class_maps=other.astype(np.float16), meta=np.array(json.dumps(meta)))
    path = root / "explain" / "sanity.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    digest.write_verified(path, buf.getvalue())
    return path


def test_analyze_adds_the_sanity_record_and_refuses_a_damaged_file(run, said):  # noqa: F811
    import json

    from edvis.analyze import analyze_run
    from edvis.errors import EdvisError
    from tests.conftest import flip

    rng = np.random.default_rng(2)
    trained = rng.random((6, 8, 8))
    maps = np.stack([np.stack([trained, 1 - trained])])  # one method, two steps: ranks reversed
    path = _write_sanity(run, maps, trained[None] * 2, {"methods": ["own"], "steps": ["original", "up2"], "epoch": 2})
    doc = json.loads(analyze_run(run).read_text())
    steps = {r["step"]: r["spearman"] for r in doc["sanity"]["randomisation"]}
    assert steps == {"original": 1.0, "up2": -1.0} and doc["sanity"]["random_logit"][0]["spearman"] == 1.0
    assert doc["inputs"]["sanity"]["explain/sanity.npz"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    analyze_run(run)
    assert said[-1].endswith("up to date")
    flip(path)  # up to date still (the record is unchanged): read again only when asked
    with pytest.raises(EdvisError, match=r"sanity file \S+sanity\.npz is damaged.*edvis explain --sanity"):
        analyze_run(run, force=True)
