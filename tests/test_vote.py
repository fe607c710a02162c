"""Tests for ensemble_cnn.inference.vote: majority (plurality) and soft voting."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ensemble_cnn.inference.vote import VOTE_METHODS, majority_vote, soft_vote, vote


def _random_probabilities(rng: np.random.Generator, k: int, n: int, c: int) -> np.ndarray:
    """Random softmax-like probabilities of shape (k, n, c)."""
    logits = rng.normal(size=(k, n, c)) * 3.0
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


def _one_hot(labels: list[list[int]], c: int) -> np.ndarray:
    """One-hot probabilities (K, N, C) from member labels (K, N)."""
    return np.eye(c)[np.asarray(labels)]


# --------------------------------------------------------------------------- #
# Agreement with scipy.stats.mode
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 10])
def test_majority_matches_mode_where_no_tie(k: int) -> None:
    rng = np.random.default_rng(k)
    proba = _random_probabilities(rng, k, 2000, 10)
    member_labels = proba.argmax(axis=2)
    counts = np.stack([(member_labels == c).sum(axis=0) for c in range(10)], axis=1)
    untied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert untied.sum() > 100  # the comparison is not vacuous

    expected = stats.mode(member_labels, axis=0, keepdims=False).mode
    got = majority_vote(proba)
    np.testing.assert_array_equal(got[untied], expected[untied])


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_majority_matches_mode_on_one_hot_including_ties(k: int) -> None:
    # With one-hot probabilities, tied classes also tie on summed probability,
    # so the tie rule falls back to the lowest label -- scipy.stats.mode's rule.
    rng = np.random.default_rng(100 + k)
    member_labels = rng.integers(0, 4, size=(k, 3000))
    proba = np.eye(4)[member_labels]
    expected = stats.mode(member_labels, axis=0, keepdims=False).mode
    got = majority_vote(proba)
    assert got.dtype == np.int64 and got.shape == (3000,)
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- #
# Hand-made ties (dyadic probabilities: exact in floating point)
# --------------------------------------------------------------------------- #
def test_tie_k2_probability_breaks_toward_higher_label() -> None:
    # Votes 0 and 2 (1 each); summed probability: class 0 = 0.75, class 2 = 1.0.
    proba = np.array([[[0.5, 0.25, 0.25]], [[0.25, 0.0, 0.75]]])
    assert majority_vote(proba).tolist() == [2]


def test_tie_k2_equal_probability_breaks_toward_lower_label() -> None:
    # Votes 1 and 0; summed probability 1.0 for both -> lower label 0.
    proba = np.array([[[0.25, 0.75]], [[0.75, 0.25]]])
    assert majority_vote(proba).tolist() == [0]


def test_tie_k4() -> None:
    proba = np.array(
        [
            [[0.0, 0.75, 0.0, 0.25], [0.5, 0.25, 0.25, 0.0], [0.25, 0.0, 0.75, 0.0]],
            [[0.0, 0.5, 0.25, 0.25], [0.25, 0.5, 0.25, 0.0], [0.25, 0.0, 0.75, 0.0]],
            [[0.0, 0.0, 0.25, 0.75], [0.0, 0.25, 0.5, 0.25], [0.75, 0.0, 0.25, 0.0]],
            [[0.0, 0.25, 0.0, 0.75], [0.0, 0.25, 0.25, 0.5], [0.75, 0.0, 0.25, 0.0]],
        ]
    )
    assert proba.argmax(axis=2).T.tolist() == [[1, 1, 3, 3], [0, 1, 2, 3], [2, 2, 0, 0]]
    # sample 0: 2-2 tie between 1 and 3; sums: class 1 = 1.5, class 3 = 2.0 -> 3.
    # sample 1: 4-way tie; sums 0.75, 1.25, 1.25, 0.75 -> lower label of {1, 2} -> 1.
    # sample 2: 2-2 tie between 2 and 0; sums 2.0 and 2.0 -> lower label 0.
    assert majority_vote(proba).tolist() == [3, 1, 0]


def test_tie_k3_three_way() -> None:
    # Cyclic permutations: votes 0, 1, 2 and every class sums to 1.0 -> lower label 0.
    sym = np.array([[[0.5, 0.25, 0.25]], [[0.25, 0.5, 0.25]], [[0.25, 0.25, 0.5]]])
    assert majority_vote(sym).tolist() == [0]
    # Same votes, but class 2 has the largest summed probability -> 2.
    skew = np.array([[[0.5, 0.25, 0.25]], [[0.0, 0.5, 0.5]], [[0.125, 0.125, 0.75]]])
    assert majority_vote(skew).tolist() == [2]


def test_tie_k3_votes_outrank_probability() -> None:
    # Votes 0, 0, 1 -> 0 wins although class 1 has the larger summed probability.
    proba = np.array([[[0.5, 0.5 - 1e-3]], [[0.5, 0.5 - 1e-3]], [[0.0, 1.0]]])
    assert majority_vote(proba).tolist() == [0]
    assert soft_vote(proba).tolist() == [1]


def test_tie_k5() -> None:
    proba = np.array(
        [
            [[0.75, 0.25, 0.0]],  # votes 0
            [[0.5, 0.25, 0.25]],  # votes 0
            [[0.0, 0.75, 0.25]],  # votes 1
            [[0.25, 0.5, 0.25]],  # votes 1
            [[0.0, 0.0, 1.0]],  # votes 2
        ]
    )
    # Votes: 0 -> 2, 1 -> 2, 2 -> 1. Sums: class 0 = 1.5, class 1 = 1.75, class 2 = 1.75.
    # Class 2 is not a finalist (one vote); class 1 beats class 0 on probability.
    assert majority_vote(proba).tolist() == [1]
    # Equal probability between the two finalists -> lower label 0.
    proba[2, 0] = [0.25, 0.5, 0.25]  # class 0 sum 1.75, class 1 sum 1.5 -> 0
    assert majority_vote(proba).tolist() == [0]
    proba[2, 0] = [0.0, 0.5, 0.5]  # class 0 sum 1.5, class 1 sum 1.5 -> lower label 0
    assert majority_vote(proba).tolist() == [0]


def test_tie_detection_is_robust_to_rounding() -> None:
    # Votes 0, 1, 0 with weights 0.1, 0.3, 0.2: class 0 gets 0.1 + 0.2 =
    # 0.30000000000000004 votes, class 1 gets 0.3 -- a tie up to rounding.
    proba = np.array([[[0.6, 0.4]], [[0.0, 1.0]], [[0.7, 0.3]]])
    # Weighted sums: class 0 = 0.06 + 0.14 = 0.2, class 1 = 0.04 + 0.3 + 0.06 = 0.4 -> 1.
    assert majority_vote(proba, weights=[0.1, 0.3, 0.2]).tolist() == [1]
    # A clear weighted majority is not mistaken for a tie.
    assert majority_vote(proba, weights=[0.1, 0.3, 0.2 + 1e-6]).tolist() == [0]


def test_many_samples_vectorised_mixture() -> None:
    # Each sample is one of the hand cases above; the vote is per sample.
    a = np.array([[[0.5, 0.25, 0.25]], [[0.25, 0.5, 0.25]], [[0.25, 0.25, 0.5]]])
    b = np.array([[[0.5, 0.25, 0.25]], [[0.0, 0.5, 0.5]], [[0.125, 0.125, 0.75]]])
    c = np.array([[[0.0, 0.25, 0.75]], [[0.0, 0.75, 0.25]], [[0.0, 0.75, 0.25]]])
    proba = np.concatenate([a, b, c, a], axis=1)
    assert majority_vote(proba).tolist() == [0, 2, 1, 0]


# --------------------------------------------------------------------------- #
# Weights
# --------------------------------------------------------------------------- #
def test_weights_change_the_outcome() -> None:
    proba = _one_hot([[0], [0], [1]], 3)
    assert majority_vote(proba).tolist() == [0]
    assert majority_vote(proba, weights=[1, 1, 3]).tolist() == [1]
    assert majority_vote(proba, weights=[1, 1, 2]).tolist() == [0]  # 2-2 tie, equal sums -> 0
    assert majority_vote(proba, weights=[0, 0, 1]).tolist() == [1]  # zero-weight members are silent


def test_equal_weights_equal_unweighted() -> None:
    rng = np.random.default_rng(7)
    for k in (2, 3, 4, 5):
        proba = _random_probabilities(rng, k, 500, 10)
        np.testing.assert_array_equal(majority_vote(proba, weights=[2.5] * k), majority_vote(proba))
        np.testing.assert_array_equal(soft_vote(proba, weights=np.full(k, 0.3)), soft_vote(proba))


def test_ties_with_even_k_on_one_hot_use_lower_label() -> None:
    proba = _one_hot([[3, 1], [1, 3]], 4)
    assert majority_vote(proba).tolist() == [1, 1]


# --------------------------------------------------------------------------- #
# Soft vote and dispatcher
# --------------------------------------------------------------------------- #
def test_soft_vote_hand_case() -> None:
    proba = np.array(
        [
            [[0.4, 0.6], [0.2, 0.8], [0.5, 0.5]],
            [[0.4, 0.6], [0.3, 0.7], [0.5, 0.5]],
            [[1.0, 0.0], [0.1, 0.9], [0.5, 0.5]],
        ]
    )
    # Means: [0.6, 0.4] -> 0; [0.2, 0.8] -> 1; [0.5, 0.5] -> tie -> lower label 0.
    assert soft_vote(proba).tolist() == [0, 1, 0]
    assert majority_vote(proba).tolist() == [1, 1, 0]
    # Weighting away the confident third member flips sample 0.
    assert soft_vote(proba, weights=[1, 1, 0.1]).tolist() == [1, 1, 0]


def test_soft_vote_returns_int64() -> None:
    out = soft_vote(np.full((2, 5, 3), 1 / 3))
    assert out.dtype == np.int64 and out.tolist() == [0] * 5


def test_vote_dispatcher() -> None:
    rng = np.random.default_rng(3)
    proba = _random_probabilities(rng, 5, 300, 10)
    assert VOTE_METHODS == ("majority", "soft")
    np.testing.assert_array_equal(vote(proba), majority_vote(proba))
    np.testing.assert_array_equal(vote(proba, voting="majority"), majority_vote(proba))
    np.testing.assert_array_equal(vote(proba, voting="soft"), soft_vote(proba))
    w = rng.uniform(0.5, 2.0, size=5)
    np.testing.assert_array_equal(vote(proba, voting="soft", weights=w), soft_vote(proba, weights=w))


def test_single_member_and_no_samples() -> None:
    rng = np.random.default_rng(0)
    proba = _random_probabilities(rng, 1, 50, 10)
    np.testing.assert_array_equal(majority_vote(proba), proba[0].argmax(axis=1))
    np.testing.assert_array_equal(soft_vote(proba), proba[0].argmax(axis=1))
    for fn in (majority_vote, soft_vote):
        out = fn(np.zeros((3, 0, 10)))
        assert out.shape == (0,) and out.dtype == np.int64


def test_accepts_lists() -> None:
    assert majority_vote([[[0.9, 0.1]], [[0.2, 0.8]], [[0.3, 0.7]]]).tolist() == [1]


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("fn", [majority_vote, soft_vote])
@pytest.mark.parametrize(
    "proba, match",
    [
        (np.zeros((4, 3)), "3-D"),
        (np.zeros((2, 3, 4, 5)), "3-D"),
        (np.zeros((0, 3, 4)), "at least one member"),
        (np.zeros((2, 3, 1)), "at least 2 classes"),
        (np.full((2, 3, 4), np.nan), "finite"),
        (np.full((2, 3, 4), np.inf), "finite"),
        (np.array([[["a", "b"]]]), "numeric"),
    ],
)
def test_invalid_probabilities(fn, proba, match) -> None:
    with pytest.raises(ValueError, match=match):
        fn(proba)


@pytest.mark.parametrize("fn", [majority_vote, soft_vote])
@pytest.mark.parametrize(
    "weights, match",
    [
        ([1.0, 1.0], r"shape \(3,\)"),
        ([[1.0, 1.0, 1.0]], r"shape \(3,\)"),
        (1.0, r"shape \(3,\)"),
        ([1.0, -1.0, 1.0], "non-negative"),
        ([0.0, 0.0, 0.0], "not all be zero"),
        ([1.0, np.nan, 1.0], "finite"),
        (["x", "y", "z"], "numeric"),
    ],
)
def test_invalid_weights(fn, weights, match) -> None:
    proba = np.full((3, 2, 4), 0.25)
    with pytest.raises(ValueError, match=match):
        fn(proba, weights=weights)


def test_invalid_method() -> None:
    with pytest.raises(ValueError, match="voting must be one of majority, soft, got 'hard'"):
        vote(np.full((2, 2, 2), 0.5), voting="hard")
