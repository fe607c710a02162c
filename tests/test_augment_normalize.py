"""Input normalizations: known answers on synthetic digits (bars, blocks, rings), no randomness.

deskew shears a slanted bar upright and leaves an upright, centred digit alone; width_normalize
turns ink boxes into exactly ``width`` x 20 pixels, centred by mass, and is its own fixed point;
every entry of NORMALIZATIONS is walked (shape, dtype, range, blanks); and on 200 real MNIST
digits deskew removes nearly all the skew while keeping the ink.
"""
from __future__ import annotations

import numpy as np
import pytest

from augment import (
    NORMALIZATIONS,
    WIDTHS,
    deskew,
    get_normalization,
    ink_box,
    ink_moments,
    normalize,
    shift_images,
    skew,
    width_normalize,
)

CENTRE = 13.5  # (H - 1) / 2 for 28 x 28


def line(y0: float, x0: float, y1: float, x1: float, *, radius: float = 1.0) -> np.ndarray:
    """One anti-aliased stroke from (y0, x0) to (y1, x1) (row, column), uint8 (1, 28, 28)."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    t = np.linspace(0.0, 1.0, 200)[:, None, None]
    distance = np.hypot(yy - (y0 + t * (y1 - y0)), xx - (x0 + t * (x1 - x0))).min(axis=0)
    return np.round(np.clip(radius + 0.5 - distance, 0.0, 1.0) * 255)[None].astype(np.uint8)


def block(top: int, bottom: int, left: int, right: int, *, ring: int = 0) -> np.ndarray:
    """A hard-edged 255 rectangle (inclusive pixel bounds), hollow with a ``ring``-px wall if ring > 0."""
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, top : bottom + 1, left : right + 1] = 255
    if ring:
        image[0, top + ring : bottom + 1 - ring, left + ring : right + 1 - ring] = 0
    return image


def row_centres(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted mean column of every row that holds ink."""
    image = image.astype(np.float64)
    mass = image.sum(axis=1)
    rows = mass > 0.05 * mass.max()
    return (image @ np.arange(28.0))[rows] / mass[rows]


SLANTED = line(6, 10, 22, 18)  # leans right going down: 8 columns over 16 rows
# Hard-edged shapes whose ink boxes are exact: a "1"-like bar, a thin bar, a wide block, a ring, a small square.
HARD = {
    "one": block(4, 23, 13, 14),
    "thin": block(6, 21, 10, 10),
    "wide": block(9, 18, 2, 25),
    "ring": block(5, 22, 7, 20, ring=3),
    "square": block(11, 15, 11, 15),
}


# ----------------------------------------------------------------------------- deskew


def test_skew_is_the_slope_of_a_slanted_bar_in_columns_per_row():
    assert skew(SLANTED)[0] == pytest.approx(0.5, abs=0.03)
    assert skew(SLANTED[:, :, ::-1])[0] == pytest.approx(-0.5, abs=0.03)  # mirrored: leans left
    assert skew(HARD["one"])[0] == 0.0 and skew(np.zeros((1, 28, 28), np.uint8))[0] == 0.0


@pytest.mark.parametrize("mirror", [False, True])
def test_deskew_stands_a_slanted_bar_upright_at_the_centre(mirror):
    bar = SLANTED[:, :, ::-1] if mirror else SLANTED
    centres = row_centres(bar[0])
    assert np.ptp(centres) > 7.5, "before: the bar's column moves 8 px from top to bottom"
    out = deskew(bar)
    assert out.shape == (1, 28, 28) and out.dtype == np.uint8
    after = row_centres(out[0])
    assert np.ptp(after) < 1.5, "after: every row's ink sits in (nearly) the same column"
    assert np.ptp(after[2:-2]) < 0.2, "exactly so away from the round caps (which lean the other way)"
    _, before_centre, before = ink_moments(bar)
    mass, centre, cov = ink_moments(out)
    assert abs(before[0, 0, 1]) > 5.0 and abs(cov[0, 0, 1]) < 0.05 * abs(before[0, 0, 1])
    assert abs(skew(out)[0]) < 0.01
    np.testing.assert_allclose(centre[0], [CENTRE, CENTRE], atol=0.05)
    # a shear keeps the rows: the same height and (bilinear, inside the frame) the same ink
    assert cov[0, 0, 0] == pytest.approx(before[0, 0, 0], rel=0.02)
    assert mass[0] == pytest.approx(bar.sum(), rel=0.01)


def test_an_upright_centred_digit_is_unchanged():
    for name in ("one", "ring"):  # symmetric, centre of mass at (13.5, 13.5)
        assert np.array_equal(deskew(HARD[name]), HARD[name]), name
    upright = line(5, 13.5, 22, 13.5)  # anti-aliased, mass centre at (13.5, 13.5)
    assert np.abs(deskew(upright).astype(int) - upright).max() <= 1


def test_an_upright_digit_off_centre_is_only_moved_by_whole_pixels():
    one = block(2, 21, 5, 6)  # centre of mass (11.5, 5.5): 2 px down and 8 px right to the centre
    assert np.array_equal(deskew(one), shift_images(one, [[2, 8]]))


def test_deskew_centres_and_uprights_a_batch_of_strokes(synthetic_digits):
    images = synthetic_digits[:64]
    out = deskew(images)
    mass, centre, cov = ink_moments(out)
    _, _, before = ink_moments(images)
    inside = np.isclose(mass, images.sum(axis=(1, 2)), rtol=0.02)  # nothing sheared out of the frame
    assert inside.mean() > 0.9
    np.testing.assert_allclose(centre[inside], CENTRE, atol=0.15)
    # every cov(x, y) shrinks by 80 % or more; digit-like strokes (|alpha| <= 1) end up upright
    assert (np.abs(cov[inside, 0, 1]) <= 0.2 * np.abs(before[inside, 0, 1]) + 0.05).all()
    tall = inside & (np.abs(skew(images)) <= 1.0)
    assert tall.sum() > 40 and np.abs(skew(out[tall])).max() < 0.05
    assert np.abs(skew(out[tall])).mean() < 0.02 < 0.2 < np.abs(skew(images[tall])).mean()


# ----------------------------------------------------------------------------- width normalization


def test_a_one_becomes_a_width_by_20_block_at_the_centre():
    out = width_normalize(HARD["one"], 14)  # 2 x 20 bar, mass centre (13.5, 13.5)
    assert np.array_equal(out, block(4, 23, 7, 20)), "14 columns, 20 rows, centred"
    out = width_normalize(HARD["one"], 9)  # odd width: the box lands on whole pixels, a tie goes right
    assert np.array_equal(out, block(4, 23, 10, 18))


def test_area_resampling_averages_when_squeezing_and_scales_the_mass():
    wide = block(9, 18, 6, 21)  # 16 x 10 -> 8 x 20: half as wide, twice as tall
    out = width_normalize(wide, 8)
    assert np.array_equal(out, block(4, 23, 10, 17))
    stripes = np.zeros((1, 28, 28), np.float64)
    stripes[0, 4:24, 6:22:2] = 1.0  # 8 one-pixel stripes over 15 columns (box 6..20): squeezed to 10
    out = width_normalize(stripes, 10)
    assert out.dtype == np.float64
    assert out.sum() == pytest.approx(stripes.sum() * 10 / 15)
    box = ink_box(out)[0]
    assert out[0, box[0] : box[1] + 1, box[2] + 1 : box[3]].min() > 0.3, "no aliasing: no column drops out"


@pytest.mark.parametrize("width", [8, 11, 14, 17, 20])
@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_edged_ink_boxes_become_exactly_width_by_20(name, width):
    out = width_normalize(HARD[name], width)
    top, bottom, left, right = ink_box(out)[0]
    assert (right - left + 1, bottom - top + 1) == (width, 20)
    _, centre, _ = ink_moments(out)
    assert np.abs(centre[0] - CENTRE).max() <= 0.5 + 1e-9
    assert np.array_equal(width_normalize(out, width), out), "normalizing again changes nothing"


@pytest.mark.parametrize("width", [8, 14, 20])
def test_anti_aliased_digits_get_width_by_20_boxes_centred_by_mass(synthetic_digits, width):
    images = np.concatenate([synthetic_digits[:64], SLANTED, line(4, 14, 23, 14), line(14, 5, 14, 22)])
    out = width_normalize(images, width)
    box = ink_box(out)
    lost = width - (box[:, 3] - box[:, 2] + 1)  # never wider: the ink outside the box is dropped
    assert lost.min() == 0 and (lost <= 1).mean() >= 0.98 and lost.max() <= 2
    assert (box[:, 1] - box[:, 0] + 1 == 20).all()
    _, centre, _ = ink_moments(out)
    # within half a pixel unless the box had to move back inside the frame (wide boxes, lopsided mass)
    near = np.abs(centre - CENTRE).max(axis=1) <= 0.55
    assert near.mean() >= (1.0 if width < 20 else 0.9)
    again = width_normalize(out, width)
    same = (again == out).all(axis=(1, 2))
    assert same.mean() >= 0.9, "a normalized digit is (nearly always) its own normalization"
    changed = np.abs(again.astype(np.int64) - out).sum(axis=(1, 2)) / out.sum(axis=(1, 2))
    assert changed.max() < 0.6


def test_a_box_that_cannot_be_centred_by_mass_stays_inside_the_frame():
    ell = block(4, 23, 2, 3)
    ell[0, 22:24, 2:26] = 255  # an "L": the mass low and left in a box 24 wide
    out = width_normalize(ell, 20)
    # centring the mass would move the box up and right, past the border: it stops at the border
    assert tuple(ink_box(out)[0]) == (0, 19, 8, 27)
    assert out.sum() == pytest.approx(ell.sum() * 20 / 24, rel=0.01), "no ink lost at the border"


# ----------------------------------------------------------------------------- both, and the registry


@pytest.mark.parametrize("name", list(NORMALIZATIONS))
def test_every_normalization_keeps_shape_dtype_range_and_blanks(name, synthetic_digits):
    images = synthetic_digits[:16].copy()
    images[5] = 0
    before = images.copy()
    out = normalize(images, name)
    assert out.shape == images.shape and out.dtype == np.uint8 and out is not images
    assert np.array_equal(images, before), "the input is not touched"
    assert not out[5].any(), "blank in, blank out"
    assert out.reshape(16, -1).max(axis=1)[[i for i in range(16) if i != 5]].min() > 0, "ink in, ink out"
    assert np.array_equal(normalize(images, name), out), "deterministic"
    for i in (0, 7):  # each image on its own gives the same answer as in the batch
        assert np.array_equal(get_normalization(name)(images[i : i + 1])[0], out[i])
    floats = images.astype(np.float32) / 255
    out_f = normalize(floats, name)
    assert out_f.dtype == np.float32 and out_f.shape == images.shape
    assert out_f.min() >= 0.0 and out_f.max() <= floats.max() + 1e-6
    assert np.abs(out_f * 255 - out).max() <= 0.51, "float and uint8 agree to the rounding"
    assert normalize(images[:0], name).shape == (0, 28, 28)


def test_the_registry_names():
    assert list(NORMALIZATIONS) == ["none", "deskew", *(f"width-{w}" for w in range(8, 21))]
    assert WIDTHS == tuple(range(8, 21))
    digits = HARD["ring"]
    assert np.array_equal(normalize(digits, "none"), digits)
    assert np.array_equal(normalize(digits, "width-12"), width_normalize(digits, 12))
    assert get_normalization("deskew") is deskew


@pytest.mark.parametrize("name", ["width-7", "width-21", "Deskew", "", None, 14])
def test_unknown_names_fail_on_one_line_naming_the_choices(name):
    with pytest.raises(ValueError, match="normalize must be one of none, deskew, width-8, .*width-20, got") as err:
        get_normalization(name)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="normalize must be one of"):
        normalize(np.zeros((1, 28, 28), np.uint8), name)


BAD_CALLS = [
    (lambda: width_normalize(HARD["one"], 7), "width must be in 8..20, got 7"),
    (lambda: width_normalize(HARD["one"], 21), "width must be in 8..20, got 21"),
    (lambda: width_normalize(HARD["one"], 14.5), "width must be an integer"),
    (lambda: width_normalize(HARD["one"], True), "width must be an integer"),
    (lambda: width_normalize(np.zeros((1, 28, 12), np.uint8), 14), "width must be <= the image width 12"),
    (lambda: width_normalize(HARD["one"], 14, height=29), "height must be in 1..28"),
    (lambda: width_normalize(HARD["one"], 14, threshold=1.0), r"threshold must be in \[0, 1\)"),
    (lambda: ink_box(HARD["one"], threshold=float("nan")), "threshold must be finite"),
    (lambda: deskew(HARD["one"][0]), r"images must have shape \(N, H, W\)"),
    (lambda: width_normalize(HARD["one"][None], 14), r"images must have shape \(N, H, W\)"),
    (lambda: deskew(np.full((1, 28, 28), np.nan)), "images must be finite"),
    (lambda: width_normalize(np.full((1, 28, 28), np.inf, np.float32), 14), "images must be finite"),
    (lambda: deskew(-np.ones((1, 28, 28))), "images must be >= 0"),
    (lambda: deskew(np.zeros((1, 28, 28), np.int32)), "images must be uint8 or floating"),
    (lambda: deskew(HARD["one"], out=np.empty((1, 28, 28), np.float32)), "out must have dtype uint8"),
]


@pytest.mark.parametrize("call, message", BAD_CALLS)
def test_bad_arguments_fail_on_one_line(call, message):
    with pytest.raises(ValueError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_out_is_filled_and_returned():
    out = np.full((2, 28, 28), 7, np.uint8)
    images = np.concatenate([SLANTED, np.zeros((1, 28, 28), np.uint8)])
    assert deskew(images, out=out) is out and np.array_equal(out, deskew(images))
    assert width_normalize(images, 10, out=out) is out and np.array_equal(out, width_normalize(images, 10))


# ----------------------------------------------------------------------------- real digits


def test_deskew_on_real_mnist_removes_the_skew_and_keeps_the_ink(mnist):
    images = mnist["x_train"][:200]
    out = deskew(images)
    before, after = np.abs(skew(images)).mean(), np.abs(skew(out)).mean()
    assert before > 0.15 and after < 0.1 * before
    ratio = out.sum(axis=(1, 2)) / images.sum(axis=(1, 2))
    assert np.abs(ratio - 1).max() < 0.1
    _, centre, _ = ink_moments(out)
    assert np.abs(centre - CENTRE).max() < 0.5
    box = ink_box(width_normalize(images, 14))
    assert (box[:, 3] - box[:, 2] + 1 == 14).mean() > 0.98 and np.abs(box[:, 3] - box[:, 2] + 1 - 14).max() <= 1
    assert (box[:, 1] - box[:, 0] + 1 == 20).all()
