"""Split conformal prediction sets: for each digit, the labels that hold the true one with a guarantee.

Pure NumPy, on one probability stack of shape ``(N, C)`` (e.g. the soft vote's mean
probabilities, :meth:`ensemble_cnn.inference.ensemble.Ensemble.predict_proba` with
``voting="soft"``). A *conformity score* gives every candidate label of a digit a
non-conformity (higher = the label fits the digit worse), :data:`CONFORMITY_SCORES`:

* ``"lac"`` (Sadinle, Lei & Wasserman 2019): ``1 - p[label]``;
* ``"aps"`` (Romano, Sesia & Candes 2020, without randomization): the total probability of the
  labels at least as probable as this one, ``sum_c p[c] * (p[c] >= p[label])``.

Split conformal (Vovk et al. 2005; Angelopoulos & Bates 2021):

1. on ``n`` calibration digits that no member trained on, the scores of their true labels,
   :func:`conformity_scores`;
2. the threshold :func:`conformal_quantile` at ``level`` (e.g. 0.99): the
   ``ceil((n + 1) * level)``-th smallest of them;
3. the set of a new digit, :func:`prediction_sets`: every label whose score is ``<= threshold``.

If the calibration and the new digits are exchangeable, the set holds the true label with
probability at least ``level`` (over the draw of both; at most ``level + 1/(n + 1)`` when the
scores have no ties). It is a guarantee on average over digits, not for each digit. A set can be
**empty** (no label fits well enough, ``"lac"`` when every probability is below ``1 - threshold``):
that digit must be shown as "unsure", never as no answer; :func:`empty_sets` tells them.
:func:`set_statistics` gives the empirical coverage, the mean size and the shares of singletons and
empty sets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from ensemble_cnn.inference.vote import check_probabilities_2d, check_true_labels
from ensemble_cnn.shares import check_share

__all__ = [
    "CONFORMITY_SCORES", "ConformityScore", "aps_label_scores", "conformal_quantile", "conformity_scores",
    "empty_sets", "get_conformity_score", "lac_label_scores", "prediction_sets", "set_statistics",
]


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_sets(sets: ArrayLike) -> np.ndarray:
    """Validate prediction sets: a boolean array of shape (N, C)."""
    array = np.asarray(sets)
    if array.ndim != 2 or array.dtype != bool:
        raise ValueError(f"`sets` must be a boolean array of shape (N, C); got {array.dtype} of shape {array.shape}")
    return array


# --------------------------------------------------------------------------- #
# Conformity scores (higher = the label fits worse)
# --------------------------------------------------------------------------- #
def lac_label_scores(probabilities: ArrayLike) -> np.ndarray:
    """LAC non-conformity of every label: ``1 - p[n, c]``.

    Parameters
    ----------
    probabilities : array-like of shape (N, C)

    Returns
    -------
    scores : ndarray of shape (N, C), float64
    """
    return 1.0 - check_probabilities_2d(probabilities)


def aps_label_scores(probabilities: ArrayLike) -> np.ndarray:
    """APS non-conformity of every label: the probability of the labels at least as probable.

    ``s[n, c] = sum_d p[n, d] * (p[n, d] >= p[n, c])``: the mass of the sorted labels down to
    ``c``, tied labels counted together (so the order of tied labels never matters). Not
    randomized: the set ``{c : s[n, c] <= t}`` is the most probable labels until their mass
    would pass ``t``.

    Parameters
    ----------
    probabilities : array-like of shape (N, C)

    Returns
    -------
    scores : ndarray of shape (N, C), float64
    """
    proba = check_probabilities_2d(probabilities)
    at_least = proba[:, None, :] >= proba[:, :, None]  # (N, c, d): p[d] >= p[c]
    return np.einsum("ncd,nd->nc", at_least, proba)


@dataclass(frozen=True)
class ConformityScore:
    """A conformity score: its name, its per-label function and one line saying what it is.

    Attributes
    ----------
    name : str
    label_scores : callable
        ``label_scores(probabilities (N, C)) -> (N, C)`` float64, higher = the label fits worse.
    description : str
    """

    name: str
    label_scores: Callable[[ArrayLike], np.ndarray]
    description: str


CONFORMITY_SCORES: dict[str, ConformityScore] = {
    score.name: score
    for score in (
        ConformityScore("lac", lac_label_scores, "1 - the label's probability (smallest sets on average)"),
        ConformityScore("aps", aps_label_scores,
                        "probability of the labels at least as probable (sets adapt to the digit's difficulty)"),
    )
}
"""Every conformity score by name (the ``method`` argument)."""


def get_conformity_score(name: str) -> ConformityScore:
    """The conformity score called ``name``; a one-line ``ValueError`` naming the choices otherwise."""
    try:
        return CONFORMITY_SCORES[name]
    except (KeyError, TypeError):
        raise ValueError(f"method must be one of {', '.join(CONFORMITY_SCORES)}, got {name!r}") from None


# --------------------------------------------------------------------------- #
# Split conformal
# --------------------------------------------------------------------------- #
def conformity_scores(probabilities: ArrayLike, labels: ArrayLike, *, method: str = "lac") -> np.ndarray:
    """The non-conformity of each digit's true label (the calibration scores).

    Parameters
    ----------
    probabilities : array-like of shape (N, C)
        Probabilities of the calibration digits.
    labels : array-like of shape (N,)
        Their true labels, integers in ``[0, C)``.
    method : str, default="lac"
        A name in :data:`CONFORMITY_SCORES`.

    Returns
    -------
    scores : ndarray of shape (N,), float64

    Raises
    ------
    ValueError
        If an input is malformed or ``method`` is unknown.
    """
    score = get_conformity_score(method)
    proba = check_probabilities_2d(probabilities)
    y = check_true_labels(labels, *proba.shape, name="labels")
    return score.label_scores(proba)[np.arange(proba.shape[0]), y]


def conformal_quantile(calibration_scores: ArrayLike, level: float) -> float:
    """The split-conformal threshold: the ``k``-th smallest calibration score, ``k = ceil((n + 1) * level)``.

    The quantile at ``ceil((n + 1) * level) / n`` with the finite-sample correction, read as
    the order statistic itself (numpy's ``method="lower"`` or ``"inverted_cdf"`` at that
    level, as MAPIE does; ``"higher"`` would take the next score up, a step more conservative
    than the guarantee needs). ``k`` is the smallest integer with ``k / (n + 1) >= level`` (so
    0.07 * 100 counts as 7, not 8, despite rounding).

    When ``level`` is too high for ``n`` (``k > n``, i.e. ``level > n / (n + 1)``), no
    calibration score is large enough: the threshold is ``inf`` and every set is the full set
    of labels (the guarantee holds, uselessly). E.g. ``level = 0.999`` needs ``n >= 999``.

    Parameters
    ----------
    calibration_scores : array-like of shape (n,)
        :func:`conformity_scores` of ``n >= 1`` calibration digits.
    level : float
        Target coverage, in (0, 1) (e.g. 0.99).

    Returns
    -------
    threshold : float
        One of the calibration scores, or ``inf``.

    Raises
    ------
    ValueError
        If the scores are not a non-empty finite 1-D array, or ``level`` is outside (0, 1).

    Examples
    --------
    >>> conformal_quantile([0.3, 0.1, 0.4, 0.2], 0.5)  # k = ceil(5 * 0.5) = 3: the 3rd smallest
    0.3
    >>> conformal_quantile([0.3, 0.1, 0.4, 0.2], 0.9)  # k = ceil(4.5) = 5 > 4
    inf
    """
    try:
        scores = np.asarray(calibration_scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`calibration_scores` must be a numeric array; got {exc}") from None
    if scores.ndim != 1 or scores.shape[0] == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"`calibration_scores` must be a non-empty finite 1-D array; got shape {scores.shape}")
    level = check_share(level, "level")
    n = scores.shape[0]
    k = math.ceil((n + 1) * float(level))
    while k > 1 and (k - 1) / (n + 1) >= level:
        k -= 1
    while k / (n + 1) < level:
        k += 1
    if k > n:
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


def prediction_sets(probabilities: ArrayLike, threshold: float, *, method: str = "lac") -> np.ndarray:
    """Every label whose non-conformity is at most ``threshold``.

    Parameters
    ----------
    probabilities : array-like of shape (N, C)
        Probabilities of the digits to answer.
    threshold : float
        :func:`conformal_quantile` of the calibration digits (``inf``: full sets).
    method : str, default="lac"
        The conformity score the threshold was computed with.

    Returns
    -------
    sets : ndarray of shape (N, C), bool
        ``sets[n, c]``: label ``c`` is in digit ``n``'s set. A row may be all False (an empty
        set: show the digit as "unsure", :func:`empty_sets`).

    Raises
    ------
    ValueError
        If an input is malformed, ``threshold`` is NaN, or ``method`` is unknown.
    """
    score = get_conformity_score(method)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("`threshold` must be a number; got NaN")
    return score.label_scores(probabilities) <= threshold


def empty_sets(sets: ArrayLike) -> np.ndarray:
    """Which digits got an empty set (no label fits): to be shown as "unsure", not as an answer.

    Parameters
    ----------
    sets : array-like of shape (N, C), bool
        :func:`prediction_sets`.

    Returns
    -------
    empty : ndarray of shape (N,), bool
    """
    return ~_check_sets(sets).any(axis=1)


def set_statistics(sets: ArrayLike, labels: ArrayLike | None = None) -> dict[str, float]:
    """How the sets look: mean size, shares of singletons and empty sets, and coverage if labels are known.

    Parameters
    ----------
    sets : array-like of shape (N, C), bool
        :func:`prediction_sets`, ``N >= 1``.
    labels : array-like of shape (N,), optional
        True labels; adds ``coverage``, the share of sets holding the true label.

    Returns
    -------
    dict
        ``n_digits``, ``mean_size``, ``singletons``, ``empty`` (shares in [0, 1]) and, with
        ``labels``, ``coverage``.
    """
    array = _check_sets(sets)
    if array.shape[0] == 0:
        raise ValueError("`sets` must hold at least one digit; got 0")
    sizes = array.sum(axis=1)
    stats = {"n_digits": int(array.shape[0]), "mean_size": float(sizes.mean()),
             "singletons": float(np.mean(sizes == 1)), "empty": float(np.mean(sizes == 0))}
    if labels is not None:
        y = check_true_labels(labels, *array.shape, name="labels")
        stats["coverage"] = float(np.mean(array[np.arange(array.shape[0]), y]))
    return stats
