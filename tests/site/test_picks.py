"""The site's choices and counts, on tiny arrays whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edvis.site import picks

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PRED = np.array([0, 1, 2, 1, 0, 2, 0, 2])
# image: 0 1 2 3 4 5 6 7; wrong ones: 1 (0 as 1), 2 (0 as 2), 4 (1 as 0), 6 (2 as 0)


def test_confident_mistakes_by_probability_then_index() -> None:
    prob = np.array([0.9, 0.5, 0.7, 0.3, 0.7, 0.2, 0.1, 0.8])
    assert picks.confident_mistakes(LABELS, PRED, prob, 3) == [2, 4, 1]  # 0.7, 0.7 (lower index first), 0.5
    assert picks.confident_mistakes(LABELS, LABELS, prob, 3) == []


def test_choices_are_seeded_sorted_and_streams_differ() -> None:
    a = picks.choose(np.arange(100), 5, picks.rng(3, "gallery"))
    assert a == sorted(a) and len(set(a)) == 5
    assert a == picks.choose(np.arange(100), 5, picks.rng(3, "gallery"))
    assert a != picks.choose(np.arange(100), 5, picks.rng(3, "other"))
    assert picks.choose([7, 9], 5, picks.rng(0, "x")) == [7, 9]
    assert picks.choose([], 5, picks.rng(0, "x")) == []
    with pytest.raises(ValueError, match="seed"):
        picks.rng(-1, "x")


def test_same_class_pairs_need_two_right_images() -> None:
    # right: 0 (class 0), 3 (class 1), 5, 7 (class 2): only class 2 has two
    assert picks.same_class_pairs(LABELS, PRED, 3, picks.rng(0, "p")) == [(5, 7)]


def test_even_epochs_keep_first_and_last() -> None:
    assert picks.even_epochs(list(range(1, 10)), 4) == [1, 4, 6, 9]
    assert picks.even_epochs([1, 2, 3], 16) == [1, 2, 3]
    assert picks.even_epochs([1, 2, 3], 1) == [3]
    assert picks.even_epochs(list(range(1, 81)), 16)[:3] == [1, 6, 12]  # round(79 * k / 15) + 1
    assert len(picks.even_epochs(list(range(1, 81)), 16)) == 16


def test_mean_map_rescales_to_255() -> None:
    maps = np.zeros((2, 2, 2), dtype=np.uint8)
    maps[0, 0, 0] = 255
    maps[1, 0, 0] = 255
    maps[1, 1, 1] = 102  # mean: 255 at (0, 0), 51 at (1, 1) -> scaled: 255, 51
    out = picks.mean_map(maps)
    np.testing.assert_array_equal(out, [[255, 0], [0, 51]])
    np.testing.assert_array_equal(picks.mean_map(maps[:0]), np.zeros((2, 2)))


def test_map_correlation_and_constant_maps() -> None:
    assert picks.map_correlation(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(1.0)
    assert picks.map_correlation(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    assert picks.map_correlation(np.array([1, 1, 1]), np.array([1, 2, 3])) is None


def test_top_channels_and_minmax() -> None:
    act = np.zeros((4, 2, 2))
    act[1] = 3.0
    act[2] = 3.0
    act[3, 0, 0] = 8.0  # mean 2
    assert picks.top_channels(act, 3) == [1, 2, 3]  # ties: lower channel first
    np.testing.assert_array_equal(picks.scale_minmax(np.array([[-1.0, 1.0], [0.0, 3.0]])), [[0, 128], [64, 255]])
    np.testing.assert_array_equal(picks.scale_minmax(np.full((2, 2), 5.0)), np.zeros((2, 2)))


def test_large_layer_grids_are_block_averaged_to_at_most_48_a_side() -> None:
    small = np.arange(48 * 40, dtype=float).reshape(48, 40)
    assert picks.block_mean(small) is small  # 48 × 40 fits: kept as it is
    # 112 × 112 (a ResNet's stem at 224 px): 3 × 3 blocks, the last row and column of blocks one
    # pixel wide (112 = 37 · 3 + 1), so 38 × 38.
    x = np.arange(112 * 112, dtype=float).reshape(112, 112)
    y = picks.block_mean(x)
    assert y.shape == (38, 38)
    assert y[0, 0] == (0 + 1 + 2 + 112 + 113 + 114 + 224 + 225 + 226) / 9
    assert y[37, 37] == 112 * 112 - 1  # the lone corner pixel
    assert y[0, 37] == (111 + 223 + 335) / 3
