"""The one share check (ensemble_cnn.shares) and the one label checker of the scores, at their edges."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ensemble_cnn.inference.vote import check_probabilities_2d, check_true_labels
from ensemble_cnn.shares import check_share


@pytest.mark.parametrize("value, zero, one, expected", [
    (0.5, False, False, 0.5), (np.float32(0.25), False, False, 0.25), (1, False, True, 1.0),
    (0, True, False, 0.0), (0.0, True, True, 0.0),
])
def test_a_share_inside_its_interval_comes_back_as_a_float(value, zero, one, expected):
    share = check_share(value, "x", zero=zero, one=one)
    assert share == expected and type(share) is float


@pytest.mark.parametrize("value, zero, one, interval", [
    (0, False, False, r"\(0, 1\)"), (1, False, False, r"\(0, 1\)"), (1, True, False, r"\[0, 1\)"),
    (0, False, True, r"\(0, 1\]"), (1.5, True, True, r"\[0, 1\]"), (-0.1, True, True, r"\[0, 1\]"),
    (True, False, True, r"\(0, 1\]"), ("0.5", False, False, r"\(0, 1\)"), (math.nan, True, True, r"\[0, 1\]"),
])
def test_a_share_outside_its_interval_is_refused_in_one_line_naming_it(value, zero, one, interval):
    with pytest.raises(ValueError, match=rf"^`coverage` must be a number in {interval}, e\.g\. 0\.99; got ") as info:
        check_share(value, "coverage", zero=zero, one=one)
    assert "\n" not in str(info.value)


def test_labels_are_checked_once_for_every_score():
    assert check_true_labels([0, 2, 1.0], 3, 3).tolist() == [0, 2, 1]
    for labels, message in [([0, 1], r"`labels` must have shape \(3,\)"), ([0, 1, 1.5], "integer labels"),
                            ([0, 1, 3], r"lie in \[0, 3\)"), ([0, -1, 2], r"lie in \[0, 3\)"),
                            (["a", "b", "c"], "integer labels"), ([0, 1, np.nan], "integer labels")]:
        with pytest.raises(ValueError, match=rf"^.*{message}"):
            check_true_labels(labels, 3, 3, name="labels")
    with pytest.raises(ValueError, match="at least one sample"):
        check_true_labels([], 0, 3)


def test_a_probability_stack_is_checked_once():
    assert check_probabilities_2d(np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match=r"^`p` must hold at least 1 sample\(s\); got n_samples=0$"):
        check_probabilities_2d(np.zeros((0, 3)), name="p", min_samples=1)
    for bad, message in [(np.ones((3,)), "2-D"), (np.ones((2, 1)), "2-D"), ([[0.5, np.inf]], "finite"),
                         ([["a", "b"]], "numeric")]:
        with pytest.raises(ValueError, match=message):
            check_probabilities_2d(bad)
