"""Selective prediction: answer the digits the committee is sure of, set the others aside.

Pure NumPy (and :func:`ensemble_cnn.evaluation.stats.wilson_interval`), on one uncertainty score
per digit (:data:`ensemble_cnn.inference.uncertainty.SCORES`: higher means less trustworthy) and
whether the vote got each digit right. One rule everywhere: **a digit is answered (accepted)
when its score is at most the threshold**, set aside above it. Digits of equal score are
therefore accepted or set aside together (a tie is one block, never split by the order of the
digits).

* :func:`risk_coverage_curve` -- error among the accepted digits (risk) against the share
  accepted (coverage), one point per distinct score; :func:`oracle_curve` -- the best any score
  could do on the same digits (errors scored highest, each digit its own block);
* :func:`aurc` / :func:`curve_aurc` -- the area under a risk-coverage curve;
* :func:`select` -- what a threshold gives on some digits: coverage, error, its 95% Wilson
  interval and the number of errors it rests on;
* :func:`threshold_for_coverage` -- the threshold accepting at least a share of some digits
  (their score quantile); :func:`threshold_for_error` -- the threshold of the largest coverage
  whose error is at most a target;
* :func:`error_at_coverage`, :func:`coverage_at_error` -- both, measured on the digits that set
  them (optimistic: the threshold has seen the answers);
* :func:`calibrated_selection` -- the honest figure: a threshold fixed on calibration digits
  for a target coverage, applied to test digits. For an error target, fix the threshold with
  ``threshold_for_error(cal_scores, cal_correct, target)`` and measure it with
  ``select(test_scores, test_correct, threshold)``.

Coverages, risks and errors are fractions in [0, 1].
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

from ensemble_cnn.evaluation.stats import _check_correct, wilson_interval
from ensemble_cnn.shares import check_share

__all__ = [
    "aurc", "calibrated_selection", "coverage_at_error", "curve_aurc", "error_at_coverage", "error_auroc",
    "oracle_curve",
    "risk_coverage_curve", "select", "threshold_for_coverage", "threshold_for_error",
]


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """Validate per-digit scores: a non-empty, finite, 1-D numeric array.

    Returns
    -------
    scores : ndarray of shape (N,), dtype float64
    """
    try:
        values = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a numeric array; got {exc}") from None
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array of shape (N,); got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"`{name}` must be finite; got NaN or infinity")
    return values


def _check_scored(scores: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate scores and correctness of the same digits.

    Returns
    -------
    scores : ndarray of shape (N,), float64
    correct : ndarray of shape (N,), bool
    """
    values = _check_scores(scores)
    right = _check_correct(correct, "correct")
    if right.shape != values.shape:
        raise ValueError(f"`correct` must have the shape of `scores` {values.shape}; got shape {right.shape}")
    return values, right


def _smallest_count(n: int, share: float) -> int:
    """The smallest ``k`` in ``1 .. n`` with ``k / n >= share`` (as floats, exactly), ``share`` in (0, 1]."""
    k = min(n, max(1, math.ceil(share * n)))
    while k > 1 and (k - 1) / n >= share:
        k -= 1
    while k < n and k / n < share:
        k += 1
    return k


# --------------------------------------------------------------------------- #
# Curves
# --------------------------------------------------------------------------- #
def risk_coverage_curve(scores: ArrayLike, correct: ArrayLike) -> dict[str, np.ndarray]:
    """The risk-coverage curve: the error among the accepted digits against the share accepted.

    Digits are accepted in order of increasing score, all digits of one score together (a
    tie is one block), so the curve has one point per distinct score ``t``: the digits with
    ``score <= t`` accepted. The last point accepts every digit (coverage 1, the vote's error).

    Parameters
    ----------
    scores : array-like of shape (N,)
        One uncertainty score per digit, higher = less trustworthy. Finite, ``N >= 1``.
    correct : array-like of shape (N,)
        Whether the vote got each digit right: boolean, or 0/1.

    Returns
    -------
    curve : dict of ndarray, each of shape (M,), M = number of distinct scores
        ``threshold`` (float64, increasing): the distinct scores; ``accepted`` and ``errors``
        (int64): digits with ``score <= threshold`` and the wrong ones among them;
        ``coverage`` = ``accepted / N`` and ``risk`` = ``errors / accepted`` (float64).

    Raises
    ------
    ValueError
        If an input is malformed or the lengths differ.

    Examples
    --------
    >>> curve = risk_coverage_curve([0.1, 0.5, 0.5, 0.9], [True, True, False, False])
    >>> curve["coverage"].tolist(), curve["risk"].tolist()
    ([0.25, 0.75, 1.0], [0.0, 0.3333333333333333, 0.5])
    """
    values, right = _check_scored(scores, correct)
    order = np.argsort(values, kind="stable")
    sorted_scores = values[order]
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))  # last index of each block
    accepted = (ends + 1).astype(np.int64)
    errors = np.cumsum(~right[order], dtype=np.int64)[ends]
    return {
        "threshold": sorted_scores[ends],
        "accepted": accepted,
        "errors": errors,
        "coverage": accepted / values.shape[0],
        "risk": errors / accepted,
    }


def oracle_curve(correct: ArrayLike) -> dict[str, np.ndarray]:
    """The best risk-coverage curve on these digits: every right digit accepted before any wrong one.

    The curve of a score that puts the errors last, each digit its own block: at coverage
    ``i / N`` (``i = 1 .. N``) the risk is ``max(0, i - R) / i``, ``R`` the number of right
    digits (zero up to the vote's accuracy, then rising to its error at coverage 1).

    Parameters
    ----------
    correct : array-like of shape (N,)
        Whether the vote got each digit right: boolean, or 0/1; ``N >= 1``.

    Returns
    -------
    curve : dict of ndarray, each of shape (N,)
        ``accepted``, ``errors`` (int64), ``coverage``, ``risk`` (float64), as in
        :func:`risk_coverage_curve` (without thresholds: the oracle has no score).
    """
    right = _check_correct(correct, "correct")
    n = right.shape[0]
    accepted = np.arange(1, n + 1, dtype=np.int64)
    errors = np.maximum(0, accepted - int(right.sum()))
    return {"accepted": accepted, "errors": errors, "coverage": accepted / n, "risk": errors / accepted}


def curve_aurc(curve: dict[str, np.ndarray]) -> float:
    """Area under a risk-coverage curve (:func:`risk_coverage_curve` or :func:`oracle_curve`), as a step function.

    ``AURC = sum_j (coverage_j - coverage_{j-1}) * risk_j`` with ``coverage_0 = 0``: each block
    of tied digits weighs its share of the digits and carries the risk once it is accepted.
    Without ties this is Geifman et al.'s ``(1/N) sum_i risk(i/N)``.

    Returns
    -------
    aurc : float
        In [0, 1]; lower is better.
    """
    coverage = np.asarray(curve["coverage"], dtype=np.float64)
    risk = np.asarray(curve["risk"], dtype=np.float64)
    return float(np.sum(np.diff(coverage, prepend=0.0) * risk))


def aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk-coverage curve of ``scores`` (see :func:`curve_aurc`).

    Parameters
    ----------
    scores : array-like of shape (N,)
        One uncertainty score per digit, higher = less trustworthy.
    correct : array-like of shape (N,)
        Whether the vote got each digit right.

    Returns
    -------
    aurc : float
        In [0, 1]; lower is better. A score that says nothing (all equal) gives the vote's
        error; the oracle gives ``curve_aurc(oracle_curve(correct))``.

    Examples
    --------
    >>> aurc([0.1, 0.5, 0.5, 0.9], [True, True, False, False])  # 0.25*0 + 0.5*(1/3) + 0.25*0.5
    0.29166666666666663
    """
    return curve_aurc(risk_coverage_curve(scores, correct))


def error_auroc(scores: ArrayLike, correct: ArrayLike) -> float | None:
    """How well a score finds the vote's errors: the AUROC of the score with the wrong answers as positives.

    The probability that a wrong answer scores higher than a right one (ties count one half);
    1 perfect, 0.5 chance (Hendrycks & Gimpel's error-detection AUROC).

    Parameters
    ----------
    scores : array-like of shape (N,)
        One uncertainty score per digit, higher = less trustworthy.
    correct : array-like of shape (N,)
        Whether the vote got each digit right.

    Returns
    -------
    auroc : float or None
        ``None`` when every answer is right, or every one wrong (nothing to tell apart).
    """
    values, right = _check_scored(scores, correct)
    if right.all() or not right.any():
        return None
    return float(roc_auc_score(~right, values))


# --------------------------------------------------------------------------- #
# Thresholds and what they give
# --------------------------------------------------------------------------- #
def select(scores: ArrayLike, correct: ArrayLike, threshold: float, *, confidence: float = 0.95) -> dict[str, float]:
    """What a threshold gives on some digits: those with ``score <= threshold`` are answered.

    Parameters
    ----------
    scores : array-like of shape (N,)
        One uncertainty score per digit, higher = less trustworthy.
    correct : array-like of shape (N,)
        Whether the vote got each digit right.
    threshold : float
        Accept digits whose score is at most this (``-inf`` accepts none, ``inf`` every one).
    confidence : float, default=0.95
        Level of the Wilson interval of the error.

    Returns
    -------
    dict
        ``threshold``; ``n_digits`` (N); ``accepted``; ``errors``: the wrong digits among the
        accepted, the count the error rests on; ``coverage`` = ``accepted / N``; ``error`` =
        ``errors / accepted`` with its Wilson interval ``error_low``, ``error_high``
        (:func:`ensemble_cnn.evaluation.stats.wilson_interval`). With no digit accepted the
        error is NaN and its interval (0, 1).

    Raises
    ------
    ValueError
        If an input is malformed, or ``threshold`` is NaN.
    """
    values, right = _check_scored(scores, correct)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("`threshold` must be a number; got NaN")
    taken = values <= threshold
    accepted = int(taken.sum())
    errors = int(np.count_nonzero(taken & ~right))
    if accepted:
        error = errors / accepted
        low, high = wilson_interval(errors, accepted, confidence=confidence)
    else:
        error, (low, high) = math.nan, (0.0, 1.0)
    return {"threshold": threshold, "n_digits": int(values.shape[0]), "accepted": accepted, "errors": errors,
            "coverage": accepted / values.shape[0], "error": error, "error_low": low, "error_high": high}


def threshold_for_coverage(scores: ArrayLike, coverage: float) -> float:
    """The smallest score ``t`` of these digits with at least ``coverage`` of them at ``score <= t``.

    The ``coverage`` quantile of the scores, "inverted CDF" (``numpy.quantile(scores, coverage,
    method="inverted_cdf")``): the ``k``-th smallest score, ``k`` the smallest count with
    ``k / N >= coverage``. Ties above it come along, so the coverage reached can exceed the
    target (a committee that agrees everywhere, all scores 0, gives coverage 1 at any target).

    Parameters
    ----------
    scores : array-like of shape (N,)
        Scores of the digits that fix the threshold (the calibration digits).
    coverage : float
        Target share of digits answered, in (0, 1].

    Returns
    -------
    threshold : float

    Raises
    ------
    ValueError
        If an input is malformed or ``coverage`` is outside (0, 1].
    """
    values = _check_scores(scores)
    coverage = check_share(coverage, "coverage", one=True)
    k = _smallest_count(values.shape[0], coverage)
    return float(np.partition(values, k - 1)[k - 1])


def threshold_for_error(scores: ArrayLike, correct: ArrayLike, max_error: float) -> float:
    """The threshold of the largest coverage whose error is at most ``max_error`` on these digits.

    Over the points of :func:`risk_coverage_curve` (whole blocks of tied scores), the largest
    ``threshold`` whose risk is ``<= max_error``; ``-inf`` (accept nothing) when even the
    surest block is wrong more often than that.

    Parameters
    ----------
    scores : array-like of shape (N,)
        Scores of the digits that fix the threshold (the calibration digits).
    correct : array-like of shape (N,)
        Whether the vote got each of them right.
    max_error : float
        Target error among the answered digits, in [0, 1] (e.g. 0.001 for 0.1%).

    Returns
    -------
    threshold : float
        A score of these digits, or ``-inf``.
    """
    curve = risk_coverage_curve(scores, correct)
    max_error = check_share(max_error, "max_error", zero=True, one=True)
    within = np.flatnonzero(curve["risk"] <= max_error)
    return float(curve["threshold"][within[-1]]) if within.size else -math.inf


def error_at_coverage(scores: ArrayLike, correct: ArrayLike, coverage: float, *,
                      confidence: float = 0.95) -> dict[str, float]:
    """The error when at least ``coverage`` of these digits are answered, the threshold set on them.

    ``select(scores, correct, threshold_for_coverage(scores, coverage))`` plus the target: the
    surest digits, whole blocks of ties, until the share reaches ``coverage``. The threshold
    has seen these digits' scores (not their answers); for a threshold fixed elsewhere use
    :func:`calibrated_selection`.

    Returns
    -------
    dict
        :func:`select`'s keys and ``target_coverage``.
    """
    threshold = threshold_for_coverage(scores, coverage)
    return {"target_coverage": float(coverage), **select(scores, correct, threshold, confidence=confidence)}


def coverage_at_error(scores: ArrayLike, correct: ArrayLike, max_error: float, *,
                      confidence: float = 0.95) -> dict[str, float]:
    """The largest coverage of these digits at which the error is at most ``max_error``.

    ``select(scores, correct, threshold_for_error(scores, correct, max_error))`` plus the target
    (optimistic: the threshold has seen the answers). With no such coverage, nothing is
    accepted (coverage 0).

    Returns
    -------
    dict
        :func:`select`'s keys and ``target_error``.
    """
    threshold = threshold_for_error(scores, correct, max_error)
    return {"target_error": float(max_error), **select(scores, correct, threshold, confidence=confidence)}


def calibrated_selection(calibration_scores: ArrayLike, scores: ArrayLike, correct: ArrayLike, *,
                         coverage: float, confidence: float = 0.95) -> dict[str, float]:
    """A threshold fixed on calibration digits for a target coverage, measured on test digits.

    The threshold is :func:`threshold_for_coverage` of ``calibration_scores``; the figures are
    :func:`select` on the test digits, whose coverage is near, not exactly, the target.

    Parameters
    ----------
    calibration_scores : array-like of shape (M,)
        Scores of labelled digits outside every member's training data and the test set.
    scores : array-like of shape (N,)
        Scores of the test digits.
    correct : array-like of shape (N,)
        Whether the vote got each test digit right.
    coverage : float
        Target share answered, in (0, 1].
    confidence : float, default=0.95
        Level of the Wilson interval of the error.

    Returns
    -------
    dict
        :func:`select`'s keys (on the test digits), ``target_coverage`` and
        ``calibration_coverage`` (the share of calibration digits the threshold accepts).
    """
    calibration = _check_scores(calibration_scores, "calibration_scores")
    threshold = threshold_for_coverage(calibration, coverage)
    return {"target_coverage": float(coverage), "calibration_coverage": float(np.mean(calibration <= threshold)),
            **select(scores, correct, threshold, confidence=confidence)}
