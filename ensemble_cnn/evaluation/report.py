"""Evaluate an ensemble: member and ensemble accuracy, diversity, confusion matrix.

:func:`build_report` turns the members' test-set probabilities into a JSON-ready
dict; :func:`format_table` and :func:`format_markdown` render it for a terminal
and for a Markdown document; :func:`write_report` saves ``report.json`` and
``report.md`` atomically.

All accuracies, disagreements and gains in the report are fractions in [0, 1]
(gains in [-1, 1]); the text renderers show them as percentages and percentage
points.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, confusion_matrix

from ensemble_cnn.evaluation import stats
from ensemble_cnn.storage.atomic import write_json, write_text
from ensemble_cnn.evaluation.stats import _check_labels
from ensemble_cnn.inference.vote import VOTES, _check_probabilities, _check_weights, majority_ties

# Statistics conventions of every report (stated in report.md too).
CONFIDENCE = 0.95  # Wilson score intervals
SIGNIFICANCE = 0.05  # two-sided exact McNemar tests
CALIBRATION_BINS = 15
SUBSETS_PER_SIZE = 200  # member subsets per ensemble size k (all of them when fewer)

__all__ = ["build_report", "format_table", "format_markdown", "write_report"]

REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"


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
    """Evaluate every member and the majority and soft votes on a test set.

    Parameters
    ----------
    probabilities : array-like of shape (K, N, C)
        Class probabilities of ``K`` members on ``N`` test samples, ``C`` classes.
    y_true : array-like of shape (N,)
        True labels, integers in ``[0, C)``; ``N >= 1``.
    member_names : sequence of str, length K, optional
        Unique member names; defaults to ``member_0`` ... ``member_{K-1}``.
    weights : array-like of shape (K,), optional
        Per-member weights passed to both votes (see :mod:`ensemble_cnn.inference.vote`).

    Returns
    -------
    report : dict
        JSON-ready (plain ``int``/``float``/``str``/``list``/``dict``/``None``):

        - ``n_test`` (N), ``n_members`` (K), ``n_classes`` (C), ``weights``
          (list of K floats, or ``None``);
        - ``members``: list of ``{"name", "test_accuracy", "errors"}``;
        - ``members_summary``: ``mean``, ``std`` (population standard deviation,
          ``ddof=0``), ``best``, ``worst`` member accuracy, plus
          ``best_member`` / ``worst_member`` names (first one on ties);
        - ``ensemble``: one entry per rule in :data:`ensemble_cnn.inference.vote.VOTES`
          (``{"majority": {...}, "soft": {...}}``), each with ``test_accuracy``,
          ``errors`` and ``confusion_matrix`` (C x C counts, rows true labels,
          columns predicted labels ``0 .. C-1``);
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
    y = _check_labels(y_true, n_samples, n_classes)
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
        }
    ensemble["soft"].update(stats.calibration(np.tensordot(
        np.ones(n_members) / n_members if w is None else w / w.sum(), proba, axes=1), y, bins=CALIBRATION_BINS))
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


# --------------------------------------------------------------------------- #
# Rendering
# --------------------------------------------------------------------------- #
def _pct(fraction: float) -> str:
    """``0.99123`` -> ``'99.12 %'``."""
    return f"{100.0 * fraction:.2f} %"


def _pp(difference: float) -> str:
    """``0.0012`` -> ``'+0.12 pp'`` (percentage points, signed)."""
    return f"{100.0 * difference:+.2f} pp"


def _ci(entry: dict[str, Any], key: str = "ci95") -> str:
    """``'99.58–99.77'``: an entry's 95% interval in %, or ``''`` when the report has none."""
    interval = entry.get(key)
    return f"{100 * interval[0]:.2f}–{100 * interval[1]:.2f}" if interval else ""


def significance(test: dict[str, Any], *, level: float = SIGNIFICANCE) -> str:
    """One line on an exact McNemar test: ``+12/−3 digits, p = 0.035: significant at 5%``."""
    verdict = "significant" if test["p_value"] < level else "not significant"
    return (f"+{test['only_ensemble']}/−{test['only_member']} digits, p = {test['p_value']:.3g}: "
            f"{verdict} at {100 * level:.0f}%")


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(label, value, 95% CI, errors) rows shared by the text and Markdown renderers."""
    s, ens, gain = report["members_summary"], report["ensemble"], report["gain"]
    by_name = {m["name"]: m for m in report["members"]}
    rows = [
        ("members mean ± std", f"{100.0 * s['mean']:.2f} ± {100.0 * s['std']:.2f} %", "", ""),
        (f"best member ({s['best_member']})", _pct(s["best"]), _ci(by_name[s["best_member"]]),
         str(by_name[s["best_member"]]["errors"])),
        (f"worst member ({s['worst_member']})", _pct(s["worst"]), _ci(by_name[s["worst_member"]]),
         str(by_name[s["worst_member"]]["errors"])),
    ]
    rows += [(f"{name} vote", _pct(ens[name]["test_accuracy"]), _ci(ens[name]), str(ens[name]["errors"]))
             for name in ens]
    rows += [
        ("oracle (any member right)", _pct(report["oracle_accuracy"]), _ci(report, "oracle_ci95"),
         str(report["oracle_errors"])),
        ("mean pairwise disagreement", _pct(report["disagreement"]["mean"]), "", ""),
    ]
    rows += [
        (f"gain: {name} − {label}", _pp(gain[f"{name}_over_{ref}"]), "", "")
        for name in ens
        for ref, label in (("mean", "members mean"), ("best", "best member"))
    ]
    return rows


def _member_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(name, accuracy, 95% CI, errors) row of each member."""
    return [(m["name"], _pct(m["test_accuracy"]), _ci(m), str(m["errors"])) for m in report["members"]]


def _verdict_lines(report: dict[str, Any]) -> list[str]:
    """One line per vote: is it better than the best member, significantly? Plus the majority's ties."""
    lines = []
    for name, entry in report["ensemble"].items():
        test = entry.get("mcnemar_vs_best_member")
        if test is not None:
            lines.append(f"{name} vote vs best member ({test['member']}): {significance(test)}")
    ties = report["ensemble"].get("majority", {}).get("ties")
    if ties is not None:
        lines.append(f"majority ties: {ties['ties']} (broken by summed probability: {ties['by_probability']}, "
                     f"by lower label: {ties['by_label']})")
    return lines


def _tta_note(report: dict[str, Any]) -> str:
    """" (test-time augmentation: NAME, V views averaged, S s to load and predict)", or "" without it."""
    tta = report.get("tta") or {}
    if tta.get("views", "none") == "none":
        return ""
    return (f" (test-time augmentation: {tta['views']}, {tta['n_views']} views averaged per member, "
            f"{tta['predict_seconds']:.1f} s to load the members and predict)")


def format_table(report: dict[str, Any]) -> str:
    """Render a report from :func:`build_report` as a plain-text terminal table.

    One row per member (name, accuracy in % with two decimals, its 95% Wilson
    interval, errors), then the members' mean ± std (population std, ``ddof=0``),
    best and worst member, every vote, the oracle, the mean pairwise disagreement
    and the ensemble gains in percentage points (pp); then one line per vote on its
    paired test against the best member.

    Parameters
    ----------
    report : dict
        As returned by :func:`build_report`.

    Returns
    -------
    table : str
        Lines joined by newlines, with a trailing newline.
    """
    members, summary = _member_rows(report), _summary_rows(report)
    header = ("member", "accuracy", "95% CI", "errors")
    rows = [header, *members, *summary]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        return (f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
                f"{row[3]:>{widths[3]}}").rstrip()

    rule = "-" * (sum(widths) + 6)
    title = f"Ensemble of {report['n_members']} members on {report['n_test']} test samples{_tta_note(report)}"
    lines = [title, rule, line(header), rule, *map(line, members), rule, *map(line, summary), rule,
             *_verdict_lines(report)]
    return "\n".join(lines) + "\n"


def _member_detail_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Members with calibration and the majority vote's paired test against each."""
    tests = {t["member"]: t for t in report["ensemble"].get("majority", {}).get("mcnemar_vs_members", [])}
    rows = []
    for m in report["members"]:
        test = tests.get(m["name"])
        versus = f"+{test['only_ensemble']}/−{test['only_member']} ({test['p_value']:.3g})" if test else ""
        nll = f"{m['nll']:.4f}" if "nll" in m else ""
        ece = f"{100 * m['ece']:.2f} %" if "ece" in m else ""
        rows.append((m["name"], _pct(m["test_accuracy"]), _ci(m), str(m["errors"]), nll, ece, versus))
    return rows


def _calibration_lines(report: dict[str, Any]) -> list[str]:
    soft = report["ensemble"].get("soft", {})
    if "nll" not in soft:
        return []
    bins = report.get("statistics", {}).get("calibration_bins", CALIBRATION_BINS)
    return [f"Soft vote: NLL {soft['nll']:.4f}, ECE {100 * soft['ece']:.2f} % ({bins} equal-width confidence "
            "bins). NLL: mean −log p(true label); ECE: the gap between confidence and accuracy.", ""]


def _curve_lines(report: dict[str, Any]) -> list[str]:
    curve = report.get("accuracy_vs_members") or []
    if not curve:
        return []
    votes = [name for name in report["ensemble"] if f"{name}_mean" in curve[0]]
    header = ("k", "subsets", *(f"{v} mean (min–max)" for v in votes), "oracle mean")
    rows = [
        (str(row["k"]), f"{row['n_subsets']}{'' if row['exhaustive'] else ' drawn'}",
         *(f"{100 * row[f'{v}_mean']:.2f} % ({100 * row[f'{v}_min']:.2f}–{100 * row[f'{v}_max']:.2f})"
           for v in votes),
         f"{100 * row['oracle_mean']:.2f} %")
        for row in curve
    ]
    return ["## Accuracy against ensemble size", "",
            "Every vote over subsets of k members (all subsets when few, else a seeded sample): how many members "
            "the ensemble needs.", "", *_md_table(header, rows, "r" * len(header)), ""]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> list[str]:
    """Lines of a Markdown table; ``align`` holds ``'l'`` or ``'r'`` per column."""
    esc = lambda cell: str(cell).replace("|", r"\|")  # noqa: E731
    marks = [":---" if a == "l" else "---:" for a in align]
    out = ["| " + " | ".join(map(esc, header)) + " |", "| " + " | ".join(marks) + " |"]
    out += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return out


def format_markdown(report: dict[str, Any], *, title: str | None = None) -> str:
    """Render a report from :func:`build_report` as a Markdown document.

    Sections: summary, members, pairwise disagreement (K x K) and the confusion
    matrix (C x C) of the vote named by ``report["vote_shown"]`` (default: the
    first rule), all as Markdown tables.

    Parameters
    ----------
    report : dict
        As returned by :func:`build_report`.
    title : str, optional
        Level-1 heading; defaults to ``"Ensemble report"``.

    Returns
    -------
    markdown : str
    """
    names = [m["name"] for m in report["members"]]
    shown = report.get("vote_shown", next(iter(report["ensemble"])))
    confusion = report["ensemble"][shown]["confusion_matrix"]
    n_classes = len(confusion)
    weights = report.get("weights")
    dropped = report.get("dropped_members") or []
    notes = [f"**Left out: {len(dropped)} of {report.get('members_asked', len(names) + len(dropped))} members** "
             "(the votes below are of the others):", ""] if dropped else []
    notes += [f"- member_{d['index']:02d}: {d['reason']}" for d in dropped] + ([""] if dropped else [])
    lines = [
        f"# {title or 'Ensemble report'}",
        "",
        f"{report['n_members']} members, {report['n_test']} test samples, {n_classes} classes"
        + (f"; vote weights {weights}" if weights is not None else "; unweighted votes") + _tta_note(report) + ".",
        "",
        *notes,
        "## Summary",
        "",
        *_md_table(("", "accuracy", "95% CI", "errors"), _summary_rows(report), "lrrr"),
        "",
        *[f"- {line}" for line in _verdict_lines(report)],
        "",
        f"Intervals: {report.get('statistics', {}).get('interval', 'Wilson score, 95%')}; paired tests: "
        f"{report.get('statistics', {}).get('paired_test', 'exact McNemar')} (the digits only the vote gets right "
        "/ only the member gets right). Std is the population standard deviation (ddof=0) of the member "
        "accuracies; gains are differences of accuracy in percentage points (pp).",
        "",
        "## Members",
        "",
        *_md_table(("member", "accuracy", "95% CI", "errors", "NLL", "ECE", "vs majority (p)"),
                   _member_detail_rows(report), "lrrrrrr"),
        "",
        *_calibration_lines(report),
        *_curve_lines(report),
        "## Pairwise disagreement",
        "",
        "Fraction of test samples on which two members predict different labels.",
        "",
        *_md_table(
            ("", *names),
            [(a, *(_pct(v) for v in row)) for a, row in zip(names, report["disagreement"]["pairwise"])],
            "l" + "r" * len(names),
        ),
        "",
        f"## Confusion matrix ({shown} vote)",
        "",
        "Rows: true label; columns: predicted label.",
        "",
        *_md_table(
            ("true \\ pred", *map(str, range(n_classes))),
            [(str(c), *map(str, row)) for c, row in enumerate(confusion)],
            "l" + "r" * n_classes,
        ),
    ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json`` and ``report.md`` atomically into ``out_dir``.

    Parameters
    ----------
    report : dict
        As returned by :func:`build_report`.
    out_dir : path-like
        Destination folder; created if missing.

    Returns
    -------
    paths : dict
        ``{"json": Path, "markdown": Path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / REPORT_JSON, "markdown": out / REPORT_MARKDOWN}
    write_json(paths["json"], report)
    write_text(paths["markdown"], format_markdown(report))
    return paths
