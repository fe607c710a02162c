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

from ensemble_cnn._atomic import write_json, write_text
from ensemble_cnn.vote import VOTES, _check_probabilities, _check_weights

__all__ = ["build_report", "format_table", "format_markdown", "write_report"]

REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
def _check_labels(y_true: ArrayLike, n_samples: int, n_classes: int) -> np.ndarray:
    """Validate true labels against ``probabilities``' shape.

    Parameters
    ----------
    y_true : array-like of shape (N,)
        Integer labels in ``[0, n_classes)``.
    n_samples, n_classes : int
        ``N`` and ``C`` of ``probabilities``.

    Returns
    -------
    y_true : ndarray of shape (N,), dtype int64
    """
    y = np.asarray(y_true)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(f"`y_true` must have shape ({n_samples},), one label per sample; got shape {y.shape}")
    if n_samples == 0:
        raise ValueError("`y_true` must hold at least one sample; got 0")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise ValueError(f"`y_true` must hold integer labels; got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"`y_true` labels must lie in [0, {n_classes}); got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


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
    """Accuracy (fraction) and number of errors of one prediction vector."""
    return {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "errors": int(np.count_nonzero(y_true != y_pred)),
    }


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
    """Pairwise disagreement rates between members.

    Parameters
    ----------
    member_preds : ndarray of shape (K, N)

    Returns
    -------
    dict
        ``"pairwise"``: K x K nested list, entry (i, j) the fraction of samples
        on which members i and j predict different labels (zero diagonal);
        ``"mean"``: its mean over the pairs i < j (0.0 when K = 1).
    """
    n_members = member_preds.shape[0]
    pairwise = np.stack([(member_preds[i] != member_preds).mean(axis=1) for i in range(n_members)])
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
        Per-member weights passed to both votes (see :mod:`ensemble_cnn.vote`).

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
        - ``ensemble``: one entry per rule in :data:`ensemble_cnn.vote.VOTES`
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
    members = [{"name": name, **_score(y, pred)} for name, pred in zip(names, member_preds)]
    accuracies = np.array([m["test_accuracy"] for m in members])
    summary = _members_summary(accuracies, names)

    ensemble = {}
    for name, rule in VOTES.items():
        predicted = rule.labels(proba, weights=w)
        cm = confusion_matrix(y, predicted, labels=np.arange(n_classes))
        ensemble[name] = {**_score(y, predicted), "confusion_matrix": cm.astype(int).tolist()}
    gain = {
        f"{method}_over_{ref}": ensemble[method]["test_accuracy"] - summary[ref]
        for method in VOTES
        for ref in ("mean", "best")
    }
    oracle_right = np.any(member_preds == y, axis=0)  # (N,)

    return {
        "n_test": int(n_samples),
        "n_members": int(n_members),
        "n_classes": int(n_classes),
        "weights": None if w is None else w.tolist(),
        "members": members,
        "members_summary": summary,
        "ensemble": ensemble,
        "oracle_accuracy": float(np.mean(oracle_right)),
        "oracle_errors": int(np.count_nonzero(~oracle_right)),
        "disagreement": _disagreement(member_preds),
        "gain": gain,
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


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, errors) rows shared by the text and Markdown renderers."""
    s, ens, gain = report["members_summary"], report["ensemble"], report["gain"]
    errors = {m["name"]: m["errors"] for m in report["members"]}
    rows = [
        ("members mean ± std", f"{100.0 * s['mean']:.2f} ± {100.0 * s['std']:.2f} %", ""),
        (f"best member ({s['best_member']})", _pct(s["best"]), str(errors[s["best_member"]])),
        (f"worst member ({s['worst_member']})", _pct(s["worst"]), str(errors[s["worst_member"]])),
    ]
    rows += [(f"{name} vote", _pct(ens[name]["test_accuracy"]), str(ens[name]["errors"])) for name in ens]
    rows += [
        ("oracle (any member right)", _pct(report["oracle_accuracy"]), str(report["oracle_errors"])),
        ("mean pairwise disagreement", _pct(report["disagreement"]["mean"]), ""),
    ]
    rows += [
        (f"gain: {name} − {label}", _pp(gain[f"{name}_over_{ref}"]), "")
        for name in ens
        for ref, label in (("mean", "members mean"), ("best", "best member"))
    ]
    return rows


def _member_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, accuracy, errors) row of each member."""
    return [(m["name"], _pct(m["test_accuracy"]), str(m["errors"])) for m in report["members"]]


def format_table(report: dict[str, Any]) -> str:
    """Render a report from :func:`build_report` as a plain-text terminal table.

    One row per member (name, accuracy in % with two decimals, errors), then
    the members' mean ± std (population std, ``ddof=0``), best and worst member, the
    majority and soft votes, the oracle, the mean pairwise disagreement and the
    ensemble gains in percentage points (pp).

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
    header = ("member", "accuracy", "errors")
    w0 = max(len(r[0]) for r in [header, *members, *summary])
    w1 = max(len(r[1]) for r in [header, *members, *summary])
    w2 = max(len(r[2]) for r in [header, *members, *summary])

    def line(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{w0}}  {row[1]:>{w1}}  {row[2]:>{w2}}".rstrip()

    rule = "-" * (w0 + w1 + w2 + 4)
    title = f"Ensemble of {report['n_members']} members on {report['n_test']} test samples"
    lines = [title, rule, line(header), rule, *map(line, members), rule, *map(line, summary), rule]
    return "\n".join(lines) + "\n"


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
        + (f"; vote weights {weights}." if weights is not None else "; unweighted votes."),
        "",
        *notes,
        "## Summary",
        "",
        *_md_table(("", "accuracy", "errors"), _summary_rows(report), "lrr"),
        "",
        "Std is the population standard deviation (ddof=0) of the member accuracies; "
        "gains are differences of accuracy in percentage points (pp).",
        "",
        "## Members",
        "",
        *_md_table(("member", "accuracy", "errors"), _member_rows(report), "lrr"),
        "",
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
