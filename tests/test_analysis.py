import numpy as np
import pytest

from edvis.analysis import bilinear_matrix, map_peaks, pointing_game, upsample


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
    # Inside: the four pixels round the cell centre tie; the first in row-major order wins.
    # At the border resizing clamps: pixels x 0..3 (x_src = (i + 0.5)/8 - 0.5 < 0) and
    # y 60..63 (y_src > 7) all take the corner cell's full value, so (0, 60) comes first.
    assert map_peaks(maps, 64).tolist() == [[43, 19], [0, 60]]


def test_pointing_game_counts_hits_and_centre_prior():
    maps = np.zeros((3, 8, 8))
    maps[0, 0, 0] = 1  # peak (3, 3)
    maps[1, 0, 0] = 1
    maps[2, 4, 4] = 1  # peak (35, 35)
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [30, 30, 40, 40]])
    r = pointing_game(maps, boxes, 64)
    assert r["pointing"] == pytest.approx(2 / 3)
    assert r["centre_baseline"] == pytest.approx(2 / 3)  # (32, 32) is inside boxes 2 and 3
