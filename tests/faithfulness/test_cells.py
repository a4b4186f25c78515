"""Cells, orders, steps, blur and masks, checked against values worked by hand and against torch and OpenCV."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edvis.faithfulness import (
    ad_masks,
    blur_ksize,
    blur_sigma,
    blurred,
    centre_map,
    centre_order,
    map_order,
    masked_images,
    order_map,
    random_order,
    ranks_of,
    resize_bilinear,
    step_counts,
)


def test_centre_order_on_4x4_by_hand():
    # Cell centres sit 0.5 or 1.5 cells from the centre: the four inner cells (distance √0.5), then
    # the eight edge cells (√2.5), then the corners (√4.5); ties by cell index.
    assert centre_order(4).tolist() == [5, 6, 9, 10, 1, 2, 4, 7, 8, 11, 13, 14, 0, 3, 12, 15]


def test_centre_map_is_one_minus_the_normalised_distance():
    m = centre_map(4)
    assert m[1, 1] == pytest.approx(1 - math.sqrt(0.5) / math.sqrt(4.5))
    assert m[0, 0] == 0 and m[0, 1] == pytest.approx(1 - math.sqrt(2.5) / math.sqrt(4.5))
    assert map_order(m[None])[0].tolist() == centre_order(4).tolist()


def test_a_maps_order_is_highest_first_and_ties_go_by_cell_index():
    maps = np.array([[[0.0, 1.0], [1.0, 0.5]], [[2.0, 2.0], [2.0, 2.0]]])
    assert map_order(maps).tolist() == [[1, 2, 3, 0], [0, 1, 2, 3]]
    assert ranks_of(map_order(maps)).tolist() == [[3, 0, 1, 2], [0, 1, 2, 3]]


def test_the_random_order_is_a_seeded_permutation_per_image():
    a, b = random_order(8, 0, 3), random_order(8, 0, 4)
    assert sorted(a.tolist()) == list(range(64)) and not np.array_equal(a, b)
    assert np.array_equal(a, random_order(8, 0, 3)) and not np.array_equal(a, random_order(8, 1, 3))
    assert map_order(order_map(a, 8)[None])[0].tolist() == a.tolist()


def test_step_counts_by_hand():
    assert step_counts(64, 16).tolist() == list(range(0, 65, 4))
    assert step_counts(4, 3).tolist() == [0, 1, 3, 4]  # 4/3 → 1, 8/3 → 3
    assert step_counts(9, 2).tolist() == [0, 5, 9]  # 4.5 rounds up


def test_the_blur_rule():
    assert blur_sigma(64) == 5 and blur_ksize(5) == 31
    assert blur_sigma(128) == 10 and blur_ksize(10) == 61
    assert blur_sigma(32) == 2.5 and blur_ksize(2.5) == 17  # 2 · ceil(7.5) + 1


def test_the_blur_is_a_gaussian_of_that_sigma_with_reflect_101_borders():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ours = blurred(images, 5.0)
    theirs = np.stack([cv2.GaussianBlur(im, (31, 31), 5.0, borderType=cv2.BORDER_REFLECT_101) for im in images])
    assert np.abs(ours.astype(int) - theirs).max() <= 2  # OpenCV rounds its weights to 1/256
    # By hand: the normalised 2-D Gaussian, summed directly over a reflect-101 padded image.
    x = np.arange(31) - 15
    k = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / 50.0)
    k /= k.sum()
    pad = np.pad(images[0].astype(np.float64), ((15, 15), (15, 15), (0, 0)), mode="reflect")
    y, xx = 10, 0  # a pixel at the left border
    direct = (pad[y:y + 31, xx:xx + 31] * k[..., None]).sum(axis=(0, 1))
    assert np.abs(ours[0, y, xx] - direct).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("shape,size", [((2, 2), (8, 8)), ((8, 8), (8, 8)), ((3, 5), (8, 8)), ((16, 16), (8, 8)),
                                        ((8, 8), (64, 64))])
def test_resize_is_torchs_bilinear_without_aligned_corners(shape, size):
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(1).normal(size=(3, *shape))
    want = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size, mode="bilinear",
                                           align_corners=False)[:, 0].numpy()
    assert np.abs(resize_bilinear(maps, size) - want).max() < 1e-12


def test_average_drop_masks_by_hand():
    # 2 → 4 columns samples at −0.25 (clamped to 0), 0.25, 0.75 and 1.25 (the last column repeated).
    m = ad_masks(np.array([[[0.0, 1.0], [0.0, 1.0]]]), 4)
    assert m.dtype == np.float32 and np.allclose(m[0], [[0, 0.25, 0.75, 1]] * 4)
    m = ad_masks(np.array([[[2.0, 4.0], [2.0, 4.0]]]), 4)  # scaled by min-max: the same mask
    assert np.allclose(m[0], [[0, 0.25, 0.75, 1]] * 4)
    assert not ad_masks(np.full((1, 2, 2), 3.0), 4).any()  # a constant map: an all-zero mask


def test_average_drop_masks_are_scaled_after_upsampling():
    # A peak in the middle cell of 3 × 3: upsampled to 6 px no pixel samples the cell's centre
    # (x = 2, 3 sample 0.75 and 1.25), so scaling before upsampling would leave the mask's max below 1.
    m = np.zeros((1, 3, 3))
    m[0, 1, 1] = 1.0
    mask = ad_masks(m, 6)[0]
    assert mask.max() == 1.0 and mask.min() == 0.0
    # by hand: pixel (2, 2) weighs the peak 0.75 · 0.75 = 0.5625, pixel (2, 1) 0.75 · 0.25 = 0.1875
    assert mask[2, 2] == mask[3, 3] == 1.0 and mask[2, 1] == pytest.approx(0.1875 / 0.5625, rel=1e-6)


def test_masked_images_round_the_product():
    image = np.full((1, 1, 2, 3), 101, np.uint8)
    out = masked_images(image, np.array([[[0.5, 0.25]]], np.float32))
    assert out.dtype == np.uint8 and out[0, 0, :, 0].tolist() == [50, 25]  # 50.5 → 50 (half to even), 25.25 → 25
