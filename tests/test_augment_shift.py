"""Exact integer shifts and Nielsen's five-fold expansion."""

from __future__ import annotations

import numpy as np
import pytest

from augment import NIELSEN_SHIFTS, nielsen_expand, shift_images


def test_one_pixel_shifts_are_exact_slices() -> None:
    img = np.arange(1, 17, dtype=np.uint8).reshape(1, 4, 4)
    down = shift_images(img, [[1, 0]])[0]
    assert np.array_equal(down[1:], img[0, :-1]) and not down[0].any()
    right = shift_images(img, [[0, 1]])[0]
    assert np.array_equal(right[:, 1:], img[0, :, :-1]) and not right[:, 0].any()
    up_left = shift_images(img, [[-1, -1]])[0]
    expected = np.zeros((4, 4), np.uint8)
    expected[:-1, :-1] = img[0, 1:, 1:]
    assert np.array_equal(up_left, expected)


def test_per_image_shifts_and_dtypes() -> None:
    rng = np.random.default_rng(0)
    imgs = rng.random((6, 5, 7))
    shifts = np.array([[0, 0], [2, -1], [-3, 3], [5, 0], [0, -7], [-9, 9]])
    out = shift_images(imgs, shifts)
    assert out.dtype == imgs.dtype and out.shape == imgs.shape
    for img, (dy, dx), got in zip(imgs, shifts, out):
        want = np.zeros_like(img)
        h, w = img.shape
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        if abs(dy) < h and abs(dx) < w:
            want[yd, xd] = img[ys, xs]
        assert np.array_equal(got, want)


def test_zero_shift_copies_and_out_is_used() -> None:
    imgs = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    out = np.full_like(imgs, -1)
    res = shift_images(imgs, np.zeros((2, 2), int), out=out)
    assert res is out and np.array_equal(out, imgs)


@pytest.mark.parametrize(
    ("images", "shifts", "message"),
    [
        (
            np.zeros((5, 784), np.uint8),
            np.zeros((5, 2), int),
            r"images must have shape \(N, H, W\), got \(5, 784\)",
        ),
        (np.zeros((2, 4, 4), np.int32), np.zeros((2, 2), int), "images must be uint8 or floating"),
        (np.zeros((2, 4, 4), np.uint8), np.zeros((3, 2), int), "shifts must have shape"),
        (np.zeros((2, 4, 4), np.uint8), np.zeros((2, 2)), "shifts must be integers"),
    ],
)
def test_shift_validation(images, shifts, message) -> None:
    with pytest.raises(ValueError, match=message):
        shift_images(images, shifts)


def test_nielsen_expand_layout_and_content() -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 1, 4], dtype=np.uint8)
    out, lab = nielsen_expand(imgs, labels)
    assert out.shape == (15, 28, 28) and out.dtype == np.uint8
    assert np.array_equal(lab, np.tile(labels, 5))
    assert np.array_equal(out[:3], imgs)
    for k, shift in enumerate(NIELSEN_SHIFTS, start=1):
        assert np.array_equal(out[3 * k : 3 * k + 3], shift_images(imgs, np.tile(shift, (3, 1))))
    # Down copy: row 0 blank, rows shifted by one (Nielsen's np.roll + zeroed row).
    assert not out[3:6, 0].any() and np.array_equal(out[3:6, 1:], imgs[:, :-1])


def test_nielsen_expand_digits(synthetic_digits) -> None:
    x, y = synthetic_digits[:200], np.arange(200, dtype=np.uint8) % 10
    out, lab = nielsen_expand(x, y)
    assert out.shape == (1000, 28, 28) and lab.shape == (1000,)
    assert np.array_equal(lab, np.tile(y, 5))
    # Digits with a blank 1-px frame keep every pixel value under 1-px shifts.
    frame = np.ones((28, 28), bool)
    frame[1:-1, 1:-1] = False
    blank = ~(x[:, frame] > 0).any(axis=1)
    assert blank.mean() > 0.9
    totals = out.reshape(5, 200, -1).sum(axis=2, dtype=np.int64)[:, blank]
    assert np.array_equal(totals, np.tile(totals[0], (5, 1)))


def test_nielsen_expand_validation() -> None:
    with pytest.raises(ValueError, match="labels must have shape"):
        nielsen_expand(np.zeros((3, 4, 4), np.uint8), np.zeros(2))
