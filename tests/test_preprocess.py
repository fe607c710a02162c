"""ensemble_cnn.inference.preprocess: arbitrary digit images -> MNIST-style 28x28 digits (exact answers where possible)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ensemble_cnn.errors import NoInkError
from ensemble_cnn.inference.preprocess import (
    INK_THRESHOLD,
    MNIST_BOX,
    MNIST_SIZE,
    NO_INK_LEVEL,
    border_pixels,
    has_ink,
    mnist_style,
    preprocess_digits,
    thumbnail,
    to_grayscale,
)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, col) centre of mass in pixel-index coordinates."""
    image = image.astype(np.float64)
    total = image.sum()
    rows = (image.sum(axis=1) * np.arange(image.shape[0])).sum() / total
    cols = (image.sum(axis=0) * np.arange(image.shape[1])).sum() / total
    return rows, cols


def ink_extent(image: np.ndarray) -> tuple[int, int]:
    """(number of rows, number of columns) holding any ink."""
    return int(image.any(axis=1).sum()), int(image.any(axis=0).sum())


def canvas(height: int, width: int, *, value: int = 0) -> np.ndarray:
    return np.full((height, width), value, dtype=np.uint8)


def blob(seed: int = 0) -> np.ndarray:
    """A deterministic grey, digit-like shape (uint8, 23x17): a ring with graded ink and a tail."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:23, :17]
    radius = np.hypot((yy - 8) / 7.0, (xx - 8) / 6.0)
    shape = np.clip(1.2 - 3 * np.abs(radius - 0.8), 0, 1)
    shape[12:, 13:16] = np.linspace(0.3, 1.0, 11)[:, None]
    shape *= rng.uniform(0.7, 1.0, shape.shape)
    return np.rint(shape * 255).astype(np.uint8)


def paste(patch: np.ndarray, *, height: int, width: int, top: int, left: int, background: int = 0) -> np.ndarray:
    out = canvas(height, width, value=background)
    out[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return out


def style(image: np.ndarray, **kwargs) -> np.ndarray:
    return mnist_style(to_grayscale(image), **kwargs)


def solid_square_expected() -> np.ndarray:
    """A solid 20x20 square has its centre of mass at 9.5; rounded half up it lands at rows/cols 5..24."""
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[5:25, 5:25] = 255
    return expected


# ----------------------------------------------------------------------------- to_grayscale


def test_constants_are_mnist_sizes():
    assert (MNIST_BOX, MNIST_SIZE) == (20, 28)
    assert 0 < INK_THRESHOLD < 0.5 and 2 / 255 < NO_INK_LEVEL < 0.1


def test_grayscale_of_uint8_uint16_bool_and_float():
    levels = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(to_grayscale(levels), [[0.0, 0.2, 1.0]])
    np.testing.assert_array_equal(to_grayscale(levels.astype(np.uint16) * 257), to_grayscale(levels))
    np.testing.assert_array_equal(to_grayscale(np.array([[True, False]])), [[1.0, 0.0]])
    np.testing.assert_array_equal(to_grayscale(np.array([[0.25, 1.0]], dtype=np.float32)), [[0.25, 1.0]])
    assert to_grayscale(levels).dtype == np.float64


def test_grayscale_uses_itu_601_luma():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(to_grayscale(rgb), [[0.299, 0.587, 0.114, 1.0]], atol=1e-12)


def test_alpha_is_composited_on_white():
    rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 51], [255, 0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(to_grayscale(rgba), [[1.0, 0.0, 0.8, 0.299]], atol=1e-12)
    grey_alpha = np.array([[[0, 0], [0, 255], [255, 0], [102, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(to_grayscale(grey_alpha), [[1.0, 0.0, 1.0, 0.4]], atol=1e-12)


def test_single_channel_equals_2d():
    image = blob()
    np.testing.assert_array_equal(to_grayscale(image[..., None]), to_grayscale(image))


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.zeros((2, 3, 4, 1), np.uint8), "expected (H, W) or (H, W, C)"),
        (np.zeros((4, 4, 5), np.uint8), "5 channels"),
        (np.zeros((0, 4), np.uint8), "at least 1x1"),
        (np.array([[0.0, 1.5]]), "[0, 1.5]"),
        (np.array([[np.nan, 0.5]]), "NaN"),
        (np.zeros((3, 3), np.int32), "dtype int32"),
    ],
)
def test_grayscale_refuses_bad_images_in_one_line(image, words):
    with pytest.raises(ValueError) as info:
        to_grayscale(image)
    message = str(info.value)
    assert message.startswith("image: ") and words in message and "\n" not in message


# ----------------------------------------------------------------------------- size and centre


@pytest.mark.parametrize(
    ("side", "size", "top", "left"),
    [(10, 100, 0 + 3, 80), (10, 100, 60, 7), (30, 100, 41, 12), (37, 100, 50, 50), (50, 200, 20, 140), (3, 5, 1, 1)],
)
def test_solid_square_becomes_exactly_20px_and_centred(side, size, top, left):
    image = paste(np.full((side, side), 255, np.uint8), height=size, width=size, top=top, left=left)
    out = style(image)
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    assert ink_extent(out) == (20, 20)
    np.testing.assert_array_equal(out, solid_square_expected())
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_wide_stroke_keeps_its_aspect_ratio():
    image = paste(np.full((20, 80), 255, np.uint8), height=120, width=150, top=30, left=40)
    out = style(image)
    expected = np.zeros((28, 28), np.uint8)
    expected[12:17, 5:25] = 255  # 20x5; centre of mass (2, 9.5) -> shifted by (12, 5)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(style(image.T), expected.T)


def test_centre_of_mass_is_centred_for_an_irregular_digit():
    out = style(paste(blob(3), height=90, width=70, top=11, left=29))
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    assert max(ink_extent(out)) == 20 and out.max() == 255


def test_shift_is_clamped_so_no_ink_leaves_the_frame():
    # A thin stem with a heavy foot: the centre of mass sits low, so centring it would cut the stem off.
    image = canvas(100, 100)
    image[10:90, 48:50] = 255
    image[78:90, 10:90] = 255
    out = style(image)
    assert ink_extent(out) == (20, 20)
    assert out[0].any() and not out[21:].any()  # pushed to the top edge, not beyond
    row, _ = centre_of_mass(out)
    assert row > 14.5
    flipped = style(image[::-1])  # heavy head: pushed to the bottom edge instead
    np.testing.assert_array_equal(flipped, out[::-1])
    assert flipped[27].any()


def test_box_and_size_options():
    image = paste(np.full((30, 15), 255, np.uint8), height=60, width=60, top=5, left=5)
    out = style(image, box=10, size=16)
    assert out.shape == (16, 16) and ink_extent(out) == (10, 5)


@pytest.mark.parametrize(("box", "size"), [(29, 28), (0, 28)])
def test_box_must_fit_the_frame(box, size):
    with pytest.raises(ValueError, match=r"^box=.*expected 1 <= box <= size$"):
        mnist_style(np.zeros((5, 5)), box=box, size=size)


def test_mnist_style_refuses_non_2d_gray():
    with pytest.raises(ValueError, match=r"^gray: has shape \(5, 5, 3\)"):
        mnist_style(np.zeros((5, 5, 3)))


# ----------------------------------------------------------------------------- invariances


def test_position_in_a_larger_canvas_gives_an_identical_digit():
    digit = blob(1)
    small = style(paste(digit, height=40, width=30, top=5, left=7))
    large = style(paste(digit, height=300, width=200, top=150, left=91))
    np.testing.assert_array_equal(small, large)


def test_black_on_white_equals_white_on_black_for_a_binary_shape():
    shape = paste((blob(2) > 100).astype(np.uint8) * 255, height=64, width=48, top=20, left=15)
    np.testing.assert_array_equal(style(255 - shape), style(shape))


def test_black_on_white_equals_white_on_black_within_one_level_for_grey_ink():
    shape = paste(blob(2), height=64, width=48, top=20, left=15)
    difference = style(255 - shape).astype(int) - style(shape).astype(int)
    assert np.abs(difference).max() <= 1


def test_polarity_is_decided_by_the_border_not_the_whole_image():
    # A huge light blob filling most of the image on a black border: still light ink on dark.
    image = canvas(50, 50)
    image[2:48, 2:48] = 255
    out = style(image)
    assert ink_extent(out) == (20, 20) and out[14, 14] == 255
    assert np.median(border_pixels(to_grayscale(image))) == 0.0


def test_border_pixels_is_the_outer_frame():
    image = np.arange(20).reshape(4, 5)
    assert sorted(border_pixels(image)) == [0, 1, 2, 3, 4, 5, 9, 10, 14, 15, 16, 17, 18, 19]
    np.testing.assert_array_equal(border_pixels(np.arange(3).reshape(1, 3)), [0, 1, 2])


@pytest.mark.parametrize(("background", "ink"), [(100, 255), (180, 30), (140, 0)])
def test_grey_background_becomes_black(background, ink):
    shape = (blob(4) > 60)
    reference = style(paste(shape.astype(np.uint8) * 255, height=60, width=60, top=10, left=20))
    image = paste(np.where(shape, ink, background).astype(np.uint8), height=60, width=60, top=10, left=20,
                  background=background)
    out = style(image)
    assert out[0].max() == 0 and out[:, 0].max() == 0
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1


def test_faint_noise_below_the_threshold_is_ignored():
    clean = paste(blob(5), height=80, width=80, top=30, left=30)
    noisy = clean.copy()
    noisy[3, 5] = noisy[70, 8] = noisy[12, 75] = 7  # under 5 % of the brightest ink (255)
    np.testing.assert_array_equal(style(noisy), style(clean))


def test_rgb_digit_equals_the_grey_one():
    grey = paste(blob(6), height=50, width=40, top=12, left=9)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(style(rgb), style(grey))


def test_rgba_with_transparent_black_background_counts_as_white():
    shape = paste((blob(7) > 90).astype(np.uint8) * 255, height=50, width=40, top=12, left=9)
    rgba = np.zeros((*shape.shape, 4), dtype=np.uint8)  # black everywhere ...
    rgba[..., 3] = shape  # ... but only the digit is opaque: black ink on a transparent (white) page
    np.testing.assert_array_equal(style(rgba), style(shape))


def test_16_bit_image_equals_the_8_bit_one():
    image = paste(blob(8), height=45, width=45, top=10, left=12)
    np.testing.assert_array_equal(style(image.astype(np.uint16) * 257), style(image))


def test_bool_and_float_images():
    shape = paste((blob(9) > 90).astype(np.uint8) * 255, height=45, width=45, top=10, left=12)
    np.testing.assert_array_equal(style(shape > 0), style(shape))
    np.testing.assert_array_equal(style(shape / 255.0), style(shape))


# ----------------------------------------------------------------------------- sizes and blanks


def test_tiny_5x5_plus_sign():
    image = canvas(5, 5)
    image[2, :] = 255
    image[:, 2] = 255
    out = style(image)
    assert ink_extent(out) == (20, 20) and out.max() == 255
    np.testing.assert_array_equal(out, out.T)  # the plus is symmetric, and so is the result
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_large_2000x2000_ring():
    yy, xx = np.mgrid[:2000, :2000]
    radius = np.hypot(yy - 1100, xx - 900)
    image = np.where((radius > 300) & (radius < 420), 0, 255).astype(np.uint8)  # black ring on white
    out = style(image)
    assert ink_extent(out) == (20, 20)
    assert out[14, 14] == 0 and out.max() == 255  # the hole stays empty
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


@pytest.mark.parametrize(
    "image",
    [canvas(50, 50), canvas(50, 50, value=255), canvas(30, 20, value=128), canvas(1, 1, value=200),
     canvas(1, 10000, value=255), canvas(10000, 1), np.zeros((10, 10, 4), np.uint8),
     np.dstack([np.full((20, 20, 3), 30, np.uint8), np.zeros((20, 20), np.uint8)])],
    ids=["black", "white", "grey", "1x1", "10000x1 white", "1x10000 black", "transparent", "transparent dark"],
)
def test_blank_image_has_no_ink(image):
    with pytest.raises(NoInkError, match="^no ink found"):
        style(image)
    with pytest.raises(NoInkError, match=r"^images\[1\]: no ink found") as caught:
        preprocess_digits([blob(1), image])
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


def test_thin_stroke_on_a_noisy_photo_is_ink():
    rng = np.random.default_rng(7)
    photo = np.clip(rng.normal(200, 3, (1500, 2000)), 0, 255)  # grey paper, sensor noise of 3 levels
    photo[400:1100, 990:992] -= 40  # a faint 2-pixel pencil stroke, 700 px long
    photo = np.clip(np.rint(photo), 0, 255).astype(np.uint8)
    out = style(photo)  # no NoInkError
    assert out.max() == 255
    assert has_ink(out[None]).all()


def test_has_ink_of_28x28_digits():
    digits = np.zeros((4, 28, 28), np.uint8)
    digits[1] = 255  # all white: no ink either
    digits[2, 10:20, 14] = 255
    digits[3] = 100
    digits[3, 5, 5] = 100 + 12  # under 5 % of the range
    assert has_ink(digits).tolist() == [False, False, True, False]


def test_thumbnail_is_small_and_grey():
    gray = np.linspace(0, 1, 3000 * 2000).reshape(3000, 2000)
    small = thumbnail(gray)
    assert small.dtype == np.uint8 and small.shape == (96, 64)
    assert small[0, 0] < 5 and small[-1, -1] > 250
    assert thumbnail(np.ones((10, 5))).tolist() == np.full((10, 5), 255).tolist()


# ----------------------------------------------------------------------------- preprocess_digits


def test_preprocess_digits_list_of_different_sizes():
    images = [paste(blob(1), height=40, width=40, top=5, left=5), np.repeat(blob(2)[..., None], 3, axis=2),
              blob(3)[::3, ::2]]  # a small 8x9 one
    out = preprocess_digits(images)
    assert out.shape == (3, 28, 28) and out.dtype == np.uint8
    for got, image in zip(out, images):
        np.testing.assert_array_equal(got, style(image))


def test_preprocess_digits_stacked_arrays():
    stack = np.stack([paste(blob(i), height=40, width=30, top=8, left=6) for i in range(3)])
    expected = np.stack([style(image) for image in stack])
    np.testing.assert_array_equal(preprocess_digits(stack), expected)
    np.testing.assert_array_equal(preprocess_digits(np.repeat(stack[..., None], 3, axis=3)), expected)


def test_preprocess_digits_empty_inputs():
    for empty in ([], np.zeros((0, 10, 10), np.uint8), np.zeros((0, 10, 10, 3), np.uint8)):
        out = preprocess_digits(empty)
        assert out.shape == (0, 28, 28) and out.dtype == np.uint8
    assert preprocess_digits([], size=16, box=10).shape == (0, 16, 16)


def test_preprocess_digits_refuses_a_single_2d_array():
    with pytest.raises(ValueError, match=r"^images: array of shape \(28, 28\).*wrap a single image in a list\)$"):
        preprocess_digits(np.zeros((28, 28), np.uint8))


def test_preprocess_digits_names_the_bad_image():
    with pytest.raises(ValueError) as info:
        preprocess_digits([blob(0), np.zeros((5, 5), np.int64)])
    assert str(info.value) == "images[1]: has dtype int64, expected uint8, uint16, bool or float in [0, 1]"


# ----------------------------------------------------------------------------- real MNIST digits


def _digits_with_20px_box(x: np.ndarray, count: int) -> np.ndarray:
    keep = [digit for digit in x if max(ink_extent(digit > 0)) == 20]
    return np.stack(keep[:count])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_mnist_digit_blown_up_7x_and_inverted_comes_back_within_one_level(mnist):
    for digit in _digits_with_20px_box(mnist["x_test"], 20):
        big = np.kron(digit, np.ones((7, 7), np.uint8))  # 196x196, each pixel a 7x7 block
        difference = style(255 - big).astype(int) - style(digit).astype(int)
        assert np.abs(difference).max() <= 1


def test_mnist_digit_upsampled_smoothly_to_200px_correlates_with_the_original(mnist):
    correlations = []
    for digit in mnist["x_test"][:20]:
        big = np.asarray(Image.fromarray(digit).resize((200, 200), Image.Resampling.BILINEAR))
        out = style(255 - big)  # black on white, 200x200
        correlations.append(_pearson(out, digit))
    # Thin strokes ("1") may land one pixel away or one pixel thicker; the average is far above 0.9.
    assert min(correlations) > 0.8
    assert np.mean(correlations) > 0.93


def test_mnist_digits_are_nearly_unchanged(mnist):
    digits = _digits_with_20px_box(mnist["x_test"], 50)
    out = preprocess_digits(digits)
    correlations = [_pearson(a, b) for a, b in zip(out, digits)]
    assert np.median(correlations) > 0.99
    centres = np.array([centre_of_mass(image) for image in out])
    assert np.abs(centres - 14).max() <= 0.5
