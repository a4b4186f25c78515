import math

import numpy as np
import pytest

from edvis.analyze.metrics import (
    auroc,
    bilinear_matrix,
    box_area_share,
    centre_prior,
    class_means,
    confidence_histogram,
    confused_pairs,
    confusion_matrix,
    ece,
    energy_share,
    first_reaching,
    fixed_pattern_share,
    flip_counts,
    learning_order,
    localisation,
    map_peaks,
    nanmean,
    paired_interval,
    parity_share,
    pattern_formed,
    pearson_rows,
    rankdata,
    relative_ce,
    reliability,
    sharpness,
    spearman,
    topk_correct,
    upsample,
)


def test_bilinear_weights_by_hand():
    # 2 → 4 with half-pixel centres: output x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
    np.testing.assert_allclose(
        bilinear_matrix(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
    )


def test_upsampling_matches_pillow():
    from PIL import Image

    m = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    want = np.asarray(Image.fromarray(m[0], mode="F").resize((64, 64), Image.BILINEAR))
    # Pillow's bilinear filter widens its support when shrinking only; for enlarging it is plain bilinear.
    np.testing.assert_allclose(upsample(m, 64)[0], want, atol=1e-5)


def test_a_hot_cell_peaks_at_its_own_block():
    maps = np.zeros((2, 8, 8))
    maps[0, 2, 5] = 1.0  # row 2, column 5 → pixel block x 40..47, y 16..23; centre 43.5, 19.5
    maps[1, 7, 0] = 1.0
    # Inside: the four pixels round the cell centre tie, all as near their centroid; the first
    # in row-major order wins. At the border resizing clamps: pixels x 0..3
    # (x_src = (i + 0.5)/8 - 0.5 < 0) and y 60..63 (y_src > 7) all take the corner cell's full
    # value; their centroid is (1.5, 61.5), and (1, 61) is the first of the four nearest it.
    assert map_peaks(maps, 64).tolist() == [[43, 19], [1, 61]]


def test_a_two_by_two_map_points_at_the_middle_of_its_corner_plateau():
    # Upsampled 2 → 64, pixel i reads x_src = (i + 0.5)/32 - 0.5, below 0 for i ≤ 15: the hot
    # top-right cell fills x 48..63, y 0..15 with its full value. Centroid (55.5, 7.5); the four
    # pixels nearest it tie, and (55, 7) is the first.
    maps = np.array([[[0.2, 0.9], [0.1, 0.4]]])
    assert map_peaks(maps, 64).tolist() == [[55, 7]]
    # Two separate equal maxima: the peak is one of them, not the low ground between.
    two = np.zeros((1, 8, 8))
    two[0, 2, 1] = two[0, 2, 6] = 1.0
    assert map_peaks(two, 64).tolist()[0] in ([11, 19], [12, 19], [51, 19], [52, 19])


def test_pointing_game_counts_hits_and_centre_prior():
    maps = np.zeros((3, 8, 8))
    maps[0, 0, 0] = 1  # plateau x, y 0..3: peak (1, 1)
    maps[1, 0, 0] = 1
    maps[2, 4, 4] = 1  # peak (35, 35)
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [30, 30, 40, 40]])
    r = localisation(maps, boxes, 64)
    assert r["pointing"] == pytest.approx(2 / 3)
    assert r["centre_pointing"] == pytest.approx(2 / 3)  # (32, 32) is inside boxes 2 and 3


# -- localisation -----------------------------------------------------------------------------


def test_energy_share_counts_the_inclusive_box():
    img = np.arange(16, dtype=float).reshape(1, 4, 4)
    img = np.concatenate([img, np.zeros((1, 4, 4))])
    # box x 1..2, y 1..2 holds cells 5 + 6 + 9 + 10 = 30 of 0 + 1 + … + 15 = 120
    got = energy_share(img, np.array([[1, 1, 2, 2], [0, 0, 3, 3]]))
    assert got[0] == pytest.approx(0.25)
    assert np.isnan(got[1])  # an all-zero image has no energy to share


def test_box_energy_clips_at_zero_rather_than_shifting():
    # With size == S the bilinear weights are the identity (x_src = i), so the map is used as is.
    m = np.array([[[3.0, -1.0], [0.0, 1.0]]])
    # clipped: [[3, 0], [0, 1]] → top-left cell holds 3 of 4 = 0.75
    # (shifting by the minimum would give [[4, 0], [1, 2]] and 4/7 instead)
    assert localisation(m, np.array([[0, 0, 0, 0]]), 2)["energy_in_box"] == pytest.approx(0.75)


def test_centre_prior_values():
    # size 3, sigma 1/3 → σ = 1 px, centre pixel 1: weight exp(−(dx² + dy²)/2)
    got = centre_prior(3, 1 / 3)
    e = np.exp
    np.testing.assert_allclose(got, [[e(-1), e(-0.5), e(-1)], [e(-0.5), 1, e(-0.5)], [e(-1), e(-0.5), e(-1)]])


def test_box_area_share():
    # x 0..1 (2 px) × y 0..3 (4 px) = 8 of 16 pixels
    assert box_area_share(np.array([[0, 0, 1, 3]]), 4).tolist() == [0.5]


@pytest.mark.parametrize("chunk", [1, 1024])
def test_localisation_summary_by_hand(chunk):
    # S = size = 2: the upsampling is the identity.
    maps = np.array([
        [[0.0, 5.0], [1.0, 0.0]],  # peak at x 1, y 0
        [[2.0, 0.0], [0.0, 0.0]],  # peak at x 0, y 0
        [[0.0, 0.0], [0.0, 0.0]],  # flat zero: peak (0, 0), no energy
    ])
    boxes = np.array([[1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]])
    r = localisation(maps, boxes, 2, chunk=chunk)
    assert r["pointing"] == pytest.approx(2 / 3)  # hit, miss, hit (first pixel wins the tie)
    # energy: (5 + 0) / 6, 0 / 2, undefined → mean of 5/6 and 0
    assert r["energy_in_box"] == pytest.approx(5 / 12)
    # centre pixel (1, 1): in box 1 (x 1, y 0..1) and box 2 (1, 1), not in box 3
    assert r["centre_pointing"] == pytest.approx(2 / 3)
    # a 2×2 centred Gaussian is flat: shares 2/4, 1/4, 1/4, as for a uniform map
    assert r["energy_centre"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    assert r["energy_uniform"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    # hits 1, 0, 1 against the centre's 1, 1, 0: differences 0, -1, 1, mean 0, s = 1, half-width
    # 1.96 / √3 = 1.13, clipped to the ±1 a difference of shares can reach
    assert r["pointing_vs_centre_lo"] == -1.0 and r["pointing_vs_centre_hi"] == 1.0


def test_paired_interval_by_hand():
    # mean 0.25; s = sqrt(((.15)² + (.05)² + (.05)² + (.15)²) / 3) = 0.129099; s / √4 = 0.0645497
    mean, lo, hi = paired_interval(np.array([0.1, 0.2, np.nan, 0.3, 0.4]))  # NaN: left out
    assert mean == pytest.approx(0.25)
    half = 1.959964 * 0.0645497
    assert lo == pytest.approx(0.25 - half, abs=1e-6) and hi == pytest.approx(0.25 + half, abs=1e-6)
    assert paired_interval(np.full(7, 0.5)) == pytest.approx((0.5, 0.5, 0.5))  # no spread: the mean itself
    one = paired_interval(np.array([0.3]))
    assert one[0] == 0.3 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(v) for v in paired_interval(np.array([np.nan])))
    # hits minus a centre's for three images, -1, -1, 0: mean -2/3, s = 0.57735, half-width 0.653321
    assert paired_interval(np.array([-1.0, -1.0, 0.0])) == pytest.approx((-2 / 3, -1.0, -2 / 3 + 0.653321), abs=1e-6)


# -- accuracy and confusion -------------------------------------------------------------------


def test_topk_correct():
    top = np.array([[2, 0, 1], [1, 2, 0]])
    labels = np.array([0, 0])
    assert topk_correct(top, labels, 1).tolist() == [False, False]
    assert topk_correct(top, labels, 2).tolist() == [True, False]
    assert topk_correct(top, labels, 5).tolist() == [True, True]  # k beyond the columns: all of them


def test_class_means_skip_nan_and_empty_classes():
    got = class_means(np.array([1.0, 0.0, np.nan, 0.5]), np.array([0, 0, 1, 2]), 4)
    # class 0: (1 + 0)/2; class 1 has only NaN; class 2: 0.5; class 3 has no image
    np.testing.assert_array_equal(got, [0.5, np.nan, 0.5, np.nan])


def test_confusion_matrix():
    m = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 0, 1, 2]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 1, 1]]


def test_confused_pairs_rank_both_directions_with_image_ids():
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 2])
    preds = np.array([1, 1, 0, 0, 2, 1, 0, 0])
    # rows (true): 0 → [1, 2, 0], 1 → [1, 0, 0], 2 → [2, 1, 1]
    # pairs: (0, 1): 2 + 1 = 3; (0, 2): 0 + 2 = 2; (1, 2): 0 + 1 = 1
    pairs = confused_pairs(labels, preds, 3, k=2)
    assert [(p["a"], p["b"], p["a_as_b"], p["b_as_a"], p["total"]) for p in pairs] == [(0, 1, 2, 1, 3), (0, 2, 0, 2, 2)]
    assert pairs[0]["images_a_as_b"] == [0, 1] and pairs[0]["images_b_as_a"] == [3]
    assert pairs[1]["images_a_as_b"] == [] and pairs[1]["images_b_as_a"] == [6, 7]
    assert confused_pairs(labels, preds, 3, k=5, max_images=1)[0]["images_a_as_b"] == [0]
    assert len(confused_pairs(labels, preds, 3, k=5)) == 3  # only pairs with a confusion
    assert confused_pairs(labels, labels, 3) == []
    # Equal totals rank by a, then b: {0,1} (0 as 1: image 1, 1 as 0: image 4) before {0,2}
    # (0 as 2: image 2, 2 as 0: image 6).
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    preds = np.array([0, 1, 2, 1, 0, 2, 0, 2])
    assert [(p["a"], p["b"], p["images_a_as_b"], p["images_b_as_a"]) for p in confused_pairs(labels, preds, 3)] == [
        (0, 1, [1], [4]), (0, 2, [2], [6])]


# -- confidence -------------------------------------------------------------------------------


def test_reliability_bins_and_ece_by_hand():
    conf = np.array([0.05, 0.1, 0.5, 0.55, 0.95, 1.0])
    correct = np.array([0, 1, 1, 0, 1, 1], dtype=bool)
    # bins floor(15 p): 0.75 → 0, 1.5 → 1, 7.5 → 7, 8.25 → 8, 14.25 → 14, 15 → 14 (p = 1 joins the last)
    r = reliability(conf, correct)
    assert r["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 2]
    assert r["lower"][7] == pytest.approx(7 / 15) and r["upper"][7] == pytest.approx(8 / 15)
    assert r["accuracy"][14] == 1.0 and r["confidence"][14] == pytest.approx(0.975)
    assert np.isnan(r["accuracy"][2]) and np.isnan(r["confidence"][2])
    # |acc − conf| per bin: 0.05, 0.9, 0.5, 0.55, 0.025 (twice) → (0.05 + 0.9 + 0.5 + 0.55 + 0.05) / 6
    assert ece(conf, correct) == pytest.approx(2.05 / 6)
    assert np.isnan(ece(np.zeros(0), np.zeros(0, dtype=bool)))


def test_confidence_histogram_by_hand():
    # 20 bins of width 0.05: 0 → bin 0, 0.0499 → 0, 0.05 → 1, 0.62 → 12, 0.999 → 19 and 1 joins the last bin
    conf = np.array([0.0, 0.0499, 0.05, 0.62, 0.62, 0.999, 1.0])
    right = np.array([True, False, True, True, False, False, True])
    r, w = confidence_histogram(conf, right)
    want_r, want_w = np.zeros(20, int), np.zeros(20, int)
    want_r[[0, 1, 12, 19]] = [1, 1, 1, 1]
    want_w[[0, 12, 19]] = [1, 1, 1]
    assert r.tolist() == want_r.tolist() and w.tolist() == want_w.tolist()
    r, w = confidence_histogram(np.array([0.5, 0.5]), np.array([True, True]), bins=2)
    assert r.tolist() == [0, 2] and w.tolist() == [0, 0]  # 0.5 is the second bin's lower edge
    r, w = confidence_histogram(np.zeros(0), np.zeros(0, bool), bins=3)
    assert r.tolist() == w.tolist() == [0, 0, 0]


def test_flip_counts_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clean = np.array([0, 1, 1, 0, 2, 1])  # right, wrong, right, wrong, right, wrong
    pert = np.array([1, 0, 1, 2, 2, 1])  # 0: right → wrong; 1: wrong → right; 3: wrong → another wrong;
    # 5: wrong → the same wrong class (no flip)
    assert flip_counts(labels, clean, pert) == {"right_to_wrong": 1, "wrong_to_right": 1, "wrong_to_wrong": 1}
    assert flip_counts(labels, clean, clean) == {"right_to_wrong": 0, "wrong_to_right": 0, "wrong_to_wrong": 0}


def test_rankdata_averages_ties():
    assert rankdata(np.array([3, 1, 3, 2])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert rankdata(np.zeros(0)).tolist() == []


def test_auroc_is_mann_whitney_with_ties_half():
    # (positive, negative) pairs: 0.9>0.8, 0.9>0.3, 0.8=0.8 (½), 0.8>0.3 → 3.5 of 4
    assert auroc(np.array([0.9, 0.8, 0.8, 0.3]), np.array([1, 1, 0, 0], dtype=bool)) == pytest.approx(0.875)
    assert auroc(np.array([0.1, 0.9]), np.array([1, 0], dtype=bool)) == 0.0
    assert np.isnan(auroc(np.array([0.5, 0.6]), np.array([True, True])))  # nobody wrong
    assert np.isnan(auroc(np.array([0.5, 0.6]), np.array([False, False])))  # nobody right


# -- maps -------------------------------------------------------------------------------------


def test_sharpness_peak_to_mean_after_shift():
    maps = np.array([
        [[0.0, 0.0], [0.0, 4.0]],  # one hot cell: 4 / 1 = S² = 4
        [[1.0, 1.0], [1.0, 1.0]],  # flat: 1 by definition
        [[-1.0, 1.0], [1.0, 1.0]],  # shifted [[0, 2], [2, 2]]: 2 / 1.5
    ])
    np.testing.assert_allclose(sharpness(maps), [4.0, 1.0, 4 / 3])


def test_pearson_rows():
    a = np.array([[1.0, 2, 3, 4], [1, 2, 3, 4], [1, 0, 0, 1], [5, 5, 5, 5]])
    b = np.array([[2.0, 4, 6, 8], [4, 3, 2, 1], [1, 1, 0, 0], [1, 2, 3, 4]])
    # row 3: centred [.5, -.5, -.5, .5]·[.5, .5, -.5, -.5] = 0; row 4: constant → undefined
    np.testing.assert_allclose(pearson_rows(a, b), [1.0, -1.0, 0.0, np.nan])


def test_spearman_by_hand():
    # ranks of y: 1, 2, 4, 3; d = 0, 0, −1, 1 → 1 − 6·2 / (4·15) = 0.8
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 40, 30])) == pytest.approx(0.8)
    # ties: ranks x = 1.5, 1.5, 3 (centred −.5, −.5, 1), y = 1, 2, 3 (centred −1, 0, 1):
    # 1.5 / sqrt(1.5 · 2)
    assert spearman(np.array([1, 1, 2]), np.array([1, 2, 3])) == pytest.approx(1.5 / np.sqrt(3))
    assert np.isnan(spearman(np.array([1.0]), np.array([2.0])))
    assert np.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


# -- learning dynamics -------------------------------------------------------------------------


def test_first_reaching_a_share_of_the_final_accuracy():
    acc = np.array([[0.2, 0.5, 0.1], [0.6, 0.4, 0.2], [0.8, 0.5, 0.0]])  # (E=3, C=3)
    epochs = np.array([1, 2, 3])
    # class 0: final 0.8, half 0.4 → epoch 2, 90% 0.72 → epoch 3
    # class 1: final 0.5: 0.25 and 0.45 are both reached at epoch 1
    # class 2: final 0 → undefined
    np.testing.assert_array_equal(first_reaching(acc, epochs, 0.5), [2, 1, np.nan])
    np.testing.assert_array_equal(first_reaching(acc, epochs, 0.9), [3, 1, np.nan])


def test_pattern_formed_needs_the_similarity_to_stay_up():
    sim = np.array([  # (E=4, C=4) at epochs 2, 4, 6, 8
        [0.9, 0.9, 0.9, 0.5],
        [0.7, 0.9, np.nan, 0.9],
        [0.85, 0.9, 0.9, np.nan],
        [1.0, 1.0, 0.7, 1.0],
    ])
    # class 0 dips at epoch 4 → 6; class 1 always up → 2; class 2 ends below → undefined;
    # class 3: NaN at epoch 6 counts as below → 8
    np.testing.assert_array_equal(pattern_formed(sim, np.array([2, 4, 6, 8]), 0.8), [6, 2, np.nan, 8])


def test_learning_order():
    # epoch_90: 3, 1, never, 1; classes 1 and 3 tie at epoch 1 → higher mean accuracy (3) first
    order = learning_order(np.array([3, 1, np.nan, 1]), np.array([0.5, 0.4, 0.9, 0.6]))
    assert order.tolist() == [3, 1, 0, 2]


# -- perturbations -----------------------------------------------------------------------------


def test_relative_ce():
    # mean error (0.2 + 0.4 + 0.6) / 3 = 0.4 over clean error 0.2
    assert relative_ce(np.array([0.2, 0.4, 0.6]), 0.2) == pytest.approx(2.0)
    assert np.isnan(relative_ce(np.array([0.2]), 0.0))  # a perfect clean model has no reference
    assert np.isnan(relative_ce(np.zeros(0), 0.2))


def test_nanmean():
    assert nanmean(np.array([1.0, np.nan, 2.0])) == 1.5
    assert np.isnan(nanmean(np.array([np.nan])))


def test_fixed_pattern_share_by_hand():
    diag = np.array([[1.0, 0.0], [0.0, 1.0]])  # centred: ±0.5, energy 1
    # One pattern, any scale, sign or offset per map: all of the variance.
    assert fixed_pattern_share(np.stack([diag, 3 * diag + 2, 1 - diag])) == pytest.approx(1.0)
    # Two orthogonal patterns of energies 1 and 4 ([[3, 3], [1, 1]] centred is ±1): the larger explains 4/5.
    assert fixed_pattern_share(np.stack([diag, np.array([[3.0, 3.0], [1.0, 1.0]])])) == pytest.approx(0.8)
    # Three orthogonal patterns of equal energy: 1/3.
    rows = np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]), diag
    assert fixed_pattern_share(np.stack(rows)) == pytest.approx(1 / 3)
    # Constant maps carry no spatial variance at all.
    assert np.isnan(fixed_pattern_share(np.full((3, 2, 2), 7.0)))


def test_parity_share_by_hand():
    checker = np.tile(np.array([[1.0, 0.0], [0.0, 1.0]]), (2, 2))  # 4×4, depends on parity only
    assert parity_share(checker[None]) == pytest.approx(1.0)
    # Rows 0..3: centred -1.5, -0.5, 0.5, 1.5 (energy 4 × 5 = 20); even rows average -0.5, odd
    # rows 0.5, so the parity part is ±0.5 on all 16 cells: energy 4, a share of 4 / 20.
    ramp = np.repeat(np.arange(4.0)[:, None], 4, axis=1)
    assert parity_share(ramp[None]) == pytest.approx(0.2)
    # Pooled over maps by energy: the checkerboard (energy 4) and the ramp (20): (4 + 4) / 24.
    assert parity_share(np.stack([checker, ramp])) == pytest.approx(8 / 24)
    assert np.isnan(parity_share(np.zeros((2, 4, 4))))


def test_paired_interval_agrees_with_a_bootstrap_of_the_same_differences():
    # An independent estimate: the 2.5% and 97.5% percentiles of 4000 resampled means.
    rng = np.random.default_rng(3)
    diff = rng.normal(0.01, 0.04, 500) + (rng.random(500) < 0.1) * 0.1  # skewed, like AUC differences
    means = diff[rng.integers(0, len(diff), (4000, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    mean, got_lo, got_hi = paired_interval(diff)
    assert mean == pytest.approx(diff.mean())
    assert abs(got_lo - lo) < 0.05 * (hi - lo) and abs(got_hi - hi) < 0.05 * (hi - lo)


def test_small_object_pointing_counts_only_boxes_under_a_quarter_of_the_image():
    # 8 × 8 maps on 64 px: a single hot cell (r, c) upsamples to a peak at about (8c + 3.5, 8r + 3.5).
    maps = np.zeros((4, 8, 8))
    maps[0, 0, 0] = 1  # peak near (3, 3)
    maps[1, 0, 0] = 1
    maps[2, 4, 4] = 1  # peak near (35, 35)
    maps[3, 4, 4] = 1
    boxes = np.array([
        [0, 0, 15, 15],    # 256 px of 4096: small; the map hits, the centre (32, 32) misses
        [40, 40, 55, 55],  # small; both miss
        [24, 24, 39, 39],  # small (256 px); both hit
        [0, 0, 63, 32],    # 64 × 33 px, about half the image: not small; the map misses, the centre hits
    ])
    r = localisation(maps, boxes, 64)
    assert r["small_images"] == 3
    assert r["pointing_small"] == pytest.approx(2 / 3)
    assert r["centre_pointing_small"] == pytest.approx(1 / 3)
    # exactly a quarter of the image is not small
    assert localisation(maps[:1], np.array([[0, 0, 31, 31]]), 64)["small_images"] == 0
    assert np.isnan(localisation(maps[:1], np.array([[0, 0, 31, 31]]), 64)["pointing_small"])
