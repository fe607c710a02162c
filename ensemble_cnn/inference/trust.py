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
* **not a digit** -- the ``ood_score`` (default :data:`DEFAULT_OOD_SCORE`, ``energy+ink_area``:
  the members' energy on their logits, or the digit's ink area, is above its threshold) is above
  the threshold that lets ``digit_pass`` of the calibration digits through (default
  :data:`DEFAULT_DIGIT_PASS`, 99.5%): so about 0.5% of real digits are flagged too. A run trained
  before its calibration digits' ink areas were kept uses ``energy`` alone, and one trained before
  the members kept their energy :data:`FALLBACK_OOD_SCORE`.

A *combined* ``ood_score`` joins scores with ``+`` (:func:`ood_components`): each gets a threshold
at the same quantile of its calibration values, the smallest that still lets ``digit_pass`` of
the calibration digits pass every one of them, and a digit is flagged when any score is above
its own. Its single value per digit (:func:`combined_score`) is the largest of
``(value - above) / scale`` over the scores (``scale``: the threshold minus the median on the
calibration digits), so it is flagged exactly when that is above 0.

The label itself never changes: it is the vote's, whatever the flags say. A digit is
*answered* when it is neither unsure nor "not a digit". The thresholds hold for digits as the
calibration digits were seen, without test-time views (``tta="none"``).
"""
from __future__ import annotations

from collections.abc import Mapping
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ensemble_cnn.shares import check_share
from ensemble_cnn.storage.calibration import FEATURE_SCORE_COLUMNS
from ensemble_cnn.inference.conformal import conformal_quantile, conformity_scores, prediction_sets
from ensemble_cnn.inference.uncertainty import DEFAULT_SCORE, SCORE_NAMES, get_score
from ensemble_cnn.inference.vote import get_vote, soft_shares

__all__ = ["CONFORMAL_METHOD", "DEFAULT_COVERAGE", "DEFAULT_DIGIT_PASS", "DEFAULT_LEVEL", "DEFAULT_OOD_SCORE",
           "FALLBACK_OOD_SCORE", "INPUT_SCORES", "OOD_SCORES", "PLAIN_OOD_SCORE", "Thresholds", "Verdicts",
           "check_ood_score", "combined_score", "fit_components", "fit_thresholds", "judge", "ood_components",
           "set_text"]

DEFAULT_COVERAGE = 0.99
"""Share of calibration digits answered (not "unsure") at the default threshold."""
DEFAULT_LEVEL = 0.999
"""Conformal level of the label sets: each holds the true label with at least this probability."""
DEFAULT_DIGIT_PASS = 0.995
"""Share of calibration digits that pass the "not a digit" test (the issue's target: >= 99.5% of real digits)."""
DEFAULT_OOD_SCORE = "energy+ink_area"
"""The "not a digit" score, chosen on Fashion-MNIST's *training* images against calibration digits
(docs/uncertainty.md, three runs): the members' energy or the digit's ink area above its threshold
flags 91% of them at :data:`DEFAULT_DIGIT_PASS` (energy alone 69%); adding relative Mahalanobis
flags 1 point more, inside the runs' spread, and no exported model could carry it. Needs the
members' energy and the ink areas of the calibration digits, kept by runs trained since them."""
PLAIN_OOD_SCORE = "energy"
"""The "not a digit" score of a run whose calibration digits have no ink areas (trained before them)."""
FALLBACK_OOD_SCORE = "entropy"
"""The "not a digit" score of a run without the members' calibration scores (the best softmax score there)."""
INPUT_SCORES = ("ink_area",)
"""Scores of the digits themselves, not of a member (:func:`ensemble_cnn.inference.features.ink_area`)."""
CONFORMAL_METHOD = "lac"
"""The conformity score of the label sets (:data:`ensemble_cnn.inference.conformal.CONFORMITY_SCORES`)."""


OOD_SCORES = (*SCORE_NAMES, *FEATURE_SCORE_COLUMNS, *INPUT_SCORES)
"""Every single "not a digit" score: the softmax scores, the scores past the softmax and of the digits
themselves; a combined score joins some of them with ``+`` (:func:`ood_components`)."""


def ood_components(name: str) -> tuple[str, ...]:
    """The single scores of an ``ood_score``: ``"energy+ink_area"`` -> ``("energy", "ink_area")``."""
    return tuple(name.split("+"))


def check_ood_score(name: object) -> str:
    """``name`` if it is a score of :data:`OOD_SCORES` or several joined with ``+``, else a one-line ValueError."""
    parts = ood_components(name) if isinstance(name, str) else ()
    if not parts or any(part not in OOD_SCORES for part in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"ood_score must be one of {', '.join(OOD_SCORES)}, or several joined with + "
                         f"(the default {DEFAULT_OOD_SCORE}), got {name!r}")
    return name


def _component_values(name: str, probabilities: np.ndarray, given: ArrayLike | Mapping[str, ArrayLike] | None,
                      what: str) -> dict[str, np.ndarray]:
    """Each single score of ``ood_score`` ``name`` on some digits: from the probabilities or ``given``.

    ``given``: the values of the scores that are not softmax scores, as a mapping of name to (N,) values,
    or, for a single such score, its (N,) values.
    """
    values = {}
    for part in ood_components(name):
        if part in SCORE_NAMES:
            values[part] = get_score(part).function(probabilities)
            continue
        found = given.get(part) if isinstance(given, Mapping) else given
        if found is None:
            raise ValueError(f"ood_score {name!r} needs the {part} scores of the {what} digits: pass them")
        array = np.asarray(found, dtype=np.float64)
        if array.shape != (probabilities.shape[1],) or not np.isfinite(array).all():
            raise ValueError(f"{part} scores of the {what} digits must be {probabilities.shape[1]} finite numbers, "
                             f"got shape {array.shape}")
        values[part] = array
    return values


def combined_score(values: Mapping[str, ArrayLike], components: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """A combined "not a digit" score: the largest ``(value - above) / scale`` over its scores; above 0 = flagged.

    Parameters
    ----------
    values : mapping of str to array-like of shape (N,)
        Each single score's values.
    components : mapping of str to {"above": float, "scale": float}
        Each score's threshold and scale (:attr:`Thresholds.ood_components`).

    Returns
    -------
    ndarray of float64, shape (N,)

    Examples
    --------
    >>> combined_score({"a": [1.0, 3.0], "b": [0.2, 0.1]}, {"a": {"above": 2.0, "scale": 1.0},
    ...                                                     "b": {"above": 0.3, "scale": 0.1}}).round(6).tolist()
    [-1.0, 1.0]
    """
    return np.max([(np.asarray(values[name], dtype=np.float64) - rule["above"]) / rule["scale"]
                   for name, rule in components.items()], axis=0)


def fit_components(values: Mapping[str, np.ndarray], digit_pass: float) -> dict[str, dict[str, float]]:
    """Thresholds at one quantile of each score: the smallest that lets ``digit_pass`` of the digits pass all.

    Parameters
    ----------
    values : mapping of str to ndarray of shape (M,)
        Each score's values on the calibration digits (the same digits, in the same order).
    digit_pass : float
        In (0, 1).

    Returns
    -------
    dict of str to {"above": float, "scale": float}
        :attr:`Thresholds.ood_components`: each score's threshold (its ``k``-th smallest value, the
        same ``k`` for all) and scale (threshold minus median; the sd, or 1, if that is not positive).
    """
    n = len(next(iter(values.values())))
    ordered = {name: np.sort(v) for name, v in values.items()}
    k = max(1, math.ceil(digit_pass * n - 1e-9))
    while True:
        above = {name: float(v[k - 1]) for name, v in ordered.items()}
        passing = np.all([values[name] <= above[name] for name in values], axis=0).mean()
        if passing >= digit_pass or k == n:
            break
        k += 1
    components = {}
    for name, v in values.items():
        spread = above[name] - float(np.median(v))
        components[name] = {"above": above[name], "scale": spread if spread > 0 else float(np.std(v)) or 1.0}
    return components


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
        The "not a digit" score (one of :data:`OOD_SCORES`, or several joined with ``+``).
    digit_pass : float
        Target share of calibration digits that pass as digits.
    not_a_digit_above : float
        A digit whose ``ood_score`` is above this is flagged "not a digit" (0 for a combined score).
    n_calibration : int
        How many calibration digits fixed them.
    calibration_coverage : float
        The share of calibration digits the unsure threshold answers (at least ``coverage``).
    ood_components : dict or None
        For a combined ``ood_score``: each of its scores' ``{"above": threshold, "scale": ...}``
        (:func:`combined_score`); ``None`` for a single score.
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
    ood_components: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an infinite set threshold becomes ``None``: every label)."""
        data = asdict(self)
        if not np.isfinite(self.set_threshold):
            data["set_threshold"] = None
        return data

    def describe(self) -> str:
        """One line: how the flags are set, e.g. for the end of a predict table."""
        return (f"unsure: {self.score} above {self.unsure_above:.4g} (answers {self.coverage:.1%} of "
                f"{self.n_calibration} calibration digits); sets at {self.level:.1%}; not a digit: "
                f"{self.not_a_digit_rule()} (passes {self.digit_pass:.1%} of them)")

    def not_a_digit_rule(self) -> str:
        """The "not a digit" rule in words: ``"energy above -2.6 or ink_area above 0.353"``."""
        if self.ood_components:
            return " or ".join(f"{name} above {part['above']:.4g}" for name, part in self.ood_components.items())
        return f"{self.ood_score} above {self.not_a_digit_above:.4g}"


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
                   ood_calibration: ArrayLike | Mapping[str, ArrayLike] | None = None) -> Thresholds:
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
    ood_calibration : mapping of str to array-like of shape (M,), or array-like of shape (M,), optional
        The values on the calibration digits of each score of ``ood_score`` that is not a softmax
        score: the committee's score past the softmax (the members' mean,
        :attr:`~ensemble_cnn.storage.calibration.CalibrationSet.feature_scores`), the digits' ink area
        (:attr:`~ensemble_cnn.storage.calibration.CalibrationSet.ink_area`); an array for a single one.

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
    values = _component_values(ood_score, proba, ood_calibration, "calibration")
    components = fit_components(values, digit_pass) if len(values) > 1 else None
    not_a_digit_above = 0.0 if components else threshold_for_coverage(values[ood_score], digit_pass)
    return Thresholds(score=score, coverage=coverage, unsure_above=unsure_above, level=level,
                      set_threshold=set_threshold, ood_score=ood_score, digit_pass=digit_pass,
                      not_a_digit_above=not_a_digit_above, n_calibration=int(proba.shape[1]),
                      calibration_coverage=float(np.mean(unsure_scores <= unsure_above)), ood_components=components)


def judge(probabilities: ArrayLike, thresholds: Thresholds, *, voting: str = "majority",
          ood_scores: ArrayLike | Mapping[str, ArrayLike] | None = None) -> Verdicts:
    """Apply ``thresholds`` to digits: their labels, conformal sets and flags.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, 10)
        The members' probabilities on the digits (the same members, without test-time views,
        as those of the calibration digits).
    thresholds : Thresholds
    voting : str, default "majority"
        The vote that labels the digits.
    ood_scores : mapping of str to array-like of shape (N,), or array-like of shape (N,), optional
        The digits' values of each score of ``thresholds.ood_score`` that is not a softmax score
        (as ``fit_thresholds``' ``ood_calibration``).

    Returns
    -------
    Verdicts
    """
    proba = np.asarray(probabilities)
    labels = get_vote(voting).labels(proba).astype(np.int64)
    sets = prediction_sets(soft_shares(proba), thresholds.set_threshold, method=CONFORMAL_METHOD)
    scores = get_score(thresholds.score).function(proba)
    values = _component_values(thresholds.ood_score, proba, ood_scores, "judged")
    ood_values = (combined_score(values, thresholds.ood_components) if thresholds.ood_components
                  else values[thresholds.ood_score])
    unsure = (scores > thresholds.unsure_above) | ~sets.any(axis=1)
    return Verdicts(labels=labels, sets=sets, scores=scores, ood_scores=ood_values, unsure=unsure,
                    not_a_digit=ood_values > thresholds.not_a_digit_above, thresholds=thresholds,
                    probabilities=proba)
