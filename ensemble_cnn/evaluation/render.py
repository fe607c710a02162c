"""Render an ensemble report: the terminal table, ``report.md``, and writing ``report.json`` / ``report.md``.

The report dict comes from :func:`ensemble_cnn.evaluation.report.build_report`;
nothing here computes a statistic. :func:`format_table` renders it for a terminal,
:func:`format_markdown` as a Markdown document, :func:`write_report` saves
``report.json`` and ``report.md`` atomically; :func:`significance` is the one-line
verdict on a paired test. Accuracies are shown as percentages, gains as percentage
points (pp).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ensemble_cnn.evaluation.report import CALIBRATION_BINS, SIGNIFICANCE
from ensemble_cnn.inference.uncertainty import DEFAULT_SCORE
from ensemble_cnn.storage.atomic import write_json, write_text

__all__ = ["REPORT_JSON", "REPORT_MARKDOWN", "format_markdown", "format_table", "significance", "write_report"]

REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"


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


def _group_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per member-plan group (only when the run has more than one)."""
    groups = report.get("groups") or []
    if len(groups) < 2:
        return []
    votes = [name for name in report["ensemble"] if f"{name}_accuracy" in groups[0]]
    return [(g["name"], str(len(g["members"])), f"{100 * g['mean']:.2f} ± {100 * g['std']:.2f} %",
             *(_pct(g[f"{v}_accuracy"]) for v in votes)) for g in groups]


def _group_lines(report: dict[str, Any]) -> list[str]:
    rows = _group_rows(report)
    if not rows:
        return []
    votes = [name for name in report["ensemble"] if f"{name}_accuracy" in report["groups"][0]]
    return ["## Groups", "",
            "The member plan's groups: each group's members (mean ± std of their accuracy) and the group's own "
            "votes, beside the whole ensemble's above.", "",
            *_md_table(("group", "members", "members mean ± std", *(f"{v} vote" for v in votes)), rows,
                       "l" + "r" * (2 + len(votes))), ""]


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
             *_verdict_lines(report), *_unsure_lines(report)]
    groups = report.get("groups") or []
    if len(groups) > 1:
        lines += [f"group {g['name']} ({_count(len(g['members']))}): mean {100 * g['mean']:.2f} ± "
                  f"{100 * g['std']:.2f} %, its majority vote {_pct(g['majority_accuracy'])}"
                  for g in groups if "majority_accuracy" in g]
    return "\n".join(lines) + "\n"


def _unsure_lines(report: dict[str, Any]) -> list[str]:
    """The terminal's lines on the uncertainty section (the default score) and each "not a digit" set."""
    section = report.get("uncertainty") or {}
    entry = section.get("scores", {}).get(DEFAULT_SCORE)
    lines = []
    if entry is not None:
        at = {p["target_coverage"]: p for p in entry["error_at_coverage"]}
        point = at.get(0.99)
        error = (f"error {_pct_or_dash(point['error'], 3)} at {100 * point['coverage']:.2f} % coverage, "
                 if point else "")
        lines.append(f"unsure ({DEFAULT_SCORE}, {section['answer']} vote, on the test digits): {error}"
                     f"{100 * entry['coverage_at_error']['coverage']:.2f} % answered at ≤ "
                     f"{100 * section['max_error']:g} % error, {_pct_or_dash(entry['set_aside']['share'])} set aside "
                     f"for {100 * section['set_aside_error']:g} % error")
    for ood in (report.get("not_a_digit") or {}).get("sets", []):
        metrics = ood["scores"].get(DEFAULT_SCORE)
        best = max(ood["scores"].items(), key=lambda item: item[1]["auroc"], default=None)
        if metrics is not None and best is not None:
            lines.append(f"not a digit ({ood['path']}, {ood['n_images']:,} images): AUROC "
                         f"{_pct_or_dash(metrics['auroc'], 1)} with {DEFAULT_SCORE}, best "
                         f"{_pct_or_dash(best[1]['auroc'], 1)} with {best[0]}")
    return lines


def _member_detail_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Members with calibration and the majority vote's paired test against each."""
    tests = {t["member"]: t for t in report["ensemble"].get("majority", {}).get("mcnemar_vs_members", [])}
    rows = []
    for m in report["members"]:
        test = tests.get(m["name"])
        versus = f"+{test['only_ensemble']}/−{test['only_member']} ({test['p_value']:.3g})" if test else ""
        nll = f"{m['nll']:.4f}" if "nll" in m else ""
        ece = f"{100 * m['ece']:.2f} %" if "ece" in m else ""
        row = (m["name"], _pct(m["test_accuracy"]), _ci(m), str(m["errors"]), nll, ece, versus)
        rows.append(row + ((m.get("spec", {}).get("group", ""),) if len(report.get("groups") or []) > 1 else ()))
    return rows


def _calibration_lines(report: dict[str, Any]) -> list[str]:
    """A table of every vote's NLL and ECE (the votes of the report that have them), with what they mean."""
    rows = [(f"{name} vote", f"{entry['nll']:.4f}", f"{100 * entry['ece']:.2f} %")
            for name, entry in report["ensemble"].items() if "nll" in entry]
    if not rows:
        return []
    bins = report.get("statistics", {}).get("calibration_bins", CALIBRATION_BINS)
    return ["Calibration of each vote's probabilities (those whose argmax is its label, e.g. the soft vote's mean "
            "probability, the majority vote's vote shares with its tie rule folded in). NLL: mean −log p(true "
            f"label); ECE: the gap between confidence and accuracy ({bins} equal-width confidence bins).", "",
            *_md_table(("vote", "NLL", "ECE"), rows, "lrr"), ""]


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


def _pct_or_dash(fraction: float | None, digits: int = 2) -> str:
    """``0.00081`` -> ``'0.08 %'`` (``digits`` decimals); ``None`` -> ``'—'``."""
    return "—" if fraction is None else f"{100.0 * fraction:.{digits}f} %"


def _selected_cell(point: dict[str, Any]) -> str:
    """One selective point: ``'0.081 % (0.041–0.159; 8 of 9,900, 99.00 %)'``: error, its 95% interval, the errors it
    rests on among the digits answered, and the coverage reached (ties can take it past the target)."""
    if point["error"] is None:
        return "— (none answered)"
    return (f"{100 * point['error']:.3f} % ({100 * point['error_low']:.3f}–{100 * point['error_high']:.3f}; "
            f"{point['errors']:,} of {point['accepted']:,}, {100 * point['coverage']:.2f} %)")


def _uncertainty_lines(report: dict[str, Any]) -> list[str]:
    """The "When the vote is unsure" section: every score's selective figures on the test digits, the anchors."""
    section = report.get("uncertainty")
    if not section:
        return []
    coverages = section["coverages"]
    header = ("score", "AURC", *(f"error at {100 * c:g} %" for c in coverages),
              f"coverage at ≤ {100 * section['max_error']:g} % error",
              f"set aside for {100 * section['set_aside_error']:g} % error", "finds errors (AUROC)")
    rows = [
        (name, _pct_or_dash(entry["aurc"], 3), *(_selected_cell(p) for p in entry["error_at_coverage"]),
         f"{100 * entry['coverage_at_error']['coverage']:.2f} % ({entry['coverage_at_error']['errors']:,} errors)",
         _pct_or_dash(entry["set_aside"]["share"]), _pct_or_dash(entry["error_auroc"], 1))
        for name, entry in section["scores"].items()
    ]
    rows.append(("oracle (errors set aside first)", _pct_or_dash(section["oracle_aurc"], 3),
                 *("" for _ in coverages), "", "", ""))
    anchors = section.get("anchors", {})
    lecun = anchors.get("set_aside_for_0.5%_error", {})
    hendrycks = anchors.get("error_auroc", {})
    lines = [
        "## When the vote is unsure",
        "",
        f"Each uncertainty score (higher = less trustworthy) ranks the {section['n_test']:,} test digits; keeping "
        f"the surest first, the table gives the error of the **{section['answer']} vote's answers** that are kept "
        f"({section['errors']:,} errors at 100 % coverage): the area under the risk-coverage curve (AURC; the "
        "oracle, which sets the errors aside first, is the best any score can do), the error among the surest "
        "99.5 / 99 / 98 / 95 % with its 95% Wilson interval, the errors it rests on among the digits kept and the "
        "coverage reached (tied scores are kept or set aside together), the largest coverage at which the error "
        f"is at most {100 * section['max_error']:g} %, the share set aside to reach "
        f"{100 * section['set_aside_error']:g} % error, and the AUROC of the score against the vote's errors. "
        "These are descriptive points of each curve on the test digits, not thresholds to deploy: each is set on "
        "the very digits it is measured on.",
        "",
        *_md_table(header, rows, "l" + "r" * (len(header) - 1)),
        "",
    ]
    if lecun:
        lines.append(f"- Anchors: share set aside for 0.5 % error, LeNet-4 {_pct_or_dash(lecun.get('LeNet-4'), 1)}, "
                     f"boosted LeNet-4 {_pct_or_dash(lecun.get('boosted LeNet-4'), 1)} ({lecun.get('source', '')}).")
    if hendrycks:
        lines.append(f"- Finding the errors: maximum softmax probability "
                     f"{_pct_or_dash(hendrycks.get('maximum softmax probability'), 0)} AUROC "
                     f"({hendrycks.get('source', '')}).")
    scores = "; ".join(f"{name}: {entry['description']}" for name, entry in section["scores"].items()
                       if entry.get("description"))
    if scores:
        lines.append(f"- The scores: {scores}.")
    return lines + ["", *_calibrated_lines(section.get("calibrated"))]


def _calibrated_lines(calibrated: dict[str, Any] | None) -> list[str]:
    """The thresholds fixed on the calibration digits, measured on the test digits; or the one-line note."""
    if not calibrated:
        return []
    heading = ["### Thresholds fixed on the calibration digits", ""]
    if "note" in calibrated:
        return [*heading, f"Calibrated thresholds: {calibrated['note']}.", ""]
    m = calibrated["n_calibration"]
    coverages = calibrated["coverages"]
    header = ("score", *(f"{100 * c:g} % on calibration" for c in coverages),
              f"≤ {100 * calibrated['max_error']:g} % error on calibration")
    rows = []
    for name, entry in calibrated["scores"].items():
        at_error = entry["at_error"]
        rows.append((name, *(_selected_cell(p) for p in entry["at_coverage"]),
                     f"{_selected_cell(at_error)} [{100 * at_error['calibration_coverage']:.2f} % of calibration, "
                     f"{at_error['calibration_errors']:,} errors]"))
    conformal = calibrated["conformal"]
    set_rows = [(f"{100 * level['level']:g} %", "∞ (every label)" if level["every_label"] else
                 f"{level['threshold']:.4g}", _pct_or_dash(level["coverage"]), f"{level['mean_size']:.3f}",
                 _pct_or_dash(level["singletons"]), _pct_or_dash(level["empty"]))
                for level in conformal["levels"]]
    return [
        *heading,
        f"The honest figures: each threshold is fixed on the run's {m:,} calibration digits (held out by every "
        "member, outside the test set) and then applied to the test digits. Each column's threshold answers that "
        "share of the calibration digits (their score quantile, the same vote's answers); the cells give, on the "
        "test digits, the error with its 95% Wilson interval, the errors it rests on among the digits answered "
        "and the coverage reached. The last column's threshold is the largest whose error on the calibration "
        f"digits is at most {100 * calibrated['max_error']:g} % (— : none is).",
        "",
        *_md_table(header, rows, "l" + "r" * (len(header) - 1)),
        "",
        f"Conformal prediction sets (split conformal, {conformal['method'].upper()} on the soft vote's mean "
        "probabilities of the members evaluated): the threshold is the ⌈(M + 1)·level⌉-th smallest of the "
        f"M = {m:,} calibration digits' scores, and a test digit's set holds every label within it. The guarantee is "
        "marginal: on average over digits like the calibration ones (exchangeable with them), the set holds the "
        "true label with probability at least the level; not for each digit, nor for digits unlike them. When "
        "⌈(M + 1)·level⌉ > M the threshold is infinite and every set holds every label. An **empty set** "
        "(no label fits) must be reported as \"unsure\", never as an answer.",
        "",
        *_md_table(("level", "threshold", "coverage on test", "mean set size", "singletons", "empty (unsure)"),
                   set_rows, "lrrrrr"),
        "",
    ]


def _ood_lines(report: dict[str, Any]) -> list[str]:
    """The "Not a digit" section: every score's detection metrics on each set against the test digits, the anchors."""
    section = report.get("not_a_digit")
    if not section:
        return []
    lines = ["## Not a digit", "",
             "How well each score tells images that are not digits from the test digits (higher score = "
             "flagged). AUROC: the chance that an image of the set scores above a test digit. FPR at 95% TPR, "
             "two conventions: **set positive** (OpenOOD v1.5, the anchors' convention): the share of test "
             "digits flagged when 95% of the set is; **digits positive** (Hendrycks & Gimpel, OpenOOD v1): the "
             "share of the set passing as digits when 95% of the digits pass. AUPR: average precision with the "
             "digits (in) or the set (out) positive.", ""]
    header = ("score", "AUROC", "FPR95 (set positive)", "FPR95 (digits positive)", "AUPR in", "AUPR out")
    for entry in section["sets"]:
        rows = [(name, _pct_or_dash(m["auroc"], 1), _pct_or_dash(m["fpr_at_tpr_ood_positive"], 1),
                 _pct_or_dash(m["fpr_at_tpr"], 1), _pct_or_dash(m["aupr_in"], 1), _pct_or_dash(m["aupr_out"], 1))
                for name, m in entry["scores"].items()]
        lines += [f"### {entry['path']}", "", f"{entry['n_images']:,} images ({entry['read']}).", "",
                  *_md_table(header, rows, "lrrrrr"), ""]
        default = entry.get("default_threshold")
        if default:
            rule = default.get("rule") or f"{default['score']} above {default['threshold']:.4g}"
            lines += [f"At the default threshold of `predict` ({rule}, "
                      f"fixed so that {_pct_or_dash(default['digit_pass'], 1)} of the {default['n_calibration']:,} "
                      f"calibration digits pass): **{_pct_or_dash(default['flagged'], 1)} of these images flagged "
                      f"\"not a digit\"**, and {_pct_or_dash(default['digits_flagged'], 2)} of the test digits.", ""]
    anchors = section.get("anchors") or {}
    quoted = [f"{name}: AUROC {_pct_or_dash(values.get('auroc'), 1)}"
              + (f", FPR95 (set positive) {_pct_or_dash(values['fpr_at_tpr_ood_positive'], 0)}"
                 if "fpr_at_tpr_ood_positive" in values else "")
              for name, values in anchors.items() if isinstance(values, dict)]
    if quoted:
        lines += [f"Anchors ({anchors.get('source', '')}): {'; '.join(quoted)}.", ""]
    return lines


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
        *_md_table(("member", "accuracy", "95% CI", "errors", "NLL", "ECE", "vs majority (p)")
                   + (("group",) if len(report.get("groups") or []) > 1 else ()),
                   _member_detail_rows(report), "lrrrrrrl"[:7 + (len(report.get("groups") or []) > 1)]),
        "",
        *_group_lines(report),
        *_calibration_lines(report),
        *_curve_lines(report),
        *_uncertainty_lines(report),
        *_ood_lines(report),
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


def _count(n: int) -> str:
    return f"{n} member" if n == 1 else f"{n} members"
