""""Not a digit": how well an uncertainty score tells real digits from images that are not digits.

Scikit-learn metrics on two sets of scores of one uncertainty score
(:data:`ensemble_cnn.inference.uncertainty.SCORES`, higher = less trustworthy): the scores of
in-distribution digits (e.g. MNIST's test digits) and of out-of-distribution images (e.g.
Fashion-MNIST, noise). One rule, as in :mod:`ensemble_cnn.evaluation.selective`: an image is
**accepted** as a digit when its score is at most the threshold, **flagged** above it.

* :func:`ood_metrics` -- AUROC, the false-positive rate at 95% true-positive rate (both
  conventions in use, see there), AUPR with either class positive;
* :func:`flagged_share` -- the share of images a threshold flags (e.g. a threshold fixed on
  calibration digits with :func:`ensemble_cnn.evaluation.selective.threshold_for_coverage`).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ensemble_cnn.evaluation.selective import _check_scores
from ensemble_cnn.shares import check_share

__all__ = ["flagged_share", "ood_metrics"]


def _fpr_at_tpr(positive: np.ndarray, scores: np.ndarray, tpr: float) -> tuple[float, float]:
    """The false-positive rate at the first ROC point whose true-positive rate reaches ``tpr``.

    Parameters
    ----------
    positive : ndarray of shape (N,), bool
    scores : ndarray of shape (N,)
        Higher = more likely positive.
    tpr : float

    Returns
    -------
    (fpr, threshold) : tuple of float
        Positive means ``scores >= threshold``.
    """
    fpr, rates, thresholds = roc_curve(positive, scores, drop_intermediate=False)
    first = int(np.argmax(rates >= tpr))
    return float(fpr[first]), float(thresholds[first])


def ood_metrics(in_scores: ArrayLike, ood_scores: ArrayLike, *, tpr: float = 0.95) -> dict[str, float]:
    """Detection metrics of out-of-distribution images against in-distribution digits.

    Parameters
    ----------
    in_scores : array-like of shape (N_in,)
        Scores of real digits (in-distribution), higher = less trustworthy. Finite, non-empty.
    ood_scores : array-like of shape (N_ood,)
        Scores of images that are not digits (out-of-distribution). Finite, non-empty.
    tpr : float, default=0.95
        True-positive rate of the false-positive rates, in (0, 1].

    Returns
    -------
    dict
        * ``auroc``: the probability that an OOD image scores higher than a real digit, ties
          counting one half (:func:`sklearn.metrics.roc_auc_score`); 1 perfect, 0.5 chance.
          The same whichever class is called positive.
        * ``fpr_at_tpr``: positives = real digits (Hendrycks & Gimpel 2017; OpenOOD v1): the
          threshold ``threshold`` accepts at least ``tpr`` of the real digits (the smallest such
          score, ``selective.threshold_for_coverage(in_scores, tpr)``), and ``fpr_at_tpr`` is the
          share of OOD images it accepts (``ood_score <= threshold``): the shoes that pass as
          digits when 95% of digits pass.
        * ``fpr_at_tpr_ood_positive``: positives = OOD images (OpenOOD v1.5's ``fpr@95``): the
          share of real digits flagged when the threshold flags at least ``tpr`` of the OOD images.
        * ``aupr_in`` (real digits positive, ranked by ``-score``) and ``aupr_out`` (OOD images
          positive, ranked by ``score``): average precision
          (:func:`sklearn.metrics.average_precision_score`, the step-wise area; OpenOOD uses the
          trapezoidal area under the precision-recall points, which reads slightly higher).
        * ``tpr``, ``threshold``, ``n_in``, ``n_ood``.

    Raises
    ------
    ValueError
        If the scores are not non-empty finite 1-D arrays, or ``tpr`` is outside (0, 1].
    """
    inside = _check_scores(in_scores, "in_scores")
    outside = _check_scores(ood_scores, "ood_scores")
    tpr = check_share(tpr, "tpr", one=True)
    scores = np.concatenate([inside, outside])
    is_ood = np.concatenate([np.zeros(inside.shape[0], dtype=bool), np.ones(outside.shape[0], dtype=bool)])
    fpr_in_positive, negated_threshold = _fpr_at_tpr(~is_ood, -scores, tpr)
    fpr_ood_positive, _ = _fpr_at_tpr(is_ood, scores, tpr)
    return {
        "auroc": float(roc_auc_score(is_ood, scores)),
        "fpr_at_tpr": fpr_in_positive,
        "fpr_at_tpr_ood_positive": fpr_ood_positive,
        "aupr_in": float(average_precision_score(~is_ood, -scores)),
        "aupr_out": float(average_precision_score(is_ood, scores)),
        "tpr": tpr,
        "threshold": -negated_threshold,
        "n_in": int(inside.shape[0]),
        "n_ood": int(outside.shape[0]),
    }


def flagged_share(scores: ArrayLike, threshold: float) -> float:
    """The share of images a threshold flags as "not a digit" (``score > threshold``).

    Parameters
    ----------
    scores : array-like of shape (N,)
        Scores of the images, higher = less trustworthy. Finite, non-empty.
    threshold : float
        E.g. ``selective.threshold_for_coverage(calibration_scores, 0.995)``: at least 99.5%
        of the calibration digits pass.

    Returns
    -------
    share : float
        In [0, 1].
    """
    values = _check_scores(scores)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("`threshold` must be a number; got NaN")
    return float(np.mean(values > threshold))
