"""Uncertainty scores (ensemble_cnn/inference/uncertainty.py): known answers, the K = 1 case, the registry's
one check of a name, and Ensemble.uncertainty on a real trained run (the session's ``trained_run``)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.inference.uncertainty import (
    DEFAULT_SCORE, SCORES, get_score, max_probability, mutual_information, predictive_entropy, uncertainty,
    variation_ratio, vote_margin,
)


def one_hot_committee(labels: np.ndarray, n_members: int) -> np.ndarray:
    """``n_members`` members that all give probability 1 to ``labels`` (N,): shape (K, N, 10)."""
    return np.broadcast_to(np.eye(10)[labels], (n_members, len(labels), 10)).copy()


def h(*p: float) -> float:
    """Entropy in nats of the listed probabilities (the rest of the row being 0)."""
    return -sum(x * math.log(x) for x in p if x > 0)


def hand_example() -> np.ndarray:
    """2 members, 3 digits, 10 classes.

    digit 0: both vote 0, unequally sure: (0.8, 0.2) and (0.6, 0.4);
    digit 1: one-hot and opposite: 0 and 1;
    digit 2: member 0 uniform (votes 0, argmax's tie rule), member 1 one-hot on 3.
    """
    p = np.zeros((2, 3, 10))
    p[0, 0, :2], p[1, 0, :2] = (0.8, 0.2), (0.6, 0.4)
    p[0, 1, 0], p[1, 1, 1] = 1.0, 1.0
    p[0, 2, :], p[1, 2, 3] = 0.1, 1.0
    return p


@pytest.mark.parametrize("name", list(SCORES))
@pytest.mark.parametrize("n_members", [1, 2, 5])
def test_a_committee_that_agrees_everywhere_scores_zero(name: str, n_members: int) -> None:
    labels = np.random.default_rng(n_members).integers(0, 10, size=50)
    scores = SCORES[name].function(one_hot_committee(labels, n_members))
    assert scores.shape == (50,) and scores.dtype == np.float64
    assert np.array_equal(scores, np.zeros(50))


def test_hand_computed_scores_on_two_members_and_three_digits() -> None:
    p = hand_example()
    np.testing.assert_allclose(vote_margin(p), [0.0, 1.0, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(variation_ratio(p), [0.0, 0.5, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(max_probability(p), [1 - 0.7, 1 - 0.5, 1 - 0.55], rtol=0, atol=1e-15)
    entropy = [h(0.7, 0.3), math.log(2), h(*[0.05] * 9, 0.55)]
    np.testing.assert_allclose(predictive_entropy(p), entropy, rtol=1e-12)
    member_entropy = [(h(0.8, 0.2) + h(0.6, 0.4)) / 2, 0.0, (math.log(10) + 0.0) / 2]
    np.testing.assert_allclose(mutual_information(p), np.subtract(entropy, member_entropy), rtol=1e-12)
    # the registry holds these very functions
    for name, function in [("vote_margin", vote_margin), ("max_probability", max_probability),
                           ("entropy", predictive_entropy), ("mutual_information", mutual_information),
                           ("variation_ratio", variation_ratio)]:
        assert SCORES[name].function is function
        np.testing.assert_array_equal(uncertainty(p, score=name), function(p))


def test_vote_margin_and_variation_ratio_differ_on_a_three_way_split() -> None:
    """4 members voting 0, 0, 1, 2: modal share 1/2, runner-up 1/4."""
    p = one_hot_committee(np.array([0]), 4)
    p[2, 0], p[3, 0] = np.eye(10)[1], np.eye(10)[2]
    assert vote_margin(p)[0] == pytest.approx(1 - (0.5 - 0.25))
    assert variation_ratio(p)[0] == pytest.approx(0.5)


def test_one_member_has_no_disagreement() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(10), size=(1, 40))
    assert np.array_equal(mutual_information(p), np.zeros(40))
    assert np.array_equal(variation_ratio(p), np.zeros(40))
    assert np.array_equal(vote_margin(p), np.zeros(40))
    np.testing.assert_allclose(max_probability(p), 1 - p[0].max(axis=1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(predictive_entropy(p), [h(*row) for row in p[0]], rtol=1e-12)


def test_scores_keep_their_ranges_on_random_committees() -> None:
    p = np.random.default_rng(1).dirichlet(np.full(10, 0.3), size=(5, 500)).astype(np.float32)
    entropy, information = predictive_entropy(p), mutual_information(p)
    assert np.all(information >= 0) and np.all(information <= entropy + 1e-12)
    assert np.all(entropy <= math.log(10) + 1e-12)
    assert np.all(information > 0), "members that disagree have a positive mutual information"
    for name in SCORES:
        scores = uncertainty(p, score=name)
        assert scores.shape == (500,) and scores.dtype == np.float64 and np.all(scores >= 0)
    assert np.all(max_probability(p) <= 0.9 + 1e-6) and np.all(vote_margin(p) <= 1.0)
    assert np.all(variation_ratio(p) <= 0.8 + 1e-12)  # 5 members: the modal label has at least 1 vote of 5


def test_no_digit_gives_no_score() -> None:
    for name in SCORES:
        assert uncertainty(np.zeros((3, 0, 10)), score=name).shape == (0,)


def test_an_unknown_score_or_bad_probabilities_are_one_line_errors() -> None:
    with pytest.raises(ValueError) as info:
        get_score("confidence")
    message = str(info.value)
    assert "\n" not in message and "'confidence'" in message and all(name in message for name in SCORES)
    with pytest.raises(ValueError, match="score must be one of"):
        uncertainty(hand_example(), score=["entropy"])  # unhashable
    with pytest.raises(ValueError, match="3-D"):
        uncertainty(np.ones((3, 10)), score="entropy")
    with pytest.raises(ValueError, match="finite"):
        uncertainty(np.full((2, 3, 10), np.nan), score="entropy")


def test_the_default_score_is_registered() -> None:
    assert DEFAULT_SCORE in SCORES
    p = hand_example()
    np.testing.assert_array_equal(uncertainty(p), SCORES[DEFAULT_SCORE].function(p))


# --------------------------------------------------------------------------- Ensemble.uncertainty
@pytest.fixture(scope="module")
def trained_ensemble(trained_run: Path) -> Ensemble:
    """The session's real 3-member run (trained once for every test file that uses it)."""
    return Ensemble.load(trained_run, voting="soft")


@pytest.fixture(scope="module")
def test_digits(small_mnist_npz: Path) -> np.ndarray:
    with np.load(small_mnist_npz) as npz:
        return npz["x_test"][:300]


@pytest.mark.parametrize("name", list(SCORES))
def test_ensemble_uncertainty_is_the_registry_score_of_its_members(name: str, trained_ensemble: Ensemble,
                                                                   test_digits: np.ndarray) -> None:
    scores = trained_ensemble.uncertainty(test_digits, score=name)
    assert scores.shape == (len(test_digits),) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores, SCORES[name].function(trained_ensemble.member_probabilities(test_digits)))
    assert np.ptp(scores) > 0, f"{name}: every digit scores the same on a real run"


def test_ensemble_uncertainty_defaults_and_refuses_an_unknown_score(trained_ensemble: Ensemble,
                                                                    test_digits: np.ndarray) -> None:
    digits = test_digits[:20]
    np.testing.assert_array_equal(trained_ensemble.uncertainty(digits),
                                  uncertainty(trained_ensemble.member_probabilities(digits), score=DEFAULT_SCORE))
    with pytest.raises(ValueError) as info:
        trained_ensemble.uncertainty(digits, score="margin")
    assert "\n" not in str(info.value) and all(name in str(info.value) for name in SCORES)
