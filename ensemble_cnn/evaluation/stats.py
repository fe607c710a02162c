"""Statistics for an ensemble report: intervals, paired tests, ensemble-size curves, calibration.

NumPy, SciPy and scikit-learn (no TensorFlow), for the members' test-set probabilities:

* :func:`wilson_interval` -- Wilson score interval of an accuracy (a binomial proportion);
* :func:`mcnemar_exact` -- exact (binomial) McNemar test between two classifiers on the
  same samples, e.g. the majority vote against the best member;
* :func:`vote_subset_curve` -- accuracy of each vote rule (and of the oracle) against the
  ensemble size ``k``, over subsets of the members (:func:`member_subsets`);
* :func:`negative_log_likelihood`, :func:`expected_calibration_error` and
  :func:`calibration` -- how well one ``(N, C)`` probability stack is calibrated;
* :func:`disagreement_matrix` -- pairwise disagreement rates of the members' labels.

Stacks of member probabilities have shape ``(K, N, C)`` (``K`` members, ``N``
samples, ``C`` classes), as in :mod:`ensemble_cnn.inference.vote`. Accuracies, rates and
proportions are fractions in [0, 1].
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binomtest
from sklearn.metrics import pairwise_distances

from ensemble_cnn.inference.vote import _check_probabilities, check_probabilities_2d, check_true_labels
from ensemble_cnn.shares import check_share

__all__ = [
    "calibration",
    "disagreement_matrix",
    "expected_calibration_error",
    "mcnemar_exact",
    "mcnemar_p_value",
    "member_subsets",
    "negative_log_likelihood",
    "vote_subset_curve",
    "wilson_interval",
]

# Keys of a :func:`vote_subset_curve` row that are not per-rule statistics; a rule
# name must not produce a key that collides with them.
_RESERVED_RULE_NAMES = frozenset({"oracle"})


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_int(value: object, name: str, *, minimum: int) -> int:
    """Validate an integer argument (Python or numpy int, not bool) ``>= minimum``.

    Returns
    -------
    value : int
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def _check_correct(correct: ArrayLike, name: str) -> np.ndarray:
    """Validate a per-sample correctness vector: 1-D, non-empty, boolean or 0/1.

    Returns
    -------
    correct : ndarray of shape (N,), dtype bool
    """
    c = np.asarray(correct)
    if c.ndim != 1 or c.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array of shape (N,); got shape {c.shape}")
    if c.dtype == bool:
        return c
    if not (np.issubdtype(c.dtype, np.number) and np.all((c == 0) | (c == 1))):
        raise ValueError(f"`{name}` must be boolean or hold only 0 and 1; got dtype {c.dtype}")
    return c.astype(bool)


def _check_rules(rules: Mapping[str, Callable[[np.ndarray], np.ndarray]]) -> dict[str, Callable]:
    """Validate the vote rules of :func:`vote_subset_curve`: non-empty, str names, callables.

    Returns
    -------
    rules : dict of str to callable
    """
    if not isinstance(rules, Mapping) or len(rules) == 0:
        raise ValueError(f"`rules` must be a non-empty mapping of name to callable; got {rules!r}")
    for name, rule in rules.items():
        if not isinstance(name, str) or name in _RESERVED_RULE_NAMES:
            raise ValueError(f"`rules` names must be strings other than {sorted(_RESERVED_RULE_NAMES)}; got {name!r}")
        if not callable(rule):
            raise ValueError(f"`rules[{name!r}]` must be callable; got {type(rule).__name__}")
    return dict(rules)


# --------------------------------------------------------------------------- #
# Binomial statistics
# --------------------------------------------------------------------------- #
def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (e.g. a test accuracy).

    With ``p = successes / n`` and ``z = norm.ppf(1 - (1 - confidence) / 2)``
    (``z ~= 1.96`` at 95 %)::

        center = (p + z**2 / (2 n)) / (1 + z**2 / n)
        half   = z / (1 + z**2 / n) * sqrt(p (1 - p) / n + z**2 / (4 n**2))
        (lower, upper) = (center - half, center + half)

    computed by ``scipy.stats.binomtest(successes, n).proportion_ci(method="wilson")``
    (the hand-computed references stay in the tests). The bounds are clipped to [0, 1]; at ``successes == n`` the upper bound is
    exactly 1.0 and at ``successes == 0`` the lower bound is exactly 0.0 (the
    formula gives these up to rounding).

    Parameters
    ----------
    successes : int
        Number of successes, ``0 <= successes <= n``.
    n : int
        Number of trials, ``n >= 1``.
    confidence : float, default=0.95
        Two-sided confidence level, ``0 < confidence < 1``.

    Returns
    -------
    (lower, upper) : tuple of float
        Fractions in [0, 1].

    Raises
    ------
    ValueError
        If an argument is not an integer / in range.

    Examples
    --------
    >>> lo, hi = wilson_interval(81, 263)
    >>> round(lo, 4), round(hi, 4)
    (0.2553, 0.3662)
    """
    n = _check_int(n, "n", minimum=1)
    successes = _check_int(successes, "successes", minimum=0)
    if successes > n:
        raise ValueError(f"`successes` must be <= n={n}; got {successes}")
    confidence = check_share(confidence, "confidence")

    interval = binomtest(successes, n).proportion_ci(confidence_level=float(confidence), method="wilson")
    lower = 0.0 if successes == 0 else max(0.0, float(interval.low))
    upper = 1.0 if successes == n else min(1.0, float(interval.high))
    return lower, upper


def mcnemar_exact(a_correct: ArrayLike, b_correct: ArrayLike) -> dict[str, int | float]:
    """Exact (binomial) McNemar test between classifiers A and B on the same samples.

    Only the discordant samples count: ``only_a`` (A right, B wrong) and
    ``only_b`` (B right, A wrong). Under the null hypothesis (A and B equally
    accurate) ``only_a ~ Binom(only_a + only_b, 1/2)``; the two-sided p-value is::

        p = min(1, 2 * Binom(n=only_a + only_b, p=0.5).cdf(min(only_a, only_b)))

    computed by :func:`scipy.stats.binomtest` (two-sided; it agrees with the exact
    rational value to about 1e-13 relative error, tested). With no discordant
    sample the p-value is 1.0.

    Parameters
    ----------
    a_correct, b_correct : array-like of shape (N,)
        Whether A / B got each sample right: boolean, or numbers that are all 0 or 1.
        Same length, ``N >= 1``.

    Returns
    -------
    dict
        ``{"only_a": int, "only_b": int, "p_value": float}``.

    Raises
    ------
    ValueError
        If an input is not 1-D boolean/0-1, or the lengths differ.

    Examples
    --------
    >>> mcnemar_exact([1] * 10 + [0] * 2, [0] * 10 + [1] * 2)["p_value"]
    0.03857421875
    """
    a = _check_correct(a_correct, "a_correct")
    b = _check_correct(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"`b_correct` must have the shape of `a_correct` {a.shape}; got shape {b.shape}")
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(b & ~a))
    return {"only_a": only_a, "only_b": only_b, "p_value": mcnemar_p_value(only_a, only_b)}


def mcnemar_p_value(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p value from the discordant counts (see :func:`mcnemar_exact`).

    Use it where the counts are pooled over several comparisons (e.g. members, each on
    its own digits). 1.0 when there is no discordant sample.
    """
    only_a = _check_int(only_a, "only_a", minimum=0)
    only_b = _check_int(only_b, "only_b", minimum=0)
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    return min(1.0, float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue))


# --------------------------------------------------------------------------- #
# Accuracy against ensemble size
# --------------------------------------------------------------------------- #
def member_subsets(
    n_members: int, k: int, *, max_subsets: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    """The size-``k`` subsets of ``n_members`` members to evaluate.

    Every subset (:func:`itertools.combinations` order) when there are at most
    ``max_subsets`` of them; otherwise ``max_subsets`` distinct subsets drawn
    uniformly at random from ``rng`` (rejection of repeats), each subset's
    indices sorted and the list sorted lexicographically. ``rng`` is advanced
    only in the random case.

    Parameters
    ----------
    n_members : int
        ``K >= 1``.
    k : int
        Subset size, ``1 <= k <= K``.
    max_subsets : int
        ``>= 1``.
    rng : numpy.random.Generator

    Returns
    -------
    subsets : list of tuple of int
        ``min(C(K, k), max_subsets)`` distinct tuples of ``k`` increasing indices in ``[0, K)``.
    """
    n_members = _check_int(n_members, "n_members", minimum=1)
    k = _check_int(k, "k", minimum=1)
    if k > n_members:
        raise ValueError(f"`k` must be <= n_members={n_members}; got {k}")
    max_subsets = _check_int(max_subsets, "max_subsets", minimum=1)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"`rng` must be a numpy.random.Generator; got {type(rng).__name__}")

    if math.comb(n_members, k) <= max_subsets:
        return list(itertools.combinations(range(n_members), k))
    drawn: set[tuple[int, ...]] = set()
    while len(drawn) < max_subsets:
        drawn.add(tuple(sorted(int(i) for i in rng.choice(n_members, size=k, replace=False))))
    return sorted(drawn)


def _subset_scores(
    proba: np.ndarray,
    y: np.ndarray,
    member_right: np.ndarray,
    subset: tuple[int, ...],
    rules: dict[str, Callable],
) -> dict[str, float]:
    """Accuracy of every rule and the oracle on one subset of members.

    Parameters
    ----------
    proba : ndarray of shape (K, N, C)
    y : ndarray of shape (N,)
    member_right : ndarray of shape (K, N), bool
        Whether each member's argmax is right.
    subset : tuple of int, length k
    rules : dict of str to callable
        ``rule((k, N, C) stack) -> (N,) labels``.

    Returns
    -------
    scores : dict
        ``{rule_name: accuracy, ..., "oracle": accuracy}``.
    """
    index = list(subset)
    stack = proba[index]
    scores = {}
    for name, rule in rules.items():
        labels = np.asarray(rule(stack))
        if labels.shape != y.shape:
            raise ValueError(f"`rules[{name!r}]` must return labels of shape {y.shape}; got shape {labels.shape}")
        scores[name] = float(np.mean(labels == y))
    scores["oracle"] = float(np.mean(np.any(member_right[index], axis=0)))
    return scores


def vote_subset_curve(
    probabilities: ArrayLike,
    y_true: ArrayLike,
    *,
    rules: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    max_subsets: int = 200,
    seed: int = 0,
) -> list[dict[str, int | float | bool]]:
    """Accuracy of each vote rule against the ensemble size ``k = 1 .. K``.

    For each ``k`` the subsets of ``k`` members come from :func:`member_subsets`:
    all ``C(K, k)`` of them when that is at most ``max_subsets``, otherwise
    ``max_subsets`` distinct random ones. One generator,
    ``np.random.default_rng(seed)``, serves every ``k`` in increasing order, so
    the result is reproducible for a given ``seed``. Each rule is called once per
    subset, on that subset's ``(k, N, C)`` probabilities.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members on ``N`` test samples.
    y_true : array-like of shape (N,)
        True labels, integers in ``[0, C)``.
    rules : mapping of str to callable
        Vote name (e.g. ``"majority"``, ``"soft"``) to a function taking a
        ``(k, N, C)`` stack and returning labels of shape ``(N,)``, e.g.
        :func:`ensemble_cnn.inference.vote.majority_vote`. Non-empty; no rule may be named
        ``"oracle"``.
    max_subsets : int, default=200
        Most subsets evaluated per ``k``, ``>= 1``.
    seed : int, default=0
        Seed of the subset draws, ``>= 0``.

    Returns
    -------
    curve : list of dict, length K
        One row per ``k``: ``{"k": int, "n_subsets": int, "exhaustive": bool,
        "<rule>_mean": float, "<rule>_min": float, "<rule>_max": float, ...,
        "oracle_mean": float}`` -- the mean, min and max over the subsets of
        each rule's test accuracy, and the mean over the subsets of the fraction
        of samples at least one member of the subset gets right (a member is
        right when its argmax is the true label).

    Raises
    ------
    ValueError
        If an argument is malformed, or a rule returns labels of the wrong shape.
    """
    proba = _check_probabilities(probabilities)
    n_members, n_samples, n_classes = proba.shape
    y = check_true_labels(y_true, n_samples, n_classes)
    checked_rules = _check_rules(rules)
    max_subsets = _check_int(max_subsets, "max_subsets", minimum=1)
    seed = _check_int(seed, "seed", minimum=0)

    rng = np.random.default_rng(seed)
    member_right = np.argmax(proba, axis=2) == y  # (K, N)
    curve = []
    for k in range(1, n_members + 1):
        subsets = member_subsets(n_members, k, max_subsets=max_subsets, rng=rng)
        scores = [_subset_scores(proba, y, member_right, s, checked_rules) for s in subsets]
        row: dict[str, int | float | bool] = {
            "k": k,
            "n_subsets": len(subsets),
            "exhaustive": len(subsets) == math.comb(n_members, k),
        }
        for name in checked_rules:
            accuracies = [score[name] for score in scores]
            row.update({f"{name}_mean": float(np.mean(accuracies)), f"{name}_min": min(accuracies),
                        f"{name}_max": max(accuracies)})
        row["oracle_mean"] = float(np.mean([score["oracle"] for score in scores]))
        curve.append(row)
    return curve


# --------------------------------------------------------------------------- #
# Calibration
# --------------------------------------------------------------------------- #
def negative_log_likelihood(probabilities_2d: ArrayLike, y_true: ArrayLike, *, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true labels, ``mean_i -log(max(p[i, y_i], eps))``.

    Parameters
    ----------
    probabilities_2d : array-like of shape (N, C)
        Class probabilities of ``N`` samples (e.g. a soft vote's mean probabilities).
    y_true : array-like of shape (N,)
        True labels, integers in ``[0, C)``.
    eps : float, default=1e-12
        Lower clip of the true-class probability, ``> 0`` (so a zero gives
        ``-log(eps)``, not infinity).

    Returns
    -------
    nll : float
        In nats.

    Raises
    ------
    ValueError
        If an argument is malformed.
    """
    proba = check_probabilities_2d(probabilities_2d, name="probabilities_2d", min_samples=1)
    y = check_true_labels(y_true, *proba.shape)
    if not (isinstance(eps, (int, float, np.floating)) and eps > 0):
        raise ValueError(f"`eps` must be a positive number; got {eps!r}")
    p_true = proba[np.arange(proba.shape[0]), y]
    return float(np.mean(-np.log(np.maximum(p_true, eps))))


def _confidence_bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each confidence: bin ``b`` holds ``(b / bins, (b + 1) / bins]``.

    Parameters
    ----------
    confidence : ndarray of shape (N,)
    bins : int

    Returns
    -------
    index : ndarray of shape (N,), int
        In ``[0, bins)``; values ``<= 1 / bins`` (0 included) go to bin 0,
        values ``> (bins - 1) / bins`` (above 1 included) to the last bin.
    """
    inner_edges = np.arange(1, bins) / bins  # the floats b / bins, b = 1 .. bins-1
    return np.searchsorted(inner_edges, confidence, side="left")


def expected_calibration_error(probabilities_2d: ArrayLike, y_true: ArrayLike, *, bins: int = 15) -> float:
    """Expected calibration error (Guo et al., 2017) with equal-width confidence bins.

    Confidence is a sample's largest probability, prediction its argmax (ties to
    the lower label). Bin ``b`` (``b = 0 .. bins-1``) holds the confidences in
    ``(b / bins, (b + 1) / bins]``, right-closed, the edges being the floats
    ``b / bins``; a confidence of exactly 0 goes into bin 0 (and one above 1,
    from rounding, into the last bin). Then::

        ECE = sum_b (n_b / N) * |accuracy_b - mean_confidence_b|

    over the non-empty bins, i.e. ``sum_b |sum_{i in b} (correct_i - confidence_i)| / N``.

    Parameters
    ----------
    probabilities_2d : array-like of shape (N, C)
        Class probabilities of ``N`` samples.
    y_true : array-like of shape (N,)
        True labels, integers in ``[0, C)``.
    bins : int, default=15
        Number of bins, ``>= 1``.

    Returns
    -------
    ece : float
        In [0, 1] for probabilities in [0, 1].

    Raises
    ------
    ValueError
        If an argument is malformed.
    """
    proba = check_probabilities_2d(probabilities_2d, name="probabilities_2d", min_samples=1)
    y = check_true_labels(y_true, *proba.shape)
    bins = _check_int(bins, "bins", minimum=1)
    confidence = proba.max(axis=1)
    correct = (np.argmax(proba, axis=1) == y).astype(np.float64)
    index = _confidence_bins(confidence, bins)
    gap = np.bincount(index, weights=correct - confidence, minlength=bins)  # per-bin sum of (correct - confidence)
    return float(np.sum(np.abs(gap)) / proba.shape[0])


def calibration(probabilities: ArrayLike, y_true: ArrayLike, *, bins: int = 15) -> dict[str, float]:
    """Negative log-likelihood and expected calibration error of one probability stack.

    Parameters
    ----------
    probabilities : array-like of shape (N, C)
        Class probabilities of ``N`` samples (e.g. a soft vote's mean probabilities).
    y_true : array-like of shape (N,)
        True labels, integers in ``[0, C)``.
    bins : int, default=15
        Number of ECE bins (see :func:`expected_calibration_error`).

    Returns
    -------
    dict
        ``{"nll": float, "ece": float}``, from :func:`negative_log_likelihood`
        (default ``eps``) and :func:`expected_calibration_error`.

    Raises
    ------
    ValueError
        If an argument is malformed.
    """
    return {
        "nll": negative_log_likelihood(probabilities, y_true),
        "ece": expected_calibration_error(probabilities, y_true, bins=bins),
    }


# --------------------------------------------------------------------------- #
# Diversity
# --------------------------------------------------------------------------- #
def disagreement_matrix(member_labels: ArrayLike) -> np.ndarray:
    """Pairwise disagreement rates of the members' predicted labels.

    Parameters
    ----------
    member_labels : array-like of shape (K, N)
        Integer labels of ``K >= 1`` members on ``N >= 1`` samples.

    Returns
    -------
    matrix : ndarray of shape (K, K), dtype float64
        Entry ``(i, j)``: the fraction of samples on which members ``i`` and
        ``j`` predict different labels. Symmetric, zero diagonal.

    Raises
    ------
    ValueError
        If ``member_labels`` is not a non-empty 2-D integer array.
    """
    labels = np.asarray(member_labels)
    if labels.ndim != 2 or labels.shape[0] < 1 or labels.shape[1] < 1:
        raise ValueError(f"`member_labels` must be a non-empty 2-D array of shape (K, N); got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`member_labels` must hold integer labels; got dtype {labels.dtype}")
    return pairwise_distances(labels, metric="hamming").astype(np.float64)
