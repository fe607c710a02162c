"""Fixed test-time views: known answers on a one-pixel dot and a 180-degree turn, no randomness."""
from __future__ import annotations

import numpy as np
import pytest

from augment import TTA_VIEWS, View, apply_view, view_stack


def dot(y: int, x: int) -> np.ndarray:
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, y, x] = 255
    return image


def test_shift_views_move_a_dot_one_pixel_each_way():
    stack = view_stack(dot(10, 12), "shift")
    assert stack.shape == (5, 1, 28, 28) and stack.dtype == np.uint8
    where = [tuple(np.argwhere(view[0] == 255)[0]) for view in stack]
    assert where == [(10, 12), (11, 12), (9, 12), (10, 13), (10, 11)]  # itself, down, up, right, left
    assert all(view.sum() == 255 for view in stack), "whole-pixel shifts copy exactly"


def test_a_180_degree_view_is_the_array_turned_twice(synthetic_digits):
    images = synthetic_digits[:4].astype(np.float64)
    np.testing.assert_allclose(apply_view(images, View(angle=180.0)), np.rot90(images, 2, axes=(1, 2)), atol=1e-6)


def test_small_rotations_keep_the_ink_and_go_both_ways(synthetic_digits):
    images = synthetic_digits[:8]
    stack = view_stack(images, "rotate").astype(np.float64)
    assert np.array_equal(stack[0], images), "the first view is the digit itself"
    assert not np.array_equal(stack[1], stack[2])
    for turned in stack[1:]:
        np.testing.assert_allclose(turned.sum(axis=(1, 2)), images.sum(axis=(1, 2)), rtol=0.05)
    # -5 then +5 degrees is (nearly) the digit back: the views are each other's inverse
    back = apply_view(apply_view(images.astype(np.float64), View(angle=-5.0)), View(angle=5.0))
    assert np.abs(back - images).mean() < 6.0


def test_views_are_deterministic_and_do_not_touch_the_input(synthetic_digits):
    images = synthetic_digits[:16].copy()
    first, second = view_stack(images, "shift-rotate"), view_stack(images, "shift-rotate")
    assert np.array_equal(first, second) and np.array_equal(images, synthetic_digits[:16])
    assert len(first) == len(TTA_VIEWS["shift-rotate"]) == 7
    assert np.array_equal(view_stack(images, "none")[0], images)
    assert np.array_equal(view_stack(images, (View(1, 0),))[0], view_stack(images, "shift")[1])


@pytest.mark.parametrize("views, message", [("zoom", "views must be one of none, shift, rotate, shift-rotate"),
                                            ((), "at least one view")])
def test_view_validation(views, message):
    with pytest.raises(ValueError, match=message):
        view_stack(np.zeros((1, 28, 28), np.uint8), views)
