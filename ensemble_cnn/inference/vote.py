"""Combine the class probabilities of ensemble members into one prediction.

Two rules are provided, both pure numpy and vectorised over samples:

* :func:`majority_vote` -- every member votes for its most probable class and the
  class with the most (weighted) votes wins (plurality vote, "hard" voting);
* :func:`soft_vote` -- the class with the largest (weighted) mean probability wins.

:data:`VOTES` is the registry every other part reads (the command line's choices,
the report, the plots, the Python API): a :class:`VoteRule` per name, holding the
rule's label function and its per-class *shares* (what the rule's "probabilities"
are: vote fractions for majority, mean probabilities for soft). Adding a rule is one
function plus one entry. :func:`get_vote` looks a rule up by name (the one check of a name),
:func:`vote` dispatches on it.

All functions take ``probabilities`` of shape ``(K, N, C)``: ``K`` members,
``N`` samples, ``C`` classes (e.g. the softmax outputs of ``K`` ConvNets on the
same ``N`` test images), and return labels of shape ``(N,)`` and dtype int64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from ensemble_cnn.deprecation import renamed_keyword

__all__ = [
    "VOTES", "VOTE_METHODS", "VoteRule", "get_vote", "majority_shares", "majority_ties", "majority_vote",
    "soft_shares", "soft_vote", "vote",
]

# Relative tolerance used to detect ties between floating-point (weighted) vote
# counts and summed probabilities, so that e.g. 0.1 + 0.2 ties with 0.3.
_TIE_RTOL = 1e-9


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_probabilities(probabilities: ArrayLike) -> np.ndarray:
    """Validate member probabilities and return them as a float64 array.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)

    Returns
    -------
    probabilities : ndarray of shape (K, N, C), dtype float64

    Raises
    ------
    ValueError
        If the array is not numeric, not 3-D, has no member, fewer than two
        classes, or non-finite values.
    """
    try:
        proba = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`probabilities` must be a numeric array; got {exc}") from None
    if proba.ndim != 3:
        raise ValueError(
            "`probabilities` must be 3-D of shape (n_members, n_samples, n_classes);"
            f" got shape {proba.shape}"
        )
    n_members, _, n_classes = proba.shape
    if n_members < 1:
        raise ValueError("`probabilities` must hold at least one member; got n_members=0")
    if n_classes < 2:
        raise ValueError(f"`probabilities` must have at least 2 classes; got n_classes={n_classes}")
    if not np.all(np.isfinite(proba)):
        raise ValueError("`probabilities` must be finite; got NaN or infinity")
    return proba


def check_probabilities_2d(probabilities: ArrayLike, *, name: str = "probabilities",
                           min_samples: int = 0) -> np.ndarray:
    """Validate one probability stack of shape (N, C): numeric, finite, ``N >= min_samples``, ``C >= 2``.

    Rows are not required to sum to 1.

    Parameters
    ----------
    probabilities : array-like of shape (N, C)
    name : str
        The argument's name in the one-line error.
    min_samples : int, default 0

    Returns
    -------
    probabilities : ndarray of shape (N, C), dtype float64
    """
    try:
        proba = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a numeric array; got {exc}") from None
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"`{name}` must be 2-D of shape (n_samples, n_classes >= 2); got shape {proba.shape}")
    if proba.shape[0] < min_samples:
        raise ValueError(f"`{name}` must hold at least {min_samples} sample(s); got n_samples={proba.shape[0]}")
    if not np.all(np.isfinite(proba)):
        raise ValueError(f"`{name}` must be finite; got NaN or infinity")
    return proba


def check_true_labels(labels: ArrayLike, n_samples: int, n_classes: int, *, name: str = "y_true") -> np.ndarray:
    """Validate true labels against a probability stack's shape: the one label checker of the scores.

    Parameters
    ----------
    labels : array-like of shape (N,)
        Integer labels in ``[0, n_classes)`` (whole floats such as ``3.0`` pass).
    n_samples, n_classes : int
        ``N`` and ``C`` of the probabilities.
    name : str
        The argument's name in the one-line error.

    Returns
    -------
    labels : ndarray of shape (N,), dtype int64

    Raises
    ------
    ValueError
        One line naming ``name``: not one label per sample, none at all, not whole numbers, or outside
        ``[0, n_classes)``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(f"`{name}` must have shape ({n_samples},), one label per sample; got shape {y.shape}")
    if n_samples == 0:
        raise ValueError(f"`{name}` must hold at least one sample; got 0")
    whole = np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y)))
    if not (np.issubdtype(y.dtype, np.integer) or whole):
        raise ValueError(f"`{name}` must hold integer labels; got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"`{name}` labels must lie in [0, {n_classes}); got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _check_weights(weights: ArrayLike | None, n_members: int) -> np.ndarray:
    """Validate per-member weights; ``None`` means equal weights.

    Parameters
    ----------
    weights : array-like of shape (K,) or None
        Non-negative, finite, not all zero.
    n_members : int
        ``K``, the number of members.

    Returns
    -------
    weights : ndarray of shape (K,), dtype float64
    """
    if weights is None:
        return np.ones(n_members, dtype=np.float64)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`weights` must be a numeric array; got {exc}") from None
    if w.ndim != 1 or w.shape[0] != n_members:
        raise ValueError(
            f"`weights` must have shape ({n_members},), one per member; got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError("`weights` must be finite; got NaN or infinity")
    if np.any(w < 0):
        raise ValueError(f"`weights` must be non-negative; got {w.tolist()}")
    if not np.any(w > 0):
        raise ValueError("`weights` must not all be zero")
    return w


# --------------------------------------------------------------------------- #
# Voting rules
# --------------------------------------------------------------------------- #
def _vote_counts(member_labels: np.ndarray, weights: np.ndarray, n_classes: int) -> np.ndarray:
    """(Weighted) number of votes per class.

    Parameters
    ----------
    member_labels : ndarray of shape (K, N), int
    weights : ndarray of shape (K,)
    n_classes : int

    Returns
    -------
    counts : ndarray of shape (N, C), float64
    """
    n_samples = member_labels.shape[1]
    counts = np.zeros((n_samples, n_classes), dtype=np.float64)
    rows = np.arange(n_samples)
    for labels_k, w_k in zip(member_labels, weights):
        counts[rows, labels_k] += w_k
    return counts


def _is_max(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Mask of the candidates whose value ties with the row maximum over candidates.

    Parameters
    ----------
    values : ndarray of shape (N, C)
    candidates : ndarray of shape (N, C), bool
        At least one True per row.

    Returns
    -------
    mask : ndarray of shape (N, C), bool
        ``candidates`` restricted to the row maxima (up to ``_TIE_RTOL``).
    """
    masked = np.where(candidates, values, -np.inf)
    row_max = masked.max(axis=1, keepdims=True)
    close = np.abs(masked - row_max) <= _TIE_RTOL * np.abs(row_max)
    return candidates & close


def majority_vote(probabilities: ArrayLike, *, weights: ArrayLike | None = None) -> np.ndarray:
    """Plurality vote of the members' most probable classes.

    Each member votes for its argmax class (a member's own exact ties go to the
    lower label, as :func:`numpy.argmax`); a vote counts ``weights[k]``
    (1 by default). The class with the most (weighted) votes wins.

    Tie rule (deterministic): among the classes tied on (weighted) votes, the one
    with the larger (weighted) sum of probabilities over all members wins; if
    still tied, the lower label wins. Ties are detected up to a relative
    tolerance of 1e-9, so floating-point rounding in weighted sums does not
    decide them. With one-hot probabilities the rule reduces to "lowest label
    among the most voted", like :func:`scipy.stats.mode`.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities (e.g. softmax outputs) of ``K`` members for ``N``
        samples over ``C >= 2`` classes. Must be finite.
    weights : array-like of shape (K,), optional
        Non-negative vote weight of each member, not all zero. ``None`` gives
        every member one vote.

    Returns
    -------
    labels : ndarray of shape (N,), dtype int64
        The winning class of each sample.

    Raises
    ------
    ValueError
        If ``probabilities`` or ``weights`` are malformed.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.3, 0.7]]])
    >>> majority_vote(p)
    array([1])
    >>> majority_vote(p, weights=[3, 1, 1])
    array([0])
    """
    return np.argmax(majority_shares(probabilities, weights=weights), axis=1).astype(np.int64)


def soft_vote(probabilities: ArrayLike, *, weights: ArrayLike | None = None) -> np.ndarray:
    """Argmax of the members' (weighted) mean probability.

    Exact ties go to the lower label (the rule of :func:`numpy.argmax`).

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` samples over ``C >= 2``
        classes. Must be finite.
    weights : array-like of shape (K,), optional
        Non-negative weight of each member in the mean, not all zero. ``None``
        gives the plain mean.

    Returns
    -------
    labels : ndarray of shape (N,), dtype int64

    Raises
    ------
    ValueError
        If ``probabilities`` or ``weights`` are malformed.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.3, 0.7]]])
    >>> soft_vote(p)
    array([0])
    """
    proba = _check_probabilities(probabilities)
    w = _check_weights(weights, proba.shape[0])
    mean = np.tensordot(w / w.sum(), proba, axes=1)  # (N, C)
    return np.argmax(mean, axis=1).astype(np.int64)


def majority_shares(probabilities: ArrayLike, *, weights: ArrayLike | None = None) -> np.ndarray:
    """The majority vote's probabilities: each class's share of the votes, the tie rule folded in.

    With ``W`` the total weight (``K`` unweighted), ``votes_c`` the (weighted) votes and
    ``s_c`` the (weighted) summed probability of class ``c``, and ``g = min(1, margin)``
    (``margin``: how far the most-voted classes lead the next; 1 when unweighted)::

        shares_c = (votes_c + g * s_c / (W + 1)) / (W + g * W / (W + 1))

    Rows sum to 1. The fold is smaller than ``g``, so it never overturns a vote; among
    classes tied on votes (up to a relative 1e-9) the larger summed probability wins,
    then the lower label (argmax's first maximum). So ``argmax(shares) ==
    majority_vote`` by construction: :func:`majority_vote` *is* that argmax. Unweighted,
    this is exactly the ``vote`` output of an exported model (:meth:`Ensemble.to_keras`).
    """
    proba = _check_probabilities(probabilities)
    w = _check_weights(weights, proba.shape[0])
    total = float(w.sum())
    counts = _vote_counts(np.argmax(proba, axis=2), w, proba.shape[2])  # (N, C)
    sums = np.tensordot(w, proba.astype(np.float64), axes=1)  # (N, C), each row sums to W
    most_voted = _is_max(counts, np.ones_like(counts, dtype=bool))
    top = counts.max(axis=1, keepdims=True)
    counts = np.where(most_voted, top, counts)  # rounding in weighted sums does not decide a tie
    finalists = _is_max(sums, most_voted)
    sums = np.where(finalists, np.where(finalists, sums, -np.inf).max(axis=1, keepdims=True), sums)
    runner_up = np.where(most_voted, -np.inf, counts).max(axis=1, keepdims=True)
    gap = np.minimum(1.0, np.where(np.isfinite(runner_up), top - runner_up, 1.0))
    fold = gap / (total + 1.0)
    return (counts + fold * sums) / (total + fold * total)


def soft_shares(probabilities: ArrayLike, *, weights: ArrayLike | None = None) -> np.ndarray:
    """The members' (weighted) mean probability, shape (N, C)."""
    proba = _check_probabilities(probabilities)
    w = _check_weights(weights, proba.shape[0])
    return np.tensordot(w / w.sum(), proba, axes=1)


def majority_ties(probabilities: ArrayLike, *, weights: ArrayLike | None = None) -> dict[str, int]:
    """How often the majority vote was tied and how each tie was broken.

    Returns
    -------
    dict
        ``ties``: samples whose most-voted classes tie; ``by_probability``: of those,
        decided by the larger summed probability; ``by_label``: still tied there,
        decided by the lower label.
    """
    proba = _check_probabilities(probabilities)
    w = _check_weights(weights, proba.shape[0])
    counts = _vote_counts(np.argmax(proba, axis=2), w, proba.shape[2])
    most_voted = _is_max(counts, np.ones_like(counts, dtype=bool))
    tied = most_voted.sum(axis=1) > 1
    finalists = _is_max(np.tensordot(w, proba, axes=1), most_voted)
    by_label = tied & (finalists.sum(axis=1) > 1)
    return {"ties": int(tied.sum()), "by_probability": int((tied & ~by_label).sum()), "by_label": int(by_label.sum())}


@dataclass(frozen=True)
class VoteRule:
    """A way to combine members: its name, its label function and its probabilities (``labels == argmax(shares)``).

    Attributes
    ----------
    name : str
    labels : callable
        ``labels(probabilities (K, N, C), *, weights=None) -> (N,) int64``.
    shares : callable
        ``shares(probabilities, *, weights=None) -> (N, C)`` float, rows summing to 1:
        the rule's probabilities, whose argmax is ``labels`` (scikit-learn's
        ``predict == predict_proba.argmax``; tested for every rule).
    description : str
        One line for help texts and reports.
    """

    name: str
    labels: Callable[..., np.ndarray]
    shares: Callable[..., np.ndarray]
    description: str


VOTES: dict[str, VoteRule] = {
    rule.name: rule
    for rule in (
        VoteRule("majority", majority_vote, majority_shares,
                 "plurality of the members' labels; ties to the larger summed probability, then the lower label"),
        VoteRule("soft", soft_vote, soft_shares, "argmax of the members' mean probability"),
    )
}
"""Every vote rule by name (the command line's ``--vote`` choices, the report's rows, the API)."""

VOTE_METHODS: tuple[str, ...] = tuple(VOTES)
"""Names accepted by :func:`get_vote` (and every ``voting`` argument)."""


def get_vote(name: str) -> VoteRule:
    """The vote rule called ``name``; ``ValueError`` naming the choices otherwise.

    The one check of a vote's name: every ``voting`` argument of the package goes through it.

    Parameters
    ----------
    name : str
        A name in :data:`VOTES` (``"majority"``, ``"soft"``).

    Returns
    -------
    VoteRule

    Raises
    ------
    ValueError
        ``name`` is not in :data:`VOTES`: "voting must be one of majority, soft, got 'x'".
    """
    try:
        return VOTES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise ValueError(f"voting must be one of {', '.join(VOTES)}, got {name!r}") from None


@renamed_keyword("method", "voting")
def vote(
    probabilities: ArrayLike,
    *,
    voting: str = "majority",
    weights: ArrayLike | None = None,
) -> np.ndarray:
    """Combine member probabilities with the rule named by ``voting``.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` samples over ``C`` classes.
    voting : str, default="majority"
        A name in :data:`VOTES` (``"majority"``: :func:`majority_vote`, ``"soft"``:
        :func:`soft_vote`). Formerly ``method``, still accepted with a deprecation warning.
    weights : array-like of shape (K,), optional
        Non-negative per-member weights, not all zero.

    Returns
    -------
    labels : ndarray of shape (N,), dtype int64

    Raises
    ------
    ValueError
        If ``voting`` is not in :data:`VOTE_METHODS`, or the inputs are malformed.
    """
    return get_vote(voting).labels(probabilities, weights=weights)
