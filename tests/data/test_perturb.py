"""Tests for edvis.data.perturb: expected values are worked out by hand, not read back from the code."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edvis.data import PERTURBATIONS, apply, paper_set, perturb

REPO = Path(__file__).resolve().parents[2]


def flat(value: int, height: int = 20, width: int = 20) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def random_image(seed: int = 0, height: int = 16, width: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------ registry


def test_paper_set_and_registry_names():
    assert paper_set() == ["gray", "blur3", "blur5", "bgr", "brg", "sp0.0005", "sp0.005"]
    expected = {"clean", *paper_set()}
    for kind in ["gaussian_noise", "gaussian_blur", "contrast", "brightness", "jpeg", "occlusion"]:
        expected |= {f"{kind}-{s}" for s in range(1, 6)}
    assert set(PERTURBATIONS) == expected
    for name, p in PERTURBATIONS.items():
        assert p.name == name


def test_paper_parameters():
    assert PERTURBATIONS["blur3"].params == {"ksize": 3}
    assert PERTURBATIONS["blur5"].params == {"ksize": 5}
    assert PERTURBATIONS["bgr"].params == {"order": "BGR"}
    assert PERTURBATIONS["brg"].params == {"order": "BRG"}
    assert PERTURBATIONS["sp0.0005"].params == {"amount": 0.0005}
    assert PERTURBATIONS["sp0.005"].params == {"amount": 0.005}


def test_every_setting_is_documented():
    doc = (REPO / "docs/perturbations.md").read_text(encoding="utf-8")
    for name in paper_set():
        assert f"`{name}`" in doc
    for kind, (param, values) in perturb.SEVERITIES.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{kind}`"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"`{param}`"
        assert [float(c) for c in cells[2:7]] == [float(v) for v in values]


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_every_setting_keeps_dtype_and_shape_and_input(name):
    image = random_image(height=12, width=17)
    before = image.copy()
    out = PERTURBATIONS[name](image, 7)
    assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
    assert np.array_equal(image, before)


def test_clean_is_identity():
    image = random_image()
    assert np.array_equal(PERTURBATIONS["clean"](image, 0), image)


# ------------------------------------------------------------------ gray


def test_gray_luma_by_hand():
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]], dtype=np.uint8)
    out = PERTURBATIONS["gray"](image, 0)
    # 0.299*255 = 76.245; 0.587*255 = 149.685; 0.114*255 = 29.07;
    # 0.299*100 + 0.587*150 + 0.114*200 = 29.9 + 88.05 + 22.8 = 140.75
    assert out[0, :, 0].tolist() == [76, 150, 29, 141]
    assert np.array_equal(out[..., 0], out[..., 1])
    assert np.array_equal(out[..., 0], out[..., 2])


# ------------------------------------------------------------------ blur


def test_opencv_sigma_rule():
    assert perturb.opencv_sigma(3) == pytest.approx(0.8)
    assert perturb.opencv_sigma(5) == pytest.approx(1.1)
    assert perturb.opencv_sigma(7) == pytest.approx(1.4)


def test_blur_kernels_are_opencvs_fixed_tables():
    # [1, 2, 1] / 4 and [1, 4, 6, 4, 1] / 16, not sampled Gaussians of sigma 0.8 and 1.1
    assert perturb.blur_kernel(3).tolist() == [0.25, 0.5, 0.25]
    assert perturb.blur_kernel(5).tolist() == [0.0625, 0.25, 0.375, 0.25, 0.0625]
    assert perturb.blur_kernel(7).tolist() == [x / 64 for x in (2, 7, 14, 18, 14, 7, 2)]
    for ksize, taps in perturb.OPENCV_FIXED_KERNELS.items():
        assert sum(taps) == 256 and len(taps) == ksize and taps == taps[::-1]


def test_blurred_impulse_rounds_half_up():
    # value 200 at the centre: output = 200 * (a * b) / 256 for tap weights a, b (in sixteenths for
    # k = 5, quarters for k = 3), rounded half up as OpenCV's fixed-point path does.
    image = np.zeros((9, 9, 3), dtype=np.uint8)
    image[4, 4] = 200
    out3 = PERTURBATIONS["blur3"](image, 0)[..., 0]
    # 200*4/16 = 50, 200*2/16 = 25, 200*1/16 = 12.5 -> 13 (half to even would give 12)
    assert out3[3:6, 3:6].tolist() == [[13, 25, 13], [25, 50, 25], [13, 25, 13]]
    assert out3.sum() == 13 * 4 + 25 * 4 + 50
    out5 = PERTURBATIONS["blur5"](image, 0)[..., 0]
    # 200 * w / 256 for w = 1, 4, 6, 16, 24, 36: 0.78 -> 1, 3.125 -> 3, 4.69 -> 5, 12.5 -> 13,
    # 18.75 -> 19, 28.125 -> 28
    assert out5[2, 2:7].tolist() == [1, 3, 5, 3, 1]
    assert out5[3, 2:7].tolist() == [3, 13, 19, 13, 3]
    assert out5[4, 2:7].tolist() == [5, 19, 28, 19, 5]
    assert np.array_equal(out5, out5.T) and np.array_equal(out5, out5[::-1, ::-1])
    assert all(np.array_equal(PERTURBATIONS["blur5"](image, 0)[..., c], out5) for c in (1, 2))


def test_blur_reflect101_border_keeps_flat_image():
    image = flat(77, 5, 6)
    assert np.array_equal(PERTURBATIONS["blur5"](image, 0), image)
    assert np.array_equal(PERTURBATIONS["gaussian_blur-5"](image, 0), image)
    assert np.array_equal(perturb.blur(flat(255, 1, 1), 9), flat(255, 1, 1))


def test_blur_reflect101_at_corner():
    # impulse 200 at the corner (0, 0) of a 5x5 image; reflect-101 mirrors about the edge pixel, so
    # the edge pixel itself is not repeated: the corner gets 200 * 4/16 = 50, as in the middle
    # (reflect without 101 would give 200 * (3/4)^2 = 112.5). (0, 1) and (1, 0): 200 * 2/16 = 25;
    # (1, 1): 200 * 1/16 = 12.5 -> 13.
    image = np.zeros((5, 5, 3), dtype=np.uint8)
    image[0, 0] = 200
    out = PERTURBATIONS["blur3"](image, 0)[..., 0]
    assert out[:2, :2].tolist() == [[50, 25], [25, 13]]
    assert out[2:].sum() == 0 and out[:, 2:].sum() == 0


def test_blur_of_a_tiny_image_repeats_the_border():
    # 1x2 image [a, b], k = 5. Reflect-101 maps column -2 -> 0, -1 -> 1, 2 -> 0, 3 -> 1, so
    # column 0 sees (a, b, a, b, a) and column 1 sees (b, a, b, a, b) under taps (1, 4, 6, 4, 1):
    # 8 sixteenths on a and 8 on b, i.e. (a + b) / 2 in both. The one row reflects onto itself.
    image = np.zeros((1, 2, 3), dtype=np.uint8)
    image[0, 0] = 100
    image[0, 1] = 51
    out = perturb.blur(image, 5)
    assert out[..., 0].tolist() == [[76, 76]]  # 75.5 rounded half up


# ------------------------------------------------------------------ blur against OpenCV

try:
    import cv2
except ImportError:  # the dev extra (pip install -e .[dev]) brings opencv-python-headless
    cv2 = None

needs_cv2 = pytest.mark.skipif(
    cv2 is None, reason="cv2 is not importable: install the dev extra (opencv-python-headless)")


def _real_images() -> list[np.ndarray]:
    """A photograph (matplotlib's grace_hopper.jpg) and a screenshot of the site, cropped to
    several sizes, some smaller than a kernel."""
    import matplotlib.cbook
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        photo = np.asarray(im.convert("RGB"), dtype=np.uint8)
    with Image.open(REPO / "docs/img/site-home.png") as im:
        screen = np.asarray(im.convert("RGB"), dtype=np.uint8)
    crops = [photo, photo[100:164, 200:264], photo[300:303, 10:12], photo[50:51, :40],
             screen[:224, :224], screen[300:337, 500:553], screen[:5, :4]]
    return [np.ascontiguousarray(c) for c in crops]


def _random_images() -> list[np.ndarray]:
    sizes = [(1, 1), (1, 7), (2, 3), (5, 4), (8, 9), (16, 16), (37, 53), (64, 64), (224, 224)]
    images = [random_image(seed, h, w) for seed, (h, w) in enumerate(sizes)]
    checker = np.indices((32, 32)).sum(axis=0) % 2 * 255  # extremes: 0/255 checkerboard
    images.append(np.repeat(checker[:, :, None], 3, axis=2).astype(np.uint8))
    images.append(flat(255, 7, 7))
    return images


BLUR_SETTINGS = sorted(name for name, p in PERTURBATIONS.items() if p.kind == "blur")
SIGMA_SETTINGS = sorted(name for name, p in PERTURBATIONS.items() if p.kind == "gaussian_blur")


def test_the_blur_settings_are_the_papers():
    assert BLUR_SETTINGS == ["blur3", "blur5"]
    assert SIGMA_SETTINGS == [f"gaussian_blur-{s}" for s in range(1, 6)]


@needs_cv2
@pytest.mark.parametrize("ksize", sorted(perturb.OPENCV_FIXED_KERNELS))
def test_blur_kernel_equals_opencv_get_gaussian_kernel(ksize):
    assert perturb.blur_kernel(ksize).tolist() == cv2.getGaussianKernel(ksize, 0).ravel().tolist()


@needs_cv2
@pytest.mark.parametrize("name", SIGMA_SETTINGS)
def test_gaussian_kernel_matches_opencv_get_gaussian_kernel(name):
    sigma = PERTURBATIONS[name].params["sigma"]
    ksize = round(6 * sigma + 1) | 1
    expected = cv2.getGaussianKernel(ksize, sigma).ravel()
    # OpenCV sums and normalises in another order and with its own exp: a few ulps apart
    assert np.abs(perturb.gaussian_kernel_1d(ksize, sigma) - expected).max() < 1e-15


@needs_cv2
@pytest.mark.parametrize("ksize", sorted(perturb.OPENCV_FIXED_KERNELS))
@pytest.mark.parametrize("source", ["random", "real"])
def test_blur_equals_opencv_exactly(ksize, source):
    images = _random_images() if source == "random" else _real_images()
    for image in images:
        expected = cv2.GaussianBlur(image, (ksize, ksize), 0)
        assert np.array_equal(perturb.blur(image, ksize), expected), image.shape


@needs_cv2
@pytest.mark.parametrize("name", BLUR_SETTINGS)
def test_blur_settings_equal_opencv_exactly(name):
    ksize = PERTURBATIONS[name].params["ksize"]
    images = _random_images() + _real_images()
    batch = np.stack([random_image(seed, 20, 24) for seed in range(4)])
    assert np.array_equal(apply(name, batch, np.arange(4)),
                          np.stack([cv2.GaussianBlur(i, (ksize, ksize), 0) for i in batch]))
    for image in images:
        assert np.array_equal(PERTURBATIONS[name](image, 0), cv2.GaussianBlur(image, (ksize, ksize), 0))


def _opencv_fixed_point_taps(ksize: int, sigma: float) -> np.ndarray:
    """OpenCV's 8-bit kernel for an explicit sigma, in 1/256 units, read back from OpenCV itself.

    A 1-row impulse of 255 blurred with a (ksize, 1) kernel gives round(255 * q / 256) at tap q,
    which is q itself for q <= 128 (every tap but the centre); the taps sum to 256.
    """
    row = np.zeros((1, 2 * ksize + 1, 3), dtype=np.uint8)
    row[0, ksize] = 255
    out = cv2.GaussianBlur(row, (ksize, 1), sigma)[0, ksize - ksize // 2:ksize + ksize // 2 + 1, 0]
    taps = out.astype(np.int64)
    taps[ksize // 2] = 256 - (taps.sum() - taps[ksize // 2])
    return taps


@needs_cv2
@pytest.mark.parametrize("name", SIGMA_SETTINGS)
def test_gaussian_blur_settings_near_opencv(name):
    """gaussian_blur keeps its float64 kernel; OpenCV rounds every weight to 1/256 first.

    Per pixel, |float sum - OpenCV's sum| <= bound = 255 * sum |w_i w_j - q_i q_j / 65536| over the
    2-D taps, so the rounded outputs differ by at most floor(bound) + 1. On these images the
    difference measured is at most 2 (what docs/perturbations.md states).
    """
    sigma = PERTURBATIONS[name].params["sigma"]
    ksize = round(6 * sigma + 1) | 1
    w = perturb.gaussian_kernel_1d(ksize, sigma)
    q = _opencv_fixed_point_taps(ksize, sigma) / 256
    bound = 255 * np.abs(np.outer(w, w) - np.outer(q, q)).sum()
    measured = 0
    for image in _random_images() + _real_images():
        diff = np.abs(PERTURBATIONS[name](image, 0).astype(int)
                      - cv2.GaussianBlur(image, (ksize, ksize), sigma).astype(int)).max()
        assert diff <= math.floor(bound) + 1, image.shape
        measured = max(measured, int(diff))
    assert measured <= 2


# ------------------------------------------------------------------ channels


def test_channel_orders():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[1, 2] = (10, 20, 30)
    assert PERTURBATIONS["bgr"](image, 0)[1, 2].tolist() == [30, 20, 10]
    assert PERTURBATIONS["brg"](image, 0)[1, 2].tolist() == [30, 10, 20]
    assert perturb.channels(image, "GBR")[1, 2].tolist() == [20, 30, 10]
    assert perturb.channels(image, "RGB")[1, 2].tolist() == [10, 20, 30]


@pytest.mark.parametrize("order", ["RGGB", "RRB", "XYZ", "", 3])
def test_channel_order_validated(order):
    with pytest.raises(ValueError, match="order"):
        perturb.channels(flat(1), order)


# ------------------------------------------------------------------ salt and pepper


@pytest.mark.parametrize(
    "name, size, count",
    [
        ("sp0.005", 20, 6),  # 0.005 * 20*20*3 = 6.0
        ("sp0.0005", 20, 1),  # 0.0005 * 1200 = 0.6 -> 1
        ("sp0.005", 64, 61),  # 0.005 * 12288 = 61.44 -> 61
        ("sp0.0005", 64, 6),  # 0.0005 * 12288 = 6.144 -> 6
    ],
)
def test_salt_pepper_exact_count(name, size, count):
    image = flat(128, size, size)
    out = PERTURBATIONS[name](image, 3)
    changed = out != 128
    assert changed.sum() == count
    assert (out == 0).sum() == count // 2
    assert (out == 255).sum() == count - count // 2
    assert set(np.unique(out).tolist()) <= {0, 128, 255}


def test_salt_pepper_positions_distinct_and_per_channel():
    # amount 0.5 on 10x10x3: M = 150 distinct (y, x, c) positions; with 300 values, every drawn
    # position is distinct iff exactly 150 values changed. 75 become 0, 75 become 255.
    out = perturb.salt_pepper(flat(128, 10, 10), 0.5, np.random.default_rng(0))
    assert (out == 0).sum() == 75 and (out == 255).sum() == 75
    # channels are drawn independently: some pixel has a mix of changed and unchanged channels
    changed = (out != 128).sum(axis=2)
    assert ((changed > 0) & (changed < 3)).any()


def test_salt_pepper_full_amount_hits_every_value():
    out = perturb.salt_pepper(flat(128, 2, 2), 1.0, np.random.default_rng(0))
    assert (out == 0).sum() == 6 and (out == 255).sum() == 6


# ------------------------------------------------------------------ determinism


RANDOM = ["sp0.005", "gaussian_noise-3", "occlusion-2"]


@pytest.mark.parametrize("name", RANDOM)
def test_same_key_same_output_different_key_different(name):
    image = random_image(1, 32, 32)  # not flat grey, or an occlusion patch would be invisible
    p = PERTURBATIONS[name]
    assert np.array_equal(p(image, 5), p(image, 5))
    assert not np.array_equal(p(image, 5), p(image, 6))


def test_seed_depends_on_setting_name_not_only_key():
    image = flat(128, 32, 32)
    a = PERTURBATIONS["gaussian_noise-1"](image, 5).astype(int) - 128
    b = PERTURBATIONS["gaussian_noise-2"](image, 5).astype(int) - 128
    # σ 16 vs σ 8: if the streams were shared, b would be ~2a everywhere
    assert not np.array_equal(np.sign(a), np.sign(b))


def test_stable_hash_is_crc32():
    assert perturb.stable_hash("") == 0
    assert perturb.stable_hash("123456789") == 0xCBF43926  # the CRC-32 check value


def test_seed_is_stable_across_processes():
    code = (
        "import numpy as np, edvis.data.perturb as p;"
        "img = np.full((8, 8, 3), 128, np.uint8);"
        "print(p.PERTURBATIONS['gaussian_noise-2'](img, 11).tobytes().hex())"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONHASHSEED": seed}, check=True).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    image = np.full((8, 8, 3), 128, np.uint8)
    assert runs[0].strip() == PERTURBATIONS["gaussian_noise-2"](image, 11).tobytes().hex()


@pytest.mark.parametrize("name", ["sp0.005", "gaussian_noise-4", "occlusion-3", "jpeg-2", "gray"])
def test_batch_equals_single_calls_in_any_order(name):
    images = np.stack([random_image(seed, 12, 12) for seed in range(6)])
    keys = np.array([100, 7, 3, 42, 0, 9])
    single = np.stack([PERTURBATIONS[name](img, int(k)) for img, k in zip(images, keys)])
    assert np.array_equal(apply(name, images, keys), single)
    order = np.array([4, 2, 5, 0, 3, 1])
    assert np.array_equal(apply(name, images[order], keys[order]), single[order])
    parts = [apply(name, images[i:i + 2], keys[i:i + 2]) for i in range(0, 6, 2)]
    assert np.array_equal(np.concatenate(parts), single)


# ------------------------------------------------------------------ sweeps


def test_brightness_clips():
    image = np.array([[[0, 100, 250], [200, 239, 240]]], dtype=np.uint8)
    assert perturb.brightness(image, 16).tolist() == [[[16, 116, 255], [216, 255, 255]]]
    assert perturb.brightness(image, -101).tolist() == [[[0, 0, 149], [99, 138, 139]]]
    assert PERTURBATIONS["brightness-5"](image, 0).tolist() == [[[96, 196, 255], [255, 255, 255]]]


def test_contrast_blends_toward_mean_and_clips():
    # values 0, 100, 200, 0, 100, 200 -> mean 100
    image = np.array([[[0, 100, 200], [0, 100, 200]]], dtype=np.uint8)
    assert perturb.contrast(image, 0.5).tolist() == [[[50, 100, 150]] * 2]
    assert PERTURBATIONS["contrast-4"](image, 0).tolist() == [[[80, 100, 120]] * 2]  # factor 0.2
    assert perturb.contrast(image, 0.0).tolist() == [[[100, 100, 100]] * 2]
    # factor 2: 100 + 2*(-100) = -100 -> 0, 100 + 2*100 = 300 -> 255
    assert perturb.contrast(image, 2.0).tolist() == [[[0, 100, 255]] * 2]


def test_gaussian_noise_statistics_and_clipping():
    out = PERTURBATIONS["gaussian_noise-5"](flat(128, 64, 64), 1).astype(float)  # sigma 48
    assert abs(out.mean() - 128) < 2.5
    assert 44 < out.std() < 52
    dark = PERTURBATIONS["gaussian_noise-5"](flat(0, 16, 16), 1)
    assert dark.min() == 0 and (dark == 0).sum() > 200  # about half of 768 clip at 0


def test_jpeg_changes_image_but_keeps_type():
    image = random_image(3, 16, 16)
    for name in ["jpeg-1", "jpeg-5"]:
        out = PERTURBATIONS[name](image, 0)
        assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
        assert not np.array_equal(out, image)


@pytest.mark.parametrize("severity, side", [(1, 2), (3, 6), (5, 10)])
def test_occlusion_square(severity, side):
    # 20x24 image: side = round(fraction * 20): 0.1 -> 2, 0.3 -> 6, 0.5 -> 10
    out = PERTURBATIONS[f"occlusion-{severity}"](flat(0, 20, 24), 13)
    grey = out == perturb.GREY
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    ys, xs = np.nonzero(grey[..., 0])
    assert grey[..., 0].sum() == side * side
    assert ys.max() - ys.min() + 1 == side and xs.max() - xs.min() + 1 == side
    assert ((out == 0) | grey).all()


def test_occlusion_position_varies_with_key():
    corners = set()
    for key in range(20):
        ys, xs = np.nonzero(PERTURBATIONS["occlusion-1"](flat(0, 20, 20), key)[..., 0])
        corners.add((ys.min(), xs.min()))
    assert len(corners) > 5


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), dtype=np.float32),
        np.zeros((4, 4, 3), dtype=np.int64),
        np.zeros((4, 4), dtype=np.uint8),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((1, 4, 4, 3), dtype=np.uint8),
        np.zeros((0, 4, 3), dtype=np.uint8),
        [[[0, 0, 0]]],
    ],
)
@pytest.mark.parametrize("name", ["clean", "gray", "blur3", "sp0.005", "jpeg-1", "occlusion-1"])
def test_bad_image_raises_naming_image(name, bad):
    with pytest.raises(ValueError, match="image"):
        PERTURBATIONS[name](bad, 0)


@pytest.mark.parametrize("key", [-1, 1.5, "3", None, True])
def test_bad_key_raises_naming_key(key):
    with pytest.raises(ValueError, match="key"):
        PERTURBATIONS["sp0.005"](flat(128, 4, 4), key)


def test_bad_parameters_raise_naming_argument():
    image = flat(128, 4, 4)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="amount"):
        perturb.salt_pepper(image, 1.5, rng)
    with pytest.raises(ValueError, match="rng"):
        perturb.salt_pepper(image, 0.1, 3)
    with pytest.raises(ValueError, match="sigma"):
        perturb.gaussian_noise(image, -1, rng)
    with pytest.raises(ValueError, match="sigma"):
        perturb.gaussian_blur(image, 0)
    with pytest.raises(ValueError, match="ksize"):
        perturb.blur(image, 4)
    with pytest.raises(ValueError, match="ksize must be one of"):
        perturb.blur(image, 11)  # OpenCV samples a Gaussian there: not a fixed kernel
    with pytest.raises(ValueError, match="factor"):
        perturb.contrast(image, -0.5)
    with pytest.raises(ValueError, match="offset"):
        perturb.brightness(image, float("nan"))
    with pytest.raises(ValueError, match="quality"):
        perturb.jpeg(image, 0)
    with pytest.raises(ValueError, match="fraction"):
        perturb.occlusion(image, 0.0, rng)
    with pytest.raises(ValueError, match="kind"):
        perturb.Perturbation("x", "nope", {})


def test_apply_validates_arguments():
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="name"):
        apply("nope", images, np.array([0, 1]))
    with pytest.raises(ValueError, match="images"):
        apply("gray", images.astype(np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="images"):
        apply("gray", images[0], np.array([0, 1]))
    with pytest.raises(ValueError, match="keys"):
        apply("gray", images, np.array([0]))
    with pytest.raises(ValueError, match="keys"):
        apply("gray", images, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="keys"):
        apply("gray", images, np.array([0, -1]))


# ------------------------------------------------------------------ no torch


def test_import_does_not_import_torch_or_opencv():
    code = "import sys, edvis.data.perturb; sys.exit('torch' in sys.modules or 'cv2' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0
