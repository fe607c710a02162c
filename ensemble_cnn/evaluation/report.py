"""Build an ensemble report: member and vote accuracy, intervals, paired tests, calibration, diversity.

:func:`build_report` turns the members' test-set probabilities into a JSON-ready
dict: accuracies with their intervals, paired tests, the ensemble-size curve, the
calibration of every member and every vote in :data:`~ensemble_cnn.inference.vote.VOTES`,
the pairwise disagreement and the majority vote's ties. :func:`uncertainty_section` adds how well
each uncertainty score picks the vote's answers to trust (selective prediction on the test
digits), :func:`calibrated_section` the same with thresholds fixed on the run's calibration digits and the
conformal prediction sets they give, :func:`ood_section` how well it tells an image set that is not digits
from them. Rendering it (the terminal table, ``report.md``) and writing ``report.json`` / ``report.md`` is
:mod:`ensemble_cnn.evaluation.render`'s job.

All accuracies, disagreements and gains in the report are fractions in [0, 1]
(gains in [-1, 1]); the renderers show them as percentages and percentage points.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, confusion_matrix

from ensemble_cnn.evaluation import stats
from ensemble_cnn.evaluation.ood import flagged_share, ood_metrics
from ensemble_cnn.evaluation.selective import aurc, calibrated_selection, coverage_at_error, \
    curve_aurc, error_at_coverage, error_auroc, oracle_curve, select, threshold_for_error
from ensemble_cnn.inference.conformal import conformal_quantile, conformity_scores, prediction_sets, set_statistics
from ensemble_cnn.inference.uncertainty import SCORES
from ensemble_cnn.inference.vote import VOTES, _check_probabilities, _check_weights, check_true_labels, majority_ties

# Statistics conventions of every report (stated in report.md too).
CONFIDENCE = 0.95  # Wilson score intervals
SIGNIFICANCE = 0.05  # two-sided exact McNemar tests
CALIBRATION_BINS = 15
SUBSETS_PER_SIZE = 200  # member subsets per ensemble size k (all of them when fewer)
SELECTIVE_COVERAGES = (0.995, 0.99, 0.98, 0.95)  # the error of the answers among the surest of these shares
SELECTIVE_MAX_ERROR = 0.001  # the largest coverage at which the error is at most this
SET_ASIDE_ERROR = 0.005  # the share set aside to reach this error (LeCun et al. 1998, Fig. 10)
OOD_TPR = 0.95  # "not a digit": false-positive rates at this true-positive rate
CONFORMAL_LEVELS = (0.99, 0.999)  # split-conformal prediction sets at these coverage levels
CONFORMAL_METHOD = "lac"  # on the soft vote's mean probabilities
NO_CALIBRATION_NOTE = "no calibration digits (train with --holdout shared)"

# Published figures the report's own stand beside (fractions).
SELECTIVE_ANCHORS = {
    "set_aside_for_0.5%_error": {"LeNet-4": 0.018, "boosted LeNet-4": 0.005,
                                 "source": "LeCun et al. 1998, Fig. 10, on MNIST's test set"},
    "error_auroc": {"maximum softmax probability": 0.97,
                    "source": "Hendrycks & Gimpel 2017, MNIST's errors against its right answers"},
}
OOD_ANCHORS = {
    "source": "OpenOOD v1.5's MNIST benchmark: a LeNet at 99.60% accuracy, Fashion-MNIST as the near set",
    "max_probability": {"auroc": 0.946, "fpr_at_tpr_ood_positive": 0.24},
    "mahalanobis": {"auroc": 0.989},
}

__all__ = ["CALIBRATION_BINS", "CONFIDENCE", "CONFORMAL_LEVELS", "CONFORMAL_METHOD", "NO_CALIBRATION_NOTE",
           "OOD_ANCHORS", "OOD_TPR", "SELECTIVE_ANCHORS", "SELECTIVE_COVERAGES",
           "SELECTIVE_MAX_ERROR", "SET_ASIDE_ERROR", "SIGNIFICANCE", "SUBSETS_PER_SIZE", "build_report",
           "calibrated_section", "group_summaries", "ood_section", "uncertainty_section"]


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_member_names(member_names: Sequence[str] | None, n_members: int) -> list[str]:
    """Validate member names; ``None`` gives ``member_0``, ``member_1``, ...

    Returns
    -------
    names : list of str, length K
    """
    if member_names is None:
        return [f"member_{k}" for k in range(n_members)]
    names = [str(name) for name in member_names]
    if len(names) != n_members:
        raise ValueError(f"`member_names` must hold {n_members} names, one per member; got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"`member_names` must be unique; got {names}")
    return names


# --------------------------------------------------------------------------- #
# Metrics
# --------------------------------------------------------------------------- #
def _score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy (fraction) with its 95% Wilson interval, and the number of errors, of one prediction vector."""
    right = int(np.count_nonzero(y_true == y_pred))
    return {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "ci95": list(stats.wilson_interval(right, len(y_true), confidence=CONFIDENCE)),
        "errors": int(len(y_true) - right),
    }


def _mcnemar(ensemble_right: np.ndarray, member_right: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test of the ensemble against one member, with the ensemble's view of the counts."""
    test = stats.mcnemar_exact(ensemble_right, member_right)
    return {"only_ensemble": test["only_a"], "only_member": test["only_b"], "p_value": test["p_value"]}


def _members_summary(accuracies: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Mean, population std (``ddof=0``), best and worst member accuracy.

    Parameters
    ----------
    accuracies : ndarray of shape (K,)
    names : list of str, length K
    """
    best, worst = int(np.argmax(accuracies)), int(np.argmin(accuracies))
    return {
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies, ddof=0)),
        "best": float(accuracies[best]),
        "worst": float(accuracies[worst]),
        "best_member": names[best],
        "worst_member": names[worst],
    }


def _disagreement(member_preds: np.ndarray) -> dict[str, Any]:
    """Pairwise disagreement (see :func:`ensemble_cnn.evaluation.stats.disagreement_matrix`) and its mean over pairs."""
    pairwise = stats.disagreement_matrix(member_preds)
    n_members = member_preds.shape[0]
    upper = np.triu_indices(n_members, k=1)
    mean = float(pairwise[upper].mean()) if n_members > 1 else 0.0
    return {"pairwise": pairwise.astype(float).tolist(), "mean": mean}


def build_report(
    probabilities: ArrayLike,
    y_true: ArrayLike,
    *,
    member_names: Sequence[str] | None = None,
    weights: ArrayLike | None = None,
) -> dict[str, Any]:
    """Evaluate every member and every vote in :data:`~ensemble_cnn.inference.vote.VOTES` on a test set.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members on ``N`` test samples, ``C`` classes.
    y_true : array-like of shape (N,)
        True labels, integers in ``[0, C)``; ``N >= 1``.
    member_names : sequence of str, length K, optional
        Unique member names; defaults to ``member_0`` ... ``member_{K-1}``.
    weights : array-like of shape (K,), optional
        Per-member weights passed to every vote (see :mod:`ensemble_cnn.inference.vote`).

    Returns
    -------
    report : dict
        JSON-ready (plain ``int``/``float``/``str``/``list``/``dict``/``None``):

        - ``n_test`` (N), ``n_members`` (K), ``n_classes`` (C), ``weights``
          (list of K floats, or ``None``);
        - ``members``: list of ``{"name", "test_accuracy", "ci95", "errors", "nll", "ece"}``;
        - ``members_summary``: ``mean``, ``std`` (population standard deviation,
          ``ddof=0``), ``best``, ``worst`` member accuracy, plus
          ``best_member`` / ``worst_member`` names (first one on ties);
        - ``ensemble``: one entry per rule in :data:`ensemble_cnn.inference.vote.VOTES`
          (``{"majority": {...}, "soft": {...}}``), each with ``test_accuracy``,
          ``ci95``, ``errors``, ``confusion_matrix`` (C x C counts, rows true labels,
          columns predicted labels ``0 .. C-1``), its paired tests
          (``mcnemar_vs_best_member``, ``mcnemar_vs_members``) and the calibration
          (``nll``, ``ece``) of its probabilities (``VOTES[name].shares``); the
          majority's entry also holds its ``ties``;
        - ``oracle_accuracy``: fraction of samples at least one member gets right,
          ``oracle_errors``: number of samples every member gets wrong;
        - ``disagreement``: ``pairwise`` (K x K fractions) and ``mean`` over i < j;
        - ``gain``: ``<rule>_over_mean`` and ``<rule>_over_best`` for every rule
          (accuracy differences).

        Accuracies are fractions in [0, 1].

    Raises
    ------
    ValueError
        If an argument has the wrong shape or invalid values.
    """
    proba = _check_probabilities(probabilities)
    n_members, n_samples, n_classes = proba.shape
    y = check_true_labels(y_true, n_samples, n_classes)
    names = _check_member_names(member_names, n_members)
    w = None if weights is None else _check_weights(weights, n_members)

    member_preds = np.argmax(proba, axis=2)  # (K, N)
    member_right = member_preds == y  # (K, N)
    members = [
        {"name": name, **_score(y, pred), **stats.calibration(p, y, bins=CALIBRATION_BINS)}
        for name, pred, p in zip(names, member_preds, proba)
    ]
    accuracies = np.array([m["test_accuracy"] for m in members])
    summary = _members_summary(accuracies, names)
    best = int(np.argmax(accuracies))

    ensemble = {}
    for name, rule in VOTES.items():
        predicted = rule.labels(proba, weights=w)
        right = predicted == y
        cm = confusion_matrix(y, predicted, labels=np.arange(n_classes))
        ensemble[name] = {
            **_score(y, predicted),
            "confusion_matrix": cm.astype(int).tolist(),
            "mcnemar_vs_best_member": {"member": names[best], **_mcnemar(right, member_right[best])},
            "mcnemar_vs_members": [{"member": m, **_mcnemar(right, r)} for m, r in zip(names, member_right)],
            # the vote's own probabilities (argmax: its label): soft's mean, majority's vote shares
            **stats.calibration(rule.shares(proba, weights=w), y, bins=CALIBRATION_BINS),
        }
    if "majority" in ensemble:
        ensemble["majority"]["ties"] = majority_ties(proba, weights=w)
    gain = {
        f"{method}_over_{ref}": ensemble[method]["test_accuracy"] - summary[ref]
        for method in VOTES
        for ref in ("mean", "best")
    }
    oracle_right = np.any(member_right, axis=0)  # (N,)
    curve = stats.vote_subset_curve(
        proba, y, rules={name: rule.labels for name, rule in VOTES.items()}, max_subsets=SUBSETS_PER_SIZE, seed=0,
    ) if w is None else []

    return {
        "n_test": int(n_samples),
        "n_members": int(n_members),
        "n_classes": int(n_classes),
        "weights": None if w is None else w.tolist(),
        "members": members,
        "members_summary": summary,
        "ensemble": ensemble,
        "oracle_accuracy": float(np.mean(oracle_right)),
        "oracle_ci95": list(stats.wilson_interval(int(oracle_right.sum()), n_samples, confidence=CONFIDENCE)),
        "oracle_errors": int(np.count_nonzero(~oracle_right)),
        "disagreement": _disagreement(member_preds),
        "gain": gain,
        "accuracy_vs_members": curve,
        "statistics": {
            "interval": f"Wilson score, {100 * CONFIDENCE:.0f}%",
            "paired_test": f"exact (binomial) McNemar, two-sided, significant at {100 * SIGNIFICANCE:.0f}%",
            "calibration_bins": CALIBRATION_BINS,
            "subsets_per_size": SUBSETS_PER_SIZE,
        },
    }


def group_summaries(probabilities: ArrayLike, y_true: ArrayLike, specs: Sequence[dict[str, Any]],
                    member_names: Sequence[str]) -> list[dict[str, Any]]:
    """Each member-plan group's members, their mean accuracy and the group's own votes, in plan order.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
    y_true : array-like of shape (N,)
    specs : sequence of dict, length K
        Each member's spec (:meth:`ensemble_cnn.config.TrainConfig.member_spec`): its ``group`` and settings.
    member_names : sequence of str, length K

    Returns
    -------
    list of dict
        ``{"name", "members", "spec", "mean", "std", "<vote>_accuracy" for every vote}``
        (fractions; ``std`` with ``ddof=0``), one per group.
    """
    proba = _check_probabilities(probabilities)
    y = check_true_labels(y_true, proba.shape[1], proba.shape[2])
    order: dict[str, list[int]] = {}
    for position, spec in enumerate(specs):
        order.setdefault(spec["group"], []).append(position)
    groups = []
    for name, positions in order.items():
        subset = proba[positions]
        accuracies = np.mean(np.argmax(subset, axis=2) == y, axis=1)
        spec = {key: value for key, value in specs[positions[0]].items() if key != "group"}
        groups.append({
            "name": name,
            "members": [str(member_names[p]) for p in positions],
            "spec": spec,
            "mean": float(np.mean(accuracies)),
            "std": float(np.std(accuracies, ddof=0)),
            **{f"{vote}_accuracy": float(np.mean(rule.labels(subset) == y)) for vote, rule in VOTES.items()},
        })
    return groups


def _finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` for NaN and infinities (the report is strict JSON)."""
    return float(value) if math.isfinite(value) else None


def _selected(result: dict[str, float]) -> dict[str, Any]:
    """A :func:`~ensemble_cnn.evaluation.selective.select` result as strict JSON: nothing accepted gives a
    ``None`` error (NaN) and, for an error target no block reaches, a ``None`` threshold (-inf)."""
    return {key: _finite_or_none(value) if isinstance(value, float) else value for key, value in result.items()}


def uncertainty_section(scores: Mapping[str, ArrayLike], correct: ArrayLike, *, answer: str) -> dict[str, Any]:
    """Selective prediction on the test digits: for every score, how well it picks the answers to trust.

    Descriptive points of each score's risk-coverage curve (:mod:`ensemble_cnn.evaluation.selective`)
    on the digits themselves, not thresholds to deploy: each threshold here has seen these
    digits' scores (and, for the error targets, their answers).

    Parameters
    ----------
    scores : mapping of str to array-like of shape (N,)
        Each score's values (e.g. every entry of :data:`ensemble_cnn.inference.uncertainty.SCORES`
        on the members' test probabilities), higher = less trustworthy.
    correct : array-like of shape (N,)
        Whether the vote ``answer`` got each digit right.
    answer : str
        The vote whose answers are judged (named in the report).

    Returns
    -------
    dict
        JSON-ready: ``answer``, ``n_test``, ``errors`` (the vote's, at 100% coverage),
        ``oracle_aurc`` (the best any score could do), ``coverages``, ``max_error``,
        ``set_aside_error``, ``anchors`` (:data:`SELECTIVE_ANCHORS`) and ``scores``: per name,
        ``aurc``; ``error_at_coverage``: one :func:`~ensemble_cnn.evaluation.selective.error_at_coverage`
        result per coverage in :data:`SELECTIVE_COVERAGES` (``target_coverage``, ``threshold``,
        ``accepted``, ``errors``: the count the error rests on, ``coverage`` reached (ties
        come along, so it can exceed the target), ``error`` with its 95% Wilson interval
        ``error_low``, ``error_high``); ``coverage_at_error``: the largest coverage whose
        error is at most :data:`SELECTIVE_MAX_ERROR`; ``set_aside``: the share of digits set
        aside for an error of at most :data:`SET_ASIDE_ERROR` (``1 - coverage`` of that
        point, with the point); ``error_auroc`` (:func:`error_auroc`, ``None`` without errors).
        Fractions in [0, 1].
    """
    right = np.asarray(correct, dtype=bool)
    n_test = int(right.shape[0])
    section: dict[str, Any] = {
        "answer": answer,
        "n_test": n_test,
        "errors": int(np.count_nonzero(~right)),
        "oracle_aurc": curve_aurc(oracle_curve(right)),
        "coverages": list(SELECTIVE_COVERAGES),
        "max_error": SELECTIVE_MAX_ERROR,
        "set_aside_error": SET_ASIDE_ERROR,
        "anchors": SELECTIVE_ANCHORS,
        "scores": {},
    }
    for name, values in scores.items():
        for_error = coverage_at_error(values, right, SET_ASIDE_ERROR, confidence=CONFIDENCE)
        section["scores"][name] = {
            "description": SCORES[name].description if name in SCORES else "",
            "aurc": aurc(values, right),
            "error_at_coverage": [_selected(error_at_coverage(values, right, c, confidence=CONFIDENCE))
                                  for c in SELECTIVE_COVERAGES],
            "coverage_at_error": _selected(coverage_at_error(values, right, SELECTIVE_MAX_ERROR,
                                                             confidence=CONFIDENCE)),
            "set_aside": {"share": 1.0 - for_error["coverage"], **_selected(for_error)},
            "error_auroc": error_auroc(values, right),
        }
    return section


def calibrated_section(calibration_scores: Mapping[str, ArrayLike], calibration_correct: ArrayLike,
                       scores: Mapping[str, ArrayLike], correct: ArrayLike, *, calibration_mean: ArrayLike,
                       calibration_labels: ArrayLike, test_mean: ArrayLike, test_labels: ArrayLike) -> dict[str, Any]:
    """Thresholds fixed on the calibration digits, measured on the test digits: the honest figures.

    Selective prediction: for every score, the threshold accepting each share of
    :data:`SELECTIVE_COVERAGES` of the calibration digits
    (:func:`~ensemble_cnn.evaluation.selective.calibrated_selection`), and the one whose error
    on them is at most :data:`SELECTIVE_MAX_ERROR`
    (:func:`~ensemble_cnn.evaluation.selective.threshold_for_error`), each applied to the test
    digits. Conformal prediction sets (split conformal, :data:`CONFORMAL_METHOD` on the mean
    probabilities) at every level of :data:`CONFORMAL_LEVELS`: the quantile of the calibration
    digits' conformity scores, then the sets of the test digits.

    Parameters
    ----------
    calibration_scores : mapping of str to array-like of shape (M,)
        Each score on the calibration digits (the same members as the test scores).
    calibration_correct : array-like of shape (M,)
        Whether the vote got each calibration digit right.
    scores : mapping of str to array-like of shape (N,)
        Each score on the test digits, the same names.
    correct : array-like of shape (N,)
        Whether the same vote got each test digit right.
    calibration_mean, test_mean : array-like of shape (M, C), (N, C)
        The soft vote's mean probabilities on the calibration and the test digits.
    calibration_labels, test_labels : array-like of shape (M,), (N,)
        Their true labels.

    Returns
    -------
    dict
        JSON-ready: ``n_calibration`` (M), ``coverages``, ``max_error``, ``scores``: per name,
        ``at_coverage`` (one calibrated selection per coverage: ``target_coverage``,
        ``calibration_coverage``, then :func:`~ensemble_cnn.evaluation.selective.select`'s keys on
        the test digits: ``threshold``, ``accepted``, ``errors``, ``coverage``, ``error``,
        ``error_low``, ``error_high``) and ``at_error`` (``target_error``, ``calibration_coverage``,
        ``calibration_errors`` and the test figures; a ``None`` threshold: no block of the
        calibration digits is that accurate, nothing accepted); ``conformal``: ``method`` and
        ``levels``, per level ``level``, ``threshold`` (``None``: infinite, every label, when
        ``ceil((M + 1) * level) > M``), ``every_label`` and
        :func:`~ensemble_cnn.inference.conformal.set_statistics` of the test sets (``n_digits``,
        ``coverage``, ``mean_size``, ``singletons``, ``empty``).
    """
    calibration_right = np.asarray(calibration_correct, dtype=bool)
    right = np.asarray(correct, dtype=bool)
    section: dict[str, Any] = {
        "n_calibration": int(calibration_right.shape[0]),
        "coverages": list(SELECTIVE_COVERAGES),
        "max_error": SELECTIVE_MAX_ERROR,
        "scores": {},
    }
    for name, values in scores.items():
        fixed = np.asarray(calibration_scores[name], dtype=np.float64)
        threshold = threshold_for_error(fixed, calibration_right, SELECTIVE_MAX_ERROR)
        on_calibration = select(fixed, calibration_right, threshold)
        section["scores"][name] = {
            "at_coverage": [_selected(calibrated_selection(fixed, values, right, coverage=c, confidence=CONFIDENCE))
                            for c in SELECTIVE_COVERAGES],
            "at_error": _selected({"target_error": SELECTIVE_MAX_ERROR,
                                   "calibration_coverage": on_calibration["coverage"],
                                   "calibration_errors": on_calibration["errors"],
                                   **select(values, right, threshold, confidence=CONFIDENCE)}),
        }
    fit = conformity_scores(calibration_mean, calibration_labels, method=CONFORMAL_METHOD)
    levels = []
    for level in CONFORMAL_LEVELS:
        threshold = conformal_quantile(fit, level)
        sets = prediction_sets(test_mean, threshold, method=CONFORMAL_METHOD)
        levels.append({"level": level, "threshold": _finite_or_none(threshold), "every_label": math.isinf(threshold),
                       **set_statistics(sets, np.asarray(test_labels))})
    section["conformal"] = {"method": CONFORMAL_METHOD, "levels": levels}
    return section


def ood_section(in_scores: Mapping[str, ArrayLike], ood_scores: Mapping[str, ArrayLike], *, path: str,
                read: str, thresholds: Any = None) -> dict[str, Any]:
    """One "not a digit" set against the test digits: every score's detection metrics.

    Parameters
    ----------
    in_scores, ood_scores : mapping of str to array-like
        Each score's values on the test digits (N_in,) and on the set's images (N_ood,), the
        same names in both; higher = less trustworthy.
    path : str
        Where the set was read (named in the report).
    read : str
        How it was read (:func:`ensemble_cnn.inference.paths.load_image_set`).
    thresholds : Thresholds, optional
        The run's default thresholds (:meth:`~ensemble_cnn.inference.ensemble.Ensemble.thresholds`,
        fixed on its calibration digits): adds ``default_threshold``, what ``predict`` flags.

    Returns
    -------
    dict
        ``path``, ``read``, ``n_images``, ``default_threshold`` (``score``, ``rule`` in words, ``threshold``,
        ``digit_pass``, ``n_calibration``, ``flagged``: the share of the set flagged "not a digit",
        ``digits_flagged``: the share of test digits flagged; ``None`` without thresholds) and ``scores``:
        per name, :func:`ensemble_cnn.evaluation.ood.ood_metrics`
        at :data:`OOD_TPR` (``auroc``; ``fpr_at_tpr_ood_positive``: the share of digits flagged
        when 95% of the set is, OpenOOD v1.5's convention, the anchors'; ``fpr_at_tpr``: the share
        of the set passing as digits when 95% of the digits pass; ``aupr_in``, ``aupr_out``, ...).
    """
    metrics = {name: ood_metrics(in_scores[name], values, tpr=OOD_TPR) for name, values in ood_scores.items()}
    n_images = next(iter(metrics.values()))["n_ood"] if metrics else 0
    default = None
    if thresholds is not None and thresholds.ood_score in ood_scores:
        name, limit = thresholds.ood_score, thresholds.not_a_digit_above
        default = {"score": name, "rule": thresholds.not_a_digit_rule(), "threshold": limit,
                   "digit_pass": thresholds.digit_pass,
                   "n_calibration": thresholds.n_calibration, "flagged": flagged_share(ood_scores[name], limit),
                   "digits_flagged": flagged_share(in_scores[name], limit)}
    return {"path": path, "read": read, "n_images": n_images, "default_threshold": default, "scores": metrics}
