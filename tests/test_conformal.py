"""Split conformal prediction sets (ensemble_cnn/inference/conformal.py): hand computations, the coverage guarantee
on synthetic exchangeable data, and the same sets as MAPIE (a test-only reference) on the same probabilities,
including MAPIE handed the real Ensemble of the session's ``trained_run``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ensemble_cnn.inference.conformal import (
    CONFORMITY_SCORES, aps_label_scores, conformal_quantile, conformity_scores, empty_sets, get_conformity_score,
    lac_label_scores, prediction_sets, set_statistics,
)

# Dyadic probabilities: every 1 - p below is exact in floating point, so the ties are real ties.
CALIBRATION = np.array([[0.875, 0.125, 0.0], [0.5, 0.5, 0.0], [0.25, 0.75, 0.0], [0.0, 0.375, 0.625]])
CALIBRATION_LABELS = np.array([0, 1, 1, 2])  # LAC scores 0.125, 0.5, 0.25, 0.375


def test_hand_computed_lac_sets() -> None:
    scores = conformity_scores(CALIBRATION, CALIBRATION_LABELS)
    assert scores.tolist() == [0.125, 0.5, 0.25, 0.375]
    threshold = conformal_quantile(scores, 0.5)  # k = ceil(5 * 0.5) = 3: the 3rd smallest
    assert threshold == 0.375
    test = np.array([[0.75, 0.25, 0.0], [0.5, 0.25, 0.25], [0.625, 0.0, 0.375], [0.625, 0.3125, 0.0625]])
    sets = prediction_sets(test, threshold)  # every label with p >= 0.625
    assert sets.tolist() == [[True, False, False], [False, False, False], [True, False, False],
                             [True, False, False]]
    assert empty_sets(sets).tolist() == [False, True, False, False]
    assert conformal_quantile(scores, 0.8) == 0.5  # k = 4 = n: the largest
    full = prediction_sets(test, conformal_quantile(scores, 0.81))  # k = ceil(4.05) = 5 > 4: no score is enough
    assert conformal_quantile(scores, 0.81) == math.inf and full.all()
    assert conformal_quantile(scores, 0.2) == 0.125  # k = 1


def test_hand_computed_aps_scores_and_sets() -> None:
    probabilities = np.array([[0.5, 0.25, 0.25], [0.625, 0.25, 0.125], [0.125, 0.125, 0.75]])
    np.testing.assert_array_equal(aps_label_scores(probabilities),
                                  [[0.5, 1.0, 1.0], [0.625, 0.875, 1.0], [1.0, 1.0, 0.75]])  # ties count together
    assert conformity_scores(probabilities, [1, 0, 2], method="aps").tolist() == [1.0, 0.625, 0.75]
    sets = prediction_sets(probabilities, 0.875, method="aps")
    assert sets.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    assert prediction_sets(probabilities, 0.5, method="aps").sum(axis=1).tolist() == [1, 0, 0]
    np.testing.assert_array_equal(lac_label_scores(probabilities), 1 - probabilities)


def test_the_quantile_counts_exactly_despite_rounding() -> None:
    """(99 + 1) * 0.07 is 7.000000000000001 in floating point: k is 7, the 7th smallest, not the 8th."""
    scores = np.arange(99.0)
    assert conformal_quantile(scores, 0.07) == 6.0
    assert conformal_quantile(scores, 0.29) == 28.0
    assert conformal_quantile(scores, 0.99) == 98.0  # k = 99 = n
    assert conformal_quantile(scores, 0.991) == math.inf


def test_set_statistics_by_hand() -> None:
    sets = np.array([[True, False, False], [False, False, False], [True, True, False], [False, True, False]])
    stats = set_statistics(sets, [0, 1, 1, 0])
    assert stats == {"n_digits": 4, "mean_size": 1.0, "singletons": 0.5, "empty": 0.25, "coverage": 0.5}
    assert "coverage" not in set_statistics(sets)


def synthetic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` exchangeable digits: Dirichlet probabilities over 10 classes, labels drawn from a sharpened copy of them
    (the model is miscalibrated: the guarantee must not depend on calibration)."""
    probabilities = rng.dirichlet(np.full(10, 0.2), size=n)
    sharp = probabilities ** 2 / np.sum(probabilities ** 2, axis=1, keepdims=True)
    labels = (sharp.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=9)
    return probabilities, labels


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_coverage_on_exchangeable_data_is_at_least_the_level(level: float) -> None:
    """Over 100 calibration draws of n = 500, the mean coverage of each method is k / (n + 1), in
    [level, level + 1/(n + 1)] (continuous scores, no ties); the Monte-Carlo slack is 4 standard errors."""
    rng = np.random.default_rng(int(level * 1000))
    n, n_test, trials = 500, 1000, 100
    coverages: dict[str, list[float]] = {method: [] for method in CONFORMITY_SCORES}
    sizes: dict[str, list[float]] = {method: [] for method in CONFORMITY_SCORES}
    for _ in range(trials):
        probabilities, labels = synthetic(rng, n + n_test)
        for method in CONFORMITY_SCORES:
            threshold = conformal_quantile(conformity_scores(probabilities[:n], labels[:n], method=method), level)
            stats = set_statistics(prediction_sets(probabilities[n:], threshold, method=method), labels[n:])
            coverages[method].append(stats["coverage"])
            sizes[method].append(stats["mean_size"])
    for method, reached in coverages.items():
        slack = 4 * np.std(reached) / math.sqrt(trials)
        assert np.mean(reached) >= level - slack, method
        assert np.mean(reached) <= level + 1 / (n + 1) + slack, f"{method}: larger sets than the guarantee needs"
        assert np.mean(sizes[method]) < 10, f"{method}: full sets would cover trivially"


def test_malformed_inputs_are_one_line_errors() -> None:
    for bad in (0, 1, 1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match=r"`level` must be a number in \(0, 1\)"):
            conformal_quantile([0.1, 0.2], bad)
    with pytest.raises(ValueError, match="non-empty finite"):
        conformal_quantile([], 0.9)
    with pytest.raises(ValueError, match="non-empty finite"):
        conformal_quantile([0.1, np.nan], 0.9)
    with pytest.raises(ValueError, match="method must be one of lac, aps, got 'raps'"):
        get_conformity_score("raps")
    with pytest.raises(ValueError, match="labels"):
        conformity_scores(CALIBRATION, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="labels"):
        conformity_scores(CALIBRATION, [0, 1])
    with pytest.raises(ValueError, match="2-D"):
        prediction_sets(np.ones((2, 3, 10)), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        prediction_sets(CALIBRATION, float("nan"))
    with pytest.raises(ValueError, match="boolean"):
        empty_sets(np.ones((2, 3)))


# --------------------------------------------------------------------------- MAPIE, the reference
def fixed_probability_classifier(probabilities: np.ndarray):
    """A prefit scikit-learn classifier whose ``predict_proba`` looks fixed probabilities up by row (X = indices)."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class FixedProbabilities(ClassifierMixin, BaseEstimator):
        def __init__(self, table: np.ndarray | None = None) -> None:
            self.table = table

        def fit(self, X, y=None):  # noqa: N803 - scikit-learn's names
            self.classes_ = np.arange(self.table.shape[1])
            return self

        def predict_proba(self, X):  # noqa: N803
            return self.table[np.asarray(X).ravel().astype(int)]

        def predict(self, X):  # noqa: N803
            return self.predict_proba(X).argmax(axis=1)

    return FixedProbabilities(probabilities).fit(None)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
def test_the_sets_are_mapies_on_the_same_probabilities(level: float) -> None:
    mapie = pytest.importorskip("mapie")
    from mapie.classification import SplitConformalClassifier

    assert int(mapie.__version__.split(".")[0]) >= 1
    probabilities, labels = synthetic(np.random.default_rng(7), 1500)
    calibration, test = np.arange(500), np.arange(500, 1500)  # (501 * level) is never a whole number here
    reference = SplitConformalClassifier(fixed_probability_classifier(probabilities), confidence_level=level,
                                         conformity_score="lac", prefit=True)
    reference.conformalize(calibration[:, None], labels[calibration])
    _, mapie_sets = reference.predict_set(test[:, None])

    scores = conformity_scores(probabilities[calibration], labels[calibration])
    np.testing.assert_allclose(scores, np.ravel(reference.conformity_scores), rtol=0, atol=1e-15)
    sets = prediction_sets(probabilities[test], conformal_quantile(scores, level))
    assert mapie_sets.shape == (1000, 10, 1)
    assert np.array_equal(sets, mapie_sets[:, :, 0])
    assert 1 < sets.sum(axis=1).mean() < 10  # neither trivially small nor full


def test_mapie_takes_the_ensemble_itself_and_gives_the_same_sets(trained_run: Path, small_mnist_npz: Path) -> None:
    """MAPIE's prefit path duck-types the estimator (classes_, predict_proba, predict): the Ensemble needs no
    wrapper. The package still computes its sets itself, from probabilities it already has (MAPIE would run every
    member again on the calibration and the test digits)."""
    pytest.importorskip("mapie")
    from mapie.classification import SplitConformalClassifier

    from ensemble_cnn.inference.ensemble import Ensemble

    ensemble = Ensemble.load(trained_run, voting="soft")
    with np.load(small_mnist_npz) as npz:
        x, y = npz["x_test"][:600], npz["y_test"][:600]
    reference = SplitConformalClassifier(ensemble, confidence_level=0.9, conformity_score="lac", prefit=True)
    reference.conformalize(x[:300], y[:300])
    _, mapie_sets = reference.predict_set(x[300:])

    probabilities = ensemble.predict_proba(x)
    threshold = conformal_quantile(conformity_scores(probabilities[:300], y[:300]), 0.9)
    assert np.array_equal(prediction_sets(probabilities[300:], threshold), mapie_sets[:, :, 0])
