"""Selective prediction (ensemble_cnn/evaluation/selective.py): known answers for the risk-coverage curve, AURC,
thresholds (ties as one block), the oracle line, and thresholds fixed on calibration digits."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ensemble_cnn.evaluation.selective import (
    aurc, calibrated_selection, coverage_at_error, curve_aurc, error_at_coverage, oracle_curve, risk_coverage_curve,
    select, threshold_for_coverage, threshold_for_error,
)
from ensemble_cnn.evaluation.stats import wilson_interval

COVERAGES = [0.01, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0]


def test_hand_computed_curve_and_aurc() -> None:
    """Scores 0.1, 0.5, 0.5, 0.9 with the last three wrong, right, wrong: the tie at 0.5 is one block."""
    curve = risk_coverage_curve([0.5, 0.1, 0.9, 0.5], [False, True, False, True])
    assert curve["threshold"].tolist() == [0.1, 0.5, 0.9]
    assert curve["accepted"].tolist() == [1, 3, 4] and curve["errors"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(curve["coverage"], [0.25, 0.75, 1.0])
    np.testing.assert_allclose(curve["risk"], [0.0, 1 / 3, 0.5])
    # AURC: 1/4 of the digits at risk 0, 2/4 at 1/3 (the block), 1/4 at 1/2
    assert aurc([0.5, 0.1, 0.9, 0.5], [0, 1, 0, 1]) == pytest.approx(0.25 * 0 + 0.5 / 3 + 0.25 * 0.5, abs=1e-15)


def test_without_ties_aurc_is_the_mean_risk_over_every_coverage() -> None:
    rng = np.random.default_rng(0)
    scores, correct = rng.random(300), rng.random(300) < 0.8
    order = np.argsort(scores)
    risks = np.cumsum(~correct[order]) / np.arange(1, 301)
    assert aurc(scores, correct) == pytest.approx(risks.mean(), rel=1e-12)


@pytest.mark.parametrize("coverage", COVERAGES)
def test_a_committee_that_agrees_everywhere_answers_every_digit(coverage: float) -> None:
    """All scores 0 (a unanimous, certain committee): one block, so any threshold answers 100%."""
    scores, correct = np.zeros(200), np.arange(200) % 50 != 0  # 4 errors
    threshold = threshold_for_coverage(scores, coverage)
    assert threshold == 0.0
    for result in (error_at_coverage(scores, correct, coverage), calibrated_selection(scores, scores, correct,
                                                                                     coverage=coverage)):
        assert result["coverage"] == 1.0 and result["accepted"] == 200
        assert result["errors"] == 4 and result["error"] == pytest.approx(0.02)
    curve = risk_coverage_curve(scores, correct)
    assert curve["coverage"].tolist() == [1.0] and aurc(scores, correct) == pytest.approx(0.02)


def test_an_oracle_score_gives_the_oracle_line() -> None:
    rng = np.random.default_rng(1)
    correct = rng.random(500) < 0.9
    n_right = int(correct.sum())
    oracle_scores = np.where(correct, 0.0, 1.0) + rng.random(500) * 1e-3  # errors highest, no ties
    curve, line = risk_coverage_curve(oracle_scores, correct), oracle_curve(correct)
    i = np.arange(1, 501)
    np.testing.assert_allclose(line["risk"], np.maximum(0, i - n_right) / i, rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve["coverage"], line["coverage"])
    np.testing.assert_allclose(curve["risk"], line["risk"], rtol=0, atol=1e-15)
    assert curve_aurc(line) == pytest.approx(np.sum(np.maximum(0, i - n_right) / i) / 500, rel=1e-12)
    assert error_at_coverage(oracle_scores, correct, n_right / 500)["errors"] == 0
    # no score does better than the oracle; a score that knows nothing does worse
    for seed in range(10, 15):  # not seed 1: its stream drew `correct`, so it would be the oracle itself
        assert aurc(np.random.default_rng(seed).random(500), correct) > curve_aurc(line)


def test_oracle_line_by_hand() -> None:
    line = oracle_curve([True, False, True])
    assert line["risk"].tolist() == [0.0, 0.0, 1 / 3]
    assert curve_aurc(line) == pytest.approx(1 / 9)


def test_ties_are_accepted_or_set_aside_together() -> None:
    scores, correct = [0.0, 0.0, 1.0, 1.0], [True, False, True, True]
    result = error_at_coverage(scores, correct, 0.25)
    assert result["accepted"] == 2 and result["coverage"] == 0.5 and result["error"] == 0.5
    assert select(scores, correct, 0.0)["accepted"] == 2
    assert select(scores, correct, -1e-12)["accepted"] == 0


@pytest.mark.parametrize("coverage", COVERAGES)
def test_the_coverage_threshold_is_the_inverted_cdf_quantile(coverage: float) -> None:
    scores = np.random.default_rng(2).integers(0, 40, size=333).astype(float)  # many ties
    threshold = threshold_for_coverage(scores, coverage)
    assert threshold == np.quantile(scores, coverage, method="inverted_cdf")
    assert np.mean(scores <= threshold) >= coverage > np.mean(scores < threshold)


def test_the_coverage_threshold_counts_exactly_despite_rounding() -> None:
    """0.07 * 100 is 7.000000000000001 in floating point: still the 7th smallest of 100, not the 8th."""
    scores = np.arange(100.0)
    assert threshold_for_coverage(scores, 0.07) == 6.0
    assert threshold_for_coverage(scores, 0.29) == 28.0  # 0.29 * 100 = 28.999999999999996
    assert threshold_for_coverage(scores, 0.071) == 7.0


def test_select_counts_and_wilson_interval() -> None:
    scores = np.arange(10.0)
    correct = np.array([1, 1, 1, 0, 1, 1, 0, 1, 0, 0], dtype=bool)
    result = select(scores, correct, 6.0)
    assert (result["accepted"], result["errors"], result["n_digits"]) == (7, 2, 10)
    assert result["coverage"] == 0.7 and result["error"] == pytest.approx(2 / 7)
    assert (result["error_low"], result["error_high"]) == wilson_interval(2, 7)
    none = select(scores, correct, -math.inf)
    assert none["accepted"] == 0 and none["coverage"] == 0.0 and math.isnan(none["error"])
    assert (none["error_low"], none["error_high"]) == (0.0, 1.0)
    assert select(scores, correct, math.inf)["accepted"] == 10


def test_largest_coverage_within_an_error_target() -> None:
    scores = [0.1, 0.2, 0.3, 0.4, 0.5]
    correct = [True, True, False, True, True]  # risks 0, 0, 1/3, 1/4, 1/5
    assert coverage_at_error(scores, correct, 0.25)["coverage"] == 1.0  # the last point is within 25%
    assert coverage_at_error(scores, correct, 0.2)["coverage"] == 1.0
    result = coverage_at_error(scores, correct, 0.1)
    assert result["coverage"] == 0.4 and result["errors"] == 0 and result["target_error"] == 0.1
    assert threshold_for_error(scores, correct, 0.0) == 0.2
    assert threshold_for_error([0.1, 0.2], [False, True], 0.001) == -math.inf
    assert coverage_at_error([0.1, 0.2], [False, True], 0.001)["coverage"] == 0.0


def test_threshold_fixed_on_calibration_digits_measured_on_test_digits() -> None:
    calibration = np.arange(100) / 100  # 0.00 .. 0.99
    threshold = threshold_for_coverage(calibration, 0.9)
    assert threshold == 0.89  # the 90th smallest
    test_scores = np.array([0.05, 0.5, 0.88, 0.89, 0.9, 0.95])
    test_correct = np.array([True, True, False, True, False, False])
    result = calibrated_selection(calibration, test_scores, test_correct, coverage=0.9)
    assert result["threshold"] == 0.89 and result["calibration_coverage"] == pytest.approx(0.9)
    assert result["target_coverage"] == 0.9
    assert result["accepted"] == 4 and result["coverage"] == pytest.approx(4 / 6)
    assert result["errors"] == 1 and result["error"] == 0.25


def test_calibrated_thresholds_hold_their_coverage_on_exchangeable_digits() -> None:
    """Calibration and test digits from one distribution: the test coverage lands near the target."""
    rng = np.random.default_rng(3)
    for coverage in (0.9, 0.99):
        reached = [calibrated_selection(rng.random(2000), rng.random(2000), np.ones(2000, bool),
                                        coverage=coverage)["coverage"] for _ in range(20)]
        assert abs(np.mean(reached) - coverage) < 0.005


def test_malformed_inputs_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="shape of `scores`"):
        risk_coverage_curve([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="finite"):
        aurc([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="non-empty"):
        aurc([], [])
    with pytest.raises(ValueError, match="0 and 1"):
        aurc([0.1, 0.2], [2, 0])
    for bad in (0, 1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match=r"`coverage` must be a number in \(0, 1\]"):
            threshold_for_coverage([0.1, 0.2], bad)
    with pytest.raises(ValueError, match="max_error"):
        threshold_for_error([0.1], [True], 1.5)
    with pytest.raises(ValueError, match="NaN"):
        select([0.1], [True], float("nan"))
