"""When to trust an answer: "unsure" and "not a digit" flags and conformal label sets, fixed on calibration digits.

A run trained with ``--holdout shared`` (the default) keeps its *calibration digits*: labelled
training digits that no member trained on, with every member's probabilities on them
(:mod:`ensemble_cnn.storage.calibration`). Three thresholds are fixed on them once
(:func:`fit_thresholds`) and then applied to any digit (:func:`judge`):

* **unsure** -- the committee's uncertainty ``score`` (:data:`~ensemble_cnn.inference.uncertainty.SCORES`,
  default :data:`~ensemble_cnn.inference.uncertainty.DEFAULT_SCORE`) is above the threshold that
  answers ``coverage`` of the calibration digits (default :data:`DEFAULT_COVERAGE`, 99%), or the
  conformal set below is empty (no label fits: never shown as an answer);
* **set** -- the split-conformal label set at ``level`` (default :data:`DEFAULT_LEVEL`, 99.9%):
  it holds the true label of a digit drawn like the calibration digits with probability at
  least ``level`` (:mod:`ensemble_cnn.inference.conformal`, LAC on the soft vote's mean);
* **not a digit** -- the ``ood_score`` (default :data:`DEFAULT_OOD_SCORE`, ``energy`` on the members'
  logits; :data:`FALLBACK_OOD_SCORE` for a run trained before the members kept it) is above the
  threshold that lets ``digit_pass`` of the calibration digits through (default
  :data:`DEFAULT_DIGIT_PASS`, 99.5%): so about 0.5% of real digits are flagged too.

The label itself never changes: it is the vote's, whatever the flags say. A digit is
*answered* when it is neither unsure nor "not a digit". The thresholds hold for digits as the
calibration digits were seen, without test-time views (``tta="none"``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ensemble_cnn.storage.calibration import FEATURE_SCORE_COLUMNS
from ensemble_cnn.inference.conformal import conformal_quantile, conformity_scores, prediction_sets
from ensemble_cnn.inference.uncertainty import DEFAULT_SCORE, SCORE_NAMES, get_score
from ensemble_cnn.inference.vote import get_vote, soft_shares

__all__ = ["CONFORMAL_METHOD", "DEFAULT_COVERAGE", "DEFAULT_DIGIT_PASS", "DEFAULT_LEVEL", "DEFAULT_OOD_SCORE",
           "FALLBACK_OOD_SCORE", "OOD_SCORES", "Thresholds", "Verdicts", "check_ood_score", "check_share",
           "fit_thresholds", "judge", "set_text"]

DEFAULT_COVERAGE = 0.99
"""Share of calibration digits answered (not "unsure") at the default threshold."""
DEFAULT_LEVEL = 0.999
"""Conformal level of the label sets: each holds the true label with at least this probability."""
DEFAULT_DIGIT_PASS = 0.995
"""Share of calibration digits that pass the "not a digit" test (the issue's target: >= 99.5% of real digits)."""
DEFAULT_OOD_SCORE = "energy"
"""The "not a digit" score, chosen on Fashion-MNIST's *training* images against calibration digits
(docs/uncertainty.md): the one that flags the most of them at :data:`DEFAULT_DIGIT_PASS` (74% against
66% for relative Mahalanobis, which ranks them better overall, and 58% for the best softmax score).
A score past the softmax (:data:`ensemble_cnn.storage.calibration.FEATURE_SCORE_COLUMNS`): it needs
the members' scores on the calibration digits, kept by runs trained since these scores."""
FALLBACK_OOD_SCORE = "entropy"
"""The "not a digit" score of a run without the members' calibration scores (the best softmax score there)."""
CONFORMAL_METHOD = "lac"
"""The conformity score of the label sets (:data:`ensemble_cnn.inference.conformal.CONFORMITY_SCORES`)."""


OOD_SCORES = (*SCORE_NAMES, *FEATURE_SCORE_COLUMNS)
"""Every "not a digit" score: the softmax scores and the scores past the softmax."""


def check_ood_score(name: object) -> str:
    """``name`` if it is in :data:`OOD_SCORES`, else a one-line ValueError naming the choices."""
    if not isinstance(name, str) or name not in OOD_SCORES:
        raise ValueError(f"ood_score must be one of {', '.join(OOD_SCORES)}, got {name!r}")
    return name


def _ood_values(name: str, probabilities: np.ndarray, given: ArrayLike | None, what: str) -> np.ndarray:
    """The "not a digit" score ``name`` of some digits: from the probabilities (a softmax score) or ``given``."""
    if name in SCORE_NAMES:
        return get_score(name).function(probabilities)
    if given is None:
        raise ValueError(f"ood_score {name!r} is a score past the softmax: pass its values on the {what} digits")
    values = np.asarray(given, dtype=np.float64)
    if values.shape != (probabilities.shape[1],) or not np.isfinite(values).all():
        raise ValueError(f"{name} scores of the {what} digits must be {probabilities.shape[1]} finite numbers, "
                         f"got shape {values.shape}")
    return values


def check_share(value: object, name: str) -> float:
    """``value`` as a float if it is a number in (0, 1), else a one-line ValueError naming ``name``."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (numeric and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a number between 0 and 1 (exclusive), e.g. 0.99; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Thresholds:
    """The thresholds fixed on a run's calibration digits (:func:`fit_thresholds`).

    Attributes
    ----------
    score : str
        The uncertainty score of the "unsure" flag.
    coverage : float
        Target share of calibration digits answered.
    unsure_above : float
        A digit whose ``score`` is above this is unsure.
    level : float
        The conformal level of the label sets.
    set_threshold : float
        The conformal quantile of the LAC scores (``inf``: every label, too few calibration
        digits for ``level``).
    ood_score : str
        The "not a digit" score.
    digit_pass : float
        Target share of calibration digits that pass as digits.
    not_a_digit_above : float
        A digit whose ``ood_score`` is above this is flagged "not a digit".
    n_calibration : int
        How many calibration digits fixed them.
    calibration_coverage : float
        The share of calibration digits the unsure threshold answers (at least ``coverage``).
    """

    score: str
    coverage: float
    unsure_above: float
    level: float
    set_threshold: float
    ood_score: str
    digit_pass: float
    not_a_digit_above: float
    n_calibration: int
    calibration_coverage: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an infinite set threshold becomes ``None``: every label)."""
        data = asdict(self)
        if not np.isfinite(self.set_threshold):
            data["set_threshold"] = None
        return data

    def describe(self) -> str:
        """One line: how the flags are set, e.g. for the end of a predict table."""
        return (f"unsure: {self.score} above {self.unsure_above:.4g} (answers {self.coverage:.1%} of "
                f"{self.n_calibration} calibration digits); sets at {self.level:.1%}; not a digit: {self.ood_score} "
                f"above {self.not_a_digit_above:.4g} (passes {self.digit_pass:.1%} of them)")


@dataclass
class Verdicts:
    """What the committee says of each digit, beside its label (:func:`judge`).

    Attributes
    ----------
    labels : ndarray of int64, shape (N,)
        The vote's labels (unchanged by any flag).
    sets : ndarray of bool, shape (N, 10)
        ``sets[n, c]``: label ``c`` is in digit ``n``'s conformal set.
    scores : ndarray of float64, shape (N,)
        The "unsure" score of each digit (higher: less trustworthy).
    ood_scores : ndarray of float64, shape (N,)
        The "not a digit" score of each digit.
    unsure : ndarray of bool, shape (N,)
        Score above the threshold, or an empty set.
    not_a_digit : ndarray of bool, shape (N,)
    thresholds : Thresholds
    probabilities : ndarray of float32, shape (K, N, 10)
        The members' probabilities the verdicts came from.
    """

    labels: np.ndarray
    sets: np.ndarray
    scores: np.ndarray
    ood_scores: np.ndarray
    unsure: np.ndarray
    not_a_digit: np.ndarray
    thresholds: Thresholds
    probabilities: np.ndarray

    @property
    def answered(self) -> np.ndarray:
        """bool (N,): neither unsure nor "not a digit"."""
        return ~(self.unsure | self.not_a_digit)

    def summary(self) -> str:
        """One line: ``N answered, M set aside (U unsure, D not a digit)`` (a digit may be both)."""
        n, answered = len(self.labels), int(self.answered.sum())
        return (f"{answered} of {n} answered, {n - answered} set aside ({int(self.unsure.sum())} unsure, "
                f"{int(self.not_a_digit.sum())} not a digit)")


def set_text(row: ArrayLike) -> str:
    """A label set as text: ``"4 9"``; an empty set is ``"-"`` (no label fits)."""
    labels = np.flatnonzero(np.asarray(row, dtype=bool))
    return " ".join(map(str, labels)) if labels.size else "-"


def fit_thresholds(probabilities: ArrayLike, labels: ArrayLike, *, voting: str = "majority",
                   score: str = DEFAULT_SCORE, coverage: float = DEFAULT_COVERAGE, level: float = DEFAULT_LEVEL,
                   ood_score: str = DEFAULT_OOD_SCORE, digit_pass: float = DEFAULT_DIGIT_PASS,
                   ood_calibration: ArrayLike | None = None) -> Thresholds:
    """Fix the three thresholds on calibration digits.

    Parameters
    ----------
    probabilities : array-like of shape (K, M, 10)
        The members' probabilities on ``M >= 1`` calibration digits
        (:attr:`ensemble_cnn.storage.calibration.CalibrationSet.probabilities`).
    labels : array-like of shape (M,)
        Their true labels.
    voting : str, default "majority"
        The vote whose answers are judged (recorded only; the scores do not depend on it).
    score : str
        A name in :data:`~ensemble_cnn.inference.uncertainty.SCORES`.
    ood_score : str
        A name in :data:`OOD_SCORES`; a score past the softmax needs ``ood_calibration``.
    coverage, digit_pass, level : float
        In (0, 1).
    ood_calibration : array-like of shape (M,), optional
        The committee's ``ood_score`` on the calibration digits, for a score past the softmax
        (the members' mean, :attr:`~ensemble_cnn.storage.calibration.CalibrationSet.feature_scores`).

    Returns
    -------
    Thresholds

    Raises
    ------
    ValueError
        One line: an unknown score, a share outside (0, 1), no calibration digit, or malformed
        probabilities or labels.
    """
    get_vote(voting)
    unsure_rule, ood_score = get_score(score), check_ood_score(ood_score)
    coverage, level = check_share(coverage, "coverage"), check_share(level, "level")
    digit_pass = check_share(digit_pass, "digit_pass")
    from ensemble_cnn.evaluation.selective import threshold_for_coverage  # scikit-learn: imported when used
    proba = np.asarray(probabilities)
    if proba.ndim != 3 or proba.shape[1] == 0:
        raise ValueError(f"thresholds need the members' probabilities on at least one calibration digit, "
                         f"shape (K, M >= 1, 10); got shape {proba.shape}")
    unsure_scores = unsure_rule.function(proba)
    unsure_above = threshold_for_coverage(unsure_scores, coverage)
    set_threshold = conformal_quantile(conformity_scores(soft_shares(proba), labels, method=CONFORMAL_METHOD), level)
    not_a_digit_above = threshold_for_coverage(_ood_values(ood_score, proba, ood_calibration, "calibration"),
                                               digit_pass)
    return Thresholds(score=score, coverage=coverage, unsure_above=unsure_above, level=level,
                      set_threshold=set_threshold, ood_score=ood_score, digit_pass=digit_pass,
                      not_a_digit_above=not_a_digit_above, n_calibration=int(proba.shape[1]),
                      calibration_coverage=float(np.mean(unsure_scores <= unsure_above)))


def judge(probabilities: ArrayLike, thresholds: Thresholds, *, voting: str = "majority",
          ood_scores: ArrayLike | None = None) -> Verdicts:
    """Apply ``thresholds`` to digits: their labels, conformal sets and flags.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, 10)
        The members' probabilities on the digits (the same members, without test-time views,
        as those of the calibration digits).
    thresholds : Thresholds
    voting : str, default "majority"
        The vote that labels the digits.
    ood_scores : array-like of shape (N,), optional
        The committee's ``thresholds.ood_score`` on the digits, when it is a score past the softmax.

    Returns
    -------
    Verdicts
    """
    proba = np.asarray(probabilities)
    labels = get_vote(voting).labels(proba).astype(np.int64)
    sets = prediction_sets(soft_shares(proba), thresholds.set_threshold, method=CONFORMAL_METHOD)
    scores = get_score(thresholds.score).function(proba)
    ood_values = _ood_values(thresholds.ood_score, proba, ood_scores, "judged")
    unsure = (scores > thresholds.unsure_above) | ~sets.any(axis=1)
    return Verdicts(labels=labels, sets=sets, scores=scores, ood_scores=ood_values, unsure=unsure,
                    not_a_digit=ood_values > thresholds.not_a_digit_above, thresholds=thresholds,
                    probabilities=proba)
