"""How unsure the committee is about each digit: uncertainty scores from the members' probabilities.

Every score takes the members' probabilities of shape ``(K, N, C)`` (``K`` members, ``N``
digits, ``C`` classes, e.g. :meth:`ensemble_cnn.inference.ensemble.Ensemble.member_probabilities`)
and returns one float64 per digit, shape ``(N,)``. **Higher always means less trustworthy**, for
every score: 0 is a committee that agrees with full confidence, so one rule fits them all
(answer a digit when its score is at most a threshold, set it aside above; see
:mod:`ensemble_cnn.evaluation.selective`).

* :func:`vote_margin` -- ``1 - (top vote share - runner-up vote share)``, the votes being the
  members' argmaxes (hard votes); in [0, 1];
* :func:`max_probability` -- ``1 - max_c mean_k p[k, n, c]``, one minus the soft vote's
  largest mean probability (Hendrycks & Gimpel's maximum softmax probability); in [0, 1 - 1/C];
* :func:`predictive_entropy` -- entropy (nats) of the members' mean probability; in [0, log C];
* :func:`mutual_information` -- entropy of the mean minus the mean of the members' entropies
  (the members' disagreement, "epistemic" uncertainty; BALD); in [0, log C];
* :func:`variation_ratio` -- ``1 - share of members voting the modal label``; in [0, 1 - 1/C].

With one member (``K = 1``) there is no disagreement: the mutual information, the variation
ratio and the vote margin are 0.

:data:`SCORES` is the registry every other part reads, beside
:data:`ensemble_cnn.inference.vote.VOTES`: an :class:`UncertaintyScore` per name. Adding a score
is one function plus one entry. :func:`get_score` looks a score up by name (the one check of a
name), :func:`uncertainty` dispatches on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from ensemble_cnn.inference.vote import _check_probabilities

__all__ = [
    "DEFAULT_SCORE", "SCORES", "SCORE_NAMES", "UncertaintyScore", "get_score", "max_probability",
    "mutual_information", "predictive_entropy", "uncertainty", "variation_ratio", "vote_margin",
]


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _vote_shares(proba: np.ndarray) -> np.ndarray:
    """Each class's share of the members' hard votes (argmax, ties to the lower label).

    Parameters
    ----------
    proba : ndarray of shape (K, N, C)

    Returns
    -------
    shares : ndarray of shape (N, C), float64
        Rows sum to 1.
    """
    n_members, n_samples, n_classes = proba.shape
    votes = np.argmax(proba, axis=2)  # (K, N)
    counts = np.zeros((n_samples, n_classes), dtype=np.float64)
    rows = np.arange(n_samples)
    for labels_k in votes:
        counts[rows, labels_k] += 1.0
    return counts / n_members


def _entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis, with ``0 log 0 = 0`` (non-positive entries count 0).

    Parameters
    ----------
    proba : ndarray of shape (..., C)

    Returns
    -------
    entropy : ndarray of shape (...), float64
    """
    positive = proba > 0
    logs = np.log(np.where(positive, proba, 1.0))
    return -np.sum(np.where(positive, proba * logs, 0.0), axis=-1)


# --------------------------------------------------------------------------- #
# Scores (higher = less trustworthy)
# --------------------------------------------------------------------------- #
def vote_margin(probabilities: ArrayLike) -> np.ndarray:
    """One minus the lead of the most voted class over the runner-up: ``1 - (share_1 - share_2)``.

    Each member votes for its argmax class (its own exact ties to the lower label, as
    :func:`numpy.argmax`); ``share_1`` and ``share_2`` are the largest and second largest
    shares of the ``K`` votes. A unanimous committee gives 0, a split vote (``share_1 ==
    share_2``) gives 1. With ``K = 1`` every digit gives 0.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` digits over ``C >= 2`` classes.

    Returns
    -------
    score : ndarray of shape (N,), float64
        In [0, 1]; higher means less trustworthy.

    Raises
    ------
    ValueError
        If ``probabilities`` is malformed.
    """
    shares = np.sort(_vote_shares(_check_probabilities(probabilities)), axis=1)
    return 1.0 - (shares[:, -1] - shares[:, -2])


def max_probability(probabilities: ArrayLike) -> np.ndarray:
    """One minus the soft vote's largest mean probability: ``1 - max_c mean_k p[k, n, c]``.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` digits over ``C >= 2`` classes.

    Returns
    -------
    score : ndarray of shape (N,), float64
        In [0, 1 - 1/C] for probability rows summing to 1; higher means less trustworthy.

    Raises
    ------
    ValueError
        If ``probabilities`` is malformed.
    """
    return 1.0 - _check_probabilities(probabilities).mean(axis=0).max(axis=1)


def predictive_entropy(probabilities: ArrayLike) -> np.ndarray:
    """Entropy (nats) of the members' mean probability: ``H(mean_k p[k, n])``, ``0 log 0 = 0``.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` digits over ``C >= 2`` classes, rows
        summing to 1.

    Returns
    -------
    score : ndarray of shape (N,), float64
        In [0, log C]; higher means less trustworthy.

    Raises
    ------
    ValueError
        If ``probabilities`` is malformed.
    """
    return _entropy(_check_probabilities(probabilities).mean(axis=0))


def mutual_information(probabilities: ArrayLike) -> np.ndarray:
    """The members' disagreement: entropy of the mean minus the mean entropy (nats).

    ``H(mean_k p[k, n]) - mean_k H(p[k, n])``, the mutual information between the label and
    the member (BALD; Houlsby et al. 2011). It is ``>= 0`` by the concavity of the entropy;
    negatives from rounding (about 1e-16) are clipped to 0. Members that agree exactly give
    0 however unsure each is; ``K = 1`` gives 0.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` digits over ``C >= 2`` classes, rows
        summing to 1.

    Returns
    -------
    score : ndarray of shape (N,), float64
        In [0, log C]; higher means less trustworthy.

    Raises
    ------
    ValueError
        If ``probabilities`` is malformed.
    """
    proba = _check_probabilities(probabilities)
    return np.maximum(_entropy(proba.mean(axis=0)) - _entropy(proba).mean(axis=0), 0.0)


def variation_ratio(probabilities: ArrayLike) -> np.ndarray:
    """One minus the share of members voting the modal label: ``1 - max_c share_c``.

    The votes are the members' argmaxes (their own exact ties to the lower label). A unanimous
    committee gives 0; ``K = 1`` gives 0.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` digits over ``C >= 2`` classes.

    Returns
    -------
    score : ndarray of shape (N,), float64
        In [0, 1 - 1/min(K, C)]; higher means less trustworthy.

    Raises
    ------
    ValueError
        If ``probabilities`` is malformed.
    """
    return 1.0 - _vote_shares(_check_probabilities(probabilities)).max(axis=1)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class UncertaintyScore:
    """An uncertainty score: its name, its function and one line saying what it measures.

    Attributes
    ----------
    name : str
    function : callable
        ``function(probabilities (K, N, C)) -> (N,)`` float64; higher means less trustworthy.
    description : str
        One line for help texts and reports.
    """

    name: str
    function: Callable[[ArrayLike], np.ndarray]
    description: str


SCORES: dict[str, UncertaintyScore] = {
    score.name: score
    for score in (
        UncertaintyScore("vote_margin", vote_margin,
                         "1 - (top vote share - runner-up vote share) of the members' labels"),
        UncertaintyScore("max_probability", max_probability, "1 - the soft vote's largest mean probability"),
        UncertaintyScore("entropy", predictive_entropy, "entropy (nats) of the members' mean probability"),
        UncertaintyScore("mutual_information", mutual_information,
                         "entropy of the mean minus the members' mean entropy (their disagreement, nats)"),
        UncertaintyScore("variation_ratio", variation_ratio, "1 - share of members voting the modal label"),
    )
}
"""Every uncertainty score by name; each returns (N,) float64 where higher means less trustworthy."""

SCORE_NAMES: tuple[str, ...] = tuple(SCORES)
"""Names accepted by :func:`get_score` (and every ``score`` argument)."""

DEFAULT_SCORE = "max_probability"
"""The score used when none is named (the best at finding the vote's errors in the issue's first look)."""


def get_score(name: str) -> UncertaintyScore:
    """The uncertainty score called ``name``; ``ValueError`` naming the choices otherwise.

    The one check of a score's name: every ``score`` argument of the package goes through it.

    Parameters
    ----------
    name : str
        A name in :data:`SCORES`.

    Returns
    -------
    UncertaintyScore

    Raises
    ------
    ValueError
        ``name`` is not in :data:`SCORES`: "score must be one of vote_margin, ..., got 'x'".
    """
    try:
        return SCORES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {name!r}") from None


def uncertainty(probabilities: ArrayLike, *, score: str = DEFAULT_SCORE) -> np.ndarray:
    """The uncertainty score named ``score`` of every digit.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members for ``N`` digits over ``C >= 2`` classes.
    score : str, default="max_probability"
        A name in :data:`SCORES`.

    Returns
    -------
    score : ndarray of shape (N,), float64
        Higher means less trustworthy.

    Raises
    ------
    ValueError
        If ``score`` is not in :data:`SCORES`, or ``probabilities`` is malformed.
    """
    return get_score(score).function(probabilities)
