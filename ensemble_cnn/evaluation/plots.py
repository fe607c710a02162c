"""PNG figures of an ensemble report: accuracies, confusion matrix, errors, risk-coverage curves, previews.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot and
its global figure registry) and rendered by the Agg backend. Every PNG is written
atomically: rendered to a temporary file beside the target, then renamed onto it.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from ensemble_cnn.evaluation.selective import curve_aurc, oracle_curve, risk_coverage_curve
from ensemble_cnn.storage.atomic import atomic_path

__all__ = [
    "agreement_figure",
    "members_curve_figure",
    "plot_member_accuracy",
    "plot_confusion",
    "plot_errors",
    "plot_preview",
    "plot_risk_coverage",
    "REPORT_PLOTS",
    "risk_coverage_figure",
    "save_figure",
    "write_plots",
]

# The pictures :func:`write_plots` writes, each as ``<name>.png`` (``evaluate`` checks their paths first).
REPORT_PLOTS = ("accuracy", "confusion", "errors", "members_curve", "agreement", "risk_coverage")

_MEMBER_COLOR = "#8da0cb"
_VOTE_COLORS = ("#fc8d62", "#66c2a5", "#e78ac3", "#a6d854", "#ffd92f")  # one per rule in VOTES, in order
_DIGIT_CMAP = "gray_r"
_SCORE_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 100, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically, and return ``path`` as a :class:`~pathlib.Path`.

    The figure is rendered (:func:`render_png`) into a temporary file beside ``path``,
    then renamed onto it: a reader never sees half a picture, and a failed render leaves
    the previous file as it was and no temporary file behind.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Destination PNG file; its folder must exist.
    dpi : int, default=100
    tight : bool, default=True
        Crop the figure to its contents (``bbox_inches="tight"``).
    """
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        render_png(fig, tmp, dpi=dpi, tight=tight)
    return path


def render_png(fig: Figure, path: str | os.PathLike, *, dpi: int = 100, tight: bool = True) -> None:
    """Render ``fig`` to ``path`` as PNG (no atomicity: for a caller's own temporary file)."""
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight" if tight else None)


def _check_images(images: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Return ``images`` as an array with ``ndim`` dims (a trailing channel of 1 is dropped)."""
    arr = np.asarray(images)
    if arr.ndim == ndim + 1 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D (..., height, width); got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"`{name}` must hold numeric pixels; got dtype {arr.dtype}")
    return arr


def _pixel_range(*arrays: np.ndarray) -> tuple[float, float]:
    """Display range: [0, 255] for integer or large pixels, [0, 1] for unit floats."""
    if all(np.issubdtype(a.dtype, np.floating) for a in arrays):
        top = max((float(np.max(a)) for a in arrays if a.size), default=1.0)
        if top <= 1.0:
            return 0.0, 1.0
    return 0.0, 255.0


def _show_digit(ax: Any, image: np.ndarray, vrange: tuple[float, float], title: str | None = None) -> None:
    """Draw one digit without axes ticks."""
    ax.imshow(image, cmap=_DIGIT_CMAP, vmin=vrange[0], vmax=vrange[1], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9, pad=2)


# --------------------------------------------------------------------------- #
# Report figures
# --------------------------------------------------------------------------- #
def _accuracy_ylim(values: np.ndarray) -> tuple[float, float]:
    """Y range (in %) zoomed onto ``values`` with room for the bar labels."""
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.15 * (hi - lo), 0.1)
    bottom = max(0.0, math.floor((lo - 2 * pad) * 10) / 10)
    top = min(100.0, hi + 1.5 * pad) if hi < 100.0 else 100.0 + pad
    return bottom, top


def plot_member_accuracy(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save :func:`accuracy_figure` to ``path`` (PNG); return the path."""
    return save_figure(accuracy_figure(report), path)


def accuracy_figure(report: dict[str, Any]) -> Figure:
    """Horizontal bars: every member's test accuracy, then each vote's, one row each.

    One row per bar keeps every name and value readable at any ensemble size (names
    on the left, the accuracy at the end of its bar); the accuracy axis is zoomed onto
    the range of the values; dotted and dashed lines mark the members' mean and the
    oracle accuracy.

    Parameters
    ----------
    report : dict
        As returned by :func:`ensemble_cnn.evaluation.report.build_report`.

    Returns
    -------
    Figure
    """
    votes = list(report["ensemble"])
    names = [m["name"] for m in report["members"]] + [f"{vote} vote" for vote in votes]
    values = 100.0 * np.array(
        [m["test_accuracy"] for m in report["members"]] + [report["ensemble"][v]["test_accuracy"] for v in votes]
    )
    colors = [_MEMBER_COLOR] * len(report["members"]) + [_VOTE_COLORS[i % len(_VOTE_COLORS)] for i in range(len(votes))]

    fig = Figure(figsize=(7.5, 0.32 * len(names) + 1.6))
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]  # first member on top, votes at the bottom
    bars = ax.barh(y, values, color=colors, edgecolor="black", linewidth=0.5, height=0.7)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=3)
    mean = 100.0 * report["members_summary"]["mean"]
    ax.axvline(mean, color="#4a5a8a", linestyle=":", linewidth=1, label=f"members mean {mean:.2f} %")
    oracle = 100.0 * report["oracle_accuracy"]
    ax.axvline(oracle, color="grey", linestyle="--", linewidth=1, label=f"oracle {oracle:.2f} %")
    ax.set_yticks(y, names)
    low, high = _accuracy_ylim(np.append(values, oracle))
    ax.set_xlim(low, high + 0.12 * (high - low))  # room for the value labels
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"Test accuracy: {report['n_members']} members vs. ensemble ({report['n_test']} samples)",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def plot_confusion(report: dict[str, Any], path: str | os.PathLike, *, voting: str = "majority") -> Path:
    """Save :func:`confusion_figure` of ``voting`` to ``path`` (PNG); return the path."""
    return save_figure(confusion_figure(report, voting=voting), path)


def confusion_figure(report: dict[str, Any], *, voting: str = "majority") -> Figure:
    """Heat map of a vote's confusion matrix, each cell labelled with its count.

    Colours use a square-root scale so that the few off-diagonal errors stay
    visible beside the large diagonal.

    Parameters
    ----------
    report : dict
        As returned by :func:`ensemble_cnn.evaluation.report.build_report`.
    voting : str, default "majority"
        Whose confusion matrix (a key of ``report["ensemble"]``); named in the title.

    Returns
    -------
    Figure
    """
    cm = np.asarray(report["ensemble"][voting]["confusion_matrix"], dtype=np.int64)
    n_classes = cm.shape[0]
    vmax = max(int(cm.max()), 1)

    side = max(4.5, 0.55 * n_classes + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=vmax))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="count")
    threshold = 0.5 ** 2 * vmax  # where the sqrt-scaled colour reaches mid-range
    for (i, j), count in np.ndenumerate(cm):
        if count or i == j:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > threshold else "black")
    ticks = np.arange(n_classes)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    scored = report["ensemble"][voting]
    ax.set_title(
        f"{voting.capitalize()} vote: {100.0 * scored['test_accuracy']:.2f} % "
        f"({scored['errors']} errors / {report['n_test']})"
    )
    return fig


def members_curve_figure(report: dict[str, Any]) -> Figure:
    """Accuracy of every vote against the number of members k (mean over subsets, min–max band), oracle dashed.

    Parameters
    ----------
    report : dict
        As returned by :func:`ensemble_cnn.evaluation.report.build_report` (its ``accuracy_vs_members``).

    Returns
    -------
    Figure
    """
    curve = report.get("accuracy_vs_members") or []
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    if not curve:
        ax.text(0.5, 0.5, "no curve (weighted votes)", ha="center", va="center", transform=ax.transAxes)
        return fig
    k = np.array([row["k"] for row in curve])
    values = []
    for i, vote in enumerate(v for v in report["ensemble"] if f"{v}_mean" in curve[0]):
        color = _VOTE_COLORS[i % len(_VOTE_COLORS)]
        mean = 100 * np.array([row[f"{vote}_mean"] for row in curve])
        low = 100 * np.array([row[f"{vote}_min"] for row in curve])
        high = 100 * np.array([row[f"{vote}_max"] for row in curve])
        ax.fill_between(k, low, high, color=color, alpha=0.18, linewidth=0)
        ax.plot(k, mean, marker="o", color=color, label=f"{vote} vote (mean; band: min–max over subsets)")
        values += [low, high]
    oracle = 100 * np.array([row["oracle_mean"] for row in curve])
    ax.plot(k, oracle, linestyle="--", color="grey", label="oracle (some member right)")
    ax.set_xticks(k)
    ax.set_ylim(*_accuracy_ylim(np.concatenate([*values, oracle])))
    ax.set_xlabel("members in the ensemble (k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"How many members? ({report['n_test']} test samples)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def agreement_figure(report: dict[str, Any]) -> Figure:
    """Heat map of the members' pairwise disagreement (% of test digits two members label differently).

    Parameters
    ----------
    report : dict
        As returned by :func:`ensemble_cnn.evaluation.report.build_report`.

    Returns
    -------
    Figure
    """
    names = [m["name"] for m in report["members"]]
    matrix = 100 * np.asarray(report["disagreement"]["pairwise"], dtype=float)
    side = max(4.0, 0.55 * len(names) + 2.5)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    off = matrix[~np.eye(len(names), dtype=bool)]
    image = ax.imshow(matrix, cmap="Oranges", vmin=0, vmax=max(float(off.max()) if off.size else 0.0, 1e-9))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="disagreement (%)")
    if len(names) <= 12:
        for (i, j), value in np.ndenumerate(matrix):
            if i != j:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_title(f"Pairwise disagreement (mean {100 * report['disagreement']['mean']:.2f} %)", fontsize=10)
    return fig


def _coverage_window(error: float) -> float:
    """The left end (in %) of the zoomed coverage axis for a vote whose error is ``error`` (a fraction).

    90% while the error is at most 1% (where a good committee's curve has its shape), wider for
    a worse vote: 100 minus ten times the error in percent, rounded down to a multiple of 10,
    at least 0 (5% error: from 50%).
    """
    return max(0.0, math.floor((100.0 - max(10.0, 1000.0 * error)) / 10.0) * 10.0)


def risk_coverage_figure(scores: Mapping[str, ArrayLike], correct: ArrayLike, *, answer: str = "majority") -> Figure:
    """Error of the answers kept (%) against the share of digits kept (%), one line per score, the oracle dashed.

    Each score's :func:`~ensemble_cnn.evaluation.selective.risk_coverage_curve` (the surest digits
    first, ties as one block); the oracle (:func:`~ensemble_cnn.evaluation.selective.oracle_curve`)
    is the best any score could do. The coverage axis is zoomed where the curves differ
    (:func:`_coverage_window`: 90-100% for a vote under 1% error); each score's AURC is in the
    legend. Dotted lines mark 0.1% and 0.5% error.

    Parameters
    ----------
    scores : mapping of str to array-like of shape (N,)
        Each uncertainty score's values on the test digits, higher = less trustworthy.
    correct : array-like of shape (N,)
        Whether the vote ``answer`` got each digit right.
    answer : str, default "majority"
        The vote whose answers are judged, named in the title.

    Returns
    -------
    Figure
    """
    right = np.asarray(correct, dtype=bool)
    error = float(np.mean(~right)) if right.size else 0.0
    low = _coverage_window(error)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    tops = [100.0 * error]
    for i, (name, values) in enumerate(scores.items()):
        curve = risk_coverage_curve(values, right)
        coverage, risk = 100.0 * curve["coverage"], 100.0 * curve["risk"]
        ax.plot(coverage, risk, color=_SCORE_COLORS[i % len(_SCORE_COLORS)], linewidth=1.2,
                label=f"{name} (AURC {100 * curve_aurc(curve):.3f} %)")
        shown_part = risk[coverage >= low]
        tops.append(float(shown_part.max()) if shown_part.size else 0.0)
    oracle = oracle_curve(right)
    ax.plot(100.0 * oracle["coverage"], 100.0 * oracle["risk"], color="grey", linestyle="--", linewidth=1,
            label=f"oracle (AURC {100 * curve_aurc(oracle):.3f} %)")
    for target in (0.1, 0.5):
        ax.axhline(target, color="black", linestyle=":", linewidth=0.8, alpha=0.6)
        ax.annotate(f"{target:g} %", (low, target), xytext=(2, 2), textcoords="offset points", fontsize=7,
                    alpha=0.7)
    ax.set_xlim(low, 100.0)
    ax.set_ylim(0.0, max(1.15 * max(tops), 0.6))
    ax.set_xlabel("coverage: share of test digits answered, the surest first (%)")
    ax.set_ylabel("error of the answered digits (%)")
    ax.set_title(f"Risk-coverage on {right.size:,} test digits ({answer} vote's answers; "
                 f"{int(np.count_nonzero(~right))} errors at 100 %)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def plot_errors(
    images: ArrayLike,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | os.PathLike,
    *,
    max_images: int = 100,
    title: str = "",
) -> Path:
    """Grid of the misclassified test digits, each titled ``"true→pred"``.

    Parameters
    ----------
    images : array-like of shape (N, H, W) (or (N, H, W, 1))
        Test images, e.g. ``(N, 28, 28)`` uint8.
    y_true, y_pred : array-like of shape (N,)
        True and predicted labels.
    path : path-like
        Destination PNG file.
    max_images : int, default=100
        Show at most this many errors (the first ones, in test-set order).
    title : str, optional
        Who made the predictions (e.g. ``"soft vote"``), put in the figure's title.

    Returns
    -------
    path : Path
        If there is no error, the figure says so.
    """
    imgs = _check_images(images, "images", 3)
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if not (y_true.shape[0] == y_pred.shape[0] == imgs.shape[0]):
        raise ValueError(
            "`images`, `y_true` and `y_pred` must have the same length; got "
            f"{imgs.shape[0]}, {y_true.shape[0]}, {y_pred.shape[0]}"
        )
    if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) or max_images < 1:
        raise ValueError(f"`max_images` must be a positive integer; got {max_images!r}")

    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        fig = Figure(figsize=(5.0, 2.0))
        who = f"{title}: no" if title else "No"
        fig.text(0.5, 0.5, f"{who} misclassified digits\n(0 of {imgs.shape[0]})", ha="center", va="center", fontsize=14)
        return save_figure(fig, path, tight=False)

    shown = wrong[:max_images]
    n_cols = min(10, shown.size)
    n_rows = math.ceil(shown.size / n_cols)
    fig = Figure(figsize=(max(1.1 * n_cols, 4.0), 1.25 * n_rows + 0.4), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    # One mosaic image with a label above each digit: one axes, not one per digit (100 axes cost ~2 s to draw).
    height, width = imgs.shape[1:]
    label, gap = max(8, height // 2), max(2, width // 7)
    cell_h, cell_w = height + label, width + gap
    vrange = _pixel_range(imgs)
    mosaic = np.full((n_rows * cell_h, n_cols * cell_w - gap), np.nan)
    for position, idx in enumerate(shown):
        row, col = divmod(position, n_cols)
        top, left = row * cell_h + label, col * cell_w
        mosaic[top:top + height, left:left + width] = imgs[idx]
        ax.text(left + width / 2 - 0.5, top - 1.5, f"{y_true[idx]}→{y_pred[idx]}", ha="center", va="bottom",
                fontsize=9)
    cmap = colormaps[_DIGIT_CMAP].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=vrange[0], vmax=vrange[1], interpolation="nearest")
    extra = f" (first {shown.size} shown)" if shown.size < wrong.size else ""
    who = f"{title}: " if title else ""
    fig.suptitle(f"{who}{wrong.size} misclassified of {imgs.shape[0]}{extra}: true→predicted")
    return save_figure(fig, path)


def plot_preview(
    originals: ArrayLike, variants: ArrayLike, path: str | os.PathLike, *, titles: list[str] | None = None
) -> Path:
    """Save :func:`preview_figure` to ``path`` (PNG, atomically); return the path."""
    return save_figure(preview_figure(originals, variants, titles=titles), path)


def preview_figure(originals: ArrayLike, variants: ArrayLike, *, titles: list[str] | None = None) -> Figure:
    """Grid of digits and their distorted variants, one row per original.

    Column 0 holds the original, the next ``V`` columns its variants; the first row
    carries the column titles (default ``"original"``, ``"variant 1"``, ...).

    Parameters
    ----------
    originals : array-like of shape (R, H, W) (or (R, H, W, 1))
    variants : array-like of shape (R, V, H, W) (or (R, V, H, W, 1))
    titles : list of str, optional
        ``V + 1`` column titles.

    Returns
    -------
    Figure
    """
    orig = _check_images(originals, "originals", 3)
    var = _check_images(variants, "variants", 4)
    if var.shape[0] != orig.shape[0] or var.shape[2:] != orig.shape[1:]:
        raise ValueError(
            f"`variants` must have shape ({orig.shape[0]}, V, {orig.shape[1]}, {orig.shape[2]}) "
            f"to match `originals`; got {var.shape}"
        )
    if orig.shape[0] < 1:
        raise ValueError("`originals` must hold at least one image; got 0")

    n_rows, n_cols = orig.shape[0], var.shape[1] + 1
    titles = titles or ["original"] + [f"variant {v + 1}" for v in range(var.shape[1])]
    if len(titles) != n_cols:
        raise ValueError(f"`titles` must hold {n_cols} column titles; got {len(titles)}")
    fig = Figure(figsize=(1.1 * n_cols, 1.1 * n_rows + 0.3), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    vrange = _pixel_range(orig, var)
    for r in range(n_rows):
        _show_digit(axes[r, 0], orig[r], vrange, titles[0] if r == 0 else None)
        for v in range(var.shape[1]):
            _show_digit(axes[r, v + 1], var[r, v], vrange, titles[v + 1] if r == 0 else None)
    return fig


def write_plots(
    report: dict[str, Any],
    images: ArrayLike,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    out_dir: str | os.PathLike,
    *,
    voting: str = "majority",
    scores: Mapping[str, ArrayLike] | None = None,
) -> dict[str, Path]:
    """Write ``accuracy.png``, ``confusion.png``, ``errors.png``, ``members_curve.png``, ``agreement.png`` and
    ``risk_coverage.png`` (:data:`REPORT_PLOTS`).

    Parameters
    ----------
    report : dict
        As returned by :func:`ensemble_cnn.evaluation.report.build_report`.
    images : array-like of shape (N, H, W)
        Test images.
    y_true, y_pred : array-like of shape (N,)
        True labels and the predictions of the vote ``voting``.
    out_dir : path-like
        Destination folder; created if missing.
    voting : str, default "majority"
        The vote shown by the confusion matrix and the error grid (and named in them), whose
        answers the risk-coverage curves judge.
    scores : mapping of str to array-like of shape (N,), optional
        Uncertainty scores of the test digits (:data:`ensemble_cnn.inference.uncertainty.SCORES`)
        for :func:`risk_coverage_figure`; without them that picture only says so.

    Returns
    -------
    paths : dict
        Each name of :data:`REPORT_PLOTS` to its Path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.png" for name in REPORT_PLOTS}
    return {
        "accuracy": plot_member_accuracy(report, paths["accuracy"]),
        "confusion": plot_confusion(report, paths["confusion"], voting=voting),
        "errors": plot_errors(images, y_true, y_pred, paths["errors"], title=f"{voting} vote"),
        "members_curve": save_figure(members_curve_figure(report), paths["members_curve"]),
        "agreement": save_figure(agreement_figure(report), paths["agreement"]),
        "risk_coverage": plot_risk_coverage(scores, np.asarray(y_true).ravel() == np.asarray(y_pred).ravel(),
                                            paths["risk_coverage"], answer=voting),
    }


def plot_risk_coverage(scores: Mapping[str, ArrayLike] | None, correct: ArrayLike, path: str | os.PathLike, *,
                       answer: str = "majority") -> Path:
    """Save :func:`risk_coverage_figure` to ``path`` (PNG, atomically), or without ``scores`` a picture saying so."""
    if scores:
        return save_figure(risk_coverage_figure(scores, correct, answer=answer), path)
    fig = Figure(figsize=(5.0, 2.0))
    fig.text(0.5, 0.5, "no uncertainty scores given", ha="center", va="center", fontsize=12)
    return save_figure(fig, path, tight=False)
