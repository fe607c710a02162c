"""Accuracy against training compute for every recipe-study candidate screened so far (issue 23).

    python benchmarks/accuracy_vs_compute.py [--out docs/accuracy-vs-compute.png]
        [--csv benchmarks/study_screens.csv] [--jsonl artifacts/study/results.jsonl]

Each point is one screened candidate: its STUDY-VALIDATION majority-vote accuracy (y) against its
training cost (x, log scale): multiply-adds per digit (:func:`ensemble_cnn.models.multiply_adds`)
times the digits seen during training (digits per epoch x epochs x training runs), in units of
10^12 ("T MACs"). The Pareto frontier (the points no other point beats: none is at most as costly and
at least as accurate, and strictly better in one) is drawn as a step line; the default recipe and the
presets are marked.

Data: the earlier rounds, transcribed from docs/results.md into ``benchmarks/study_screens.csv``, and
the lines ``benchmarks/recipe_study.py`` appends to ``artifacts/study/results.jsonl`` (if present; the
CSV wins where both hold the same candidate, member count and round). Prints a Markdown table and
writes the PNG atomically (a temporary file in the same folder, then ``os.replace``). No TensorFlow.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.models import multiply_adds  # noqa: E402  (TF-free)

CSV_PATH = ROOT / "benchmarks" / "study_screens.csv"
JSONL_PATH = ROOT / "artifacts" / "study" / "results.jsonl"
OUT_PATH = ROOT / "docs" / "accuracy-vs-compute.png"

STUDY_TRAIN = 50_000  # the study's training digits (the last 10,000 of MNIST's train split are its validation)
# TrainConfig's defaults, for options a results.jsonl line does not spell out.
DEFAULTS = {"arch": "nielsen", "width": 1.0, "epochs": 30, "val_size": 5000, "recipe": "standard"}
MEMBERS_PER_RUN = {"snapshot": 3, "fge": 3}  # recipes whose one training run yields several members
TERA = 1e12
QUICK = ("nielsen-cos-ema-ls-mild", 2)  # --preset quick: 2 members x 16 epochs
BEST = ("deotte-cos-ls-mild-e30", 2)  # --preset best: 2 deotte members x 30 epochs, no weight EMA (round 4)
DEFAULT_NAME = "default (5 x 30)"


def training_cost(arch: str, width: float, epochs: float, runs: float, digits: float) -> float:
    """Multiply-adds spent in training: per digit x digits per epoch x epochs x training runs.

    Parameters
    ----------
    arch : str
        Architecture name (in :data:`ensemble_cnn.models.ARCHITECTURES`).
    width : float
        Width multiplier (the count scales with ``width**2``).
    epochs : float
        Epochs per training run.
    runs : float
        Training runs (members for one-member-per-run recipes; members / 3 for snapshot and FGE).
    digits : float
        Training digits seen per epoch per run (45,000 with the default 5,000-digit hold-out).

    Returns
    -------
    float
        Multiply-adds (forward pass counts; the backward pass is a constant factor left out).
    """
    return multiply_adds(arch, float(width)) * float(digits) * float(epochs) * float(runs)


def pareto_frontier(costs, accuracies) -> list[int]:
    """Indices of the points on the cost/accuracy Pareto frontier, ordered by cost.

    A point is off the frontier when another point is at most as costly and at least as accurate,
    and strictly better in one of the two. Exact duplicates (same cost and accuracy) are all kept.

    Parameters
    ----------
    costs : sequence of float
        Training costs (lower is better).
    accuracies : sequence of float
        Accuracies (higher is better), same length.

    Returns
    -------
    list of int
        The frontier's indices, sorted by cost then by accuracy.
    """
    c = np.asarray(costs, dtype=float)
    a = np.asarray(accuracies, dtype=float)
    if c.shape != a.shape:
        raise ValueError("costs and accuracies differ in length")
    keep = []
    for i in range(len(c)):
        beaten = (c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))
        if not beaten.any():
            keep.append(i)
    return sorted(keep, key=lambda i: (c[i], a[i]))


def _option(options: list[str], flag: str, default=None):
    """The value after ``flag`` in ``options`` (the last one wins), else ``default``; True for a bare flag."""
    value = default
    for k, item in enumerate(options):
        if item == flag:
            value = options[k + 1] if k + 1 < len(options) and not options[k + 1].startswith("--") else True
    return value


def _plan_path(raw: str) -> Path:
    """A plan path from a results line: as written, else relative to the repo (lines may come from another checkout)."""
    path = Path(raw)
    if path.is_file():
        return path
    parts = path.parts
    if "benchmarks" in parts:
        candidate = ROOT.joinpath(*parts[parts.index("benchmarks"):])
        if candidate.is_file():
            return candidate
    if not path.is_absolute() and (ROOT / path).is_file():
        return ROOT / path
    raise FileNotFoundError(f"{raw}: member plan not found")


def cost_from_options(options: list[str], members: int) -> tuple[float, dict]:
    """Training cost of a candidate given as ``ensemble-cnn train`` options, and its shape.

    Parameters
    ----------
    options : list of str
        The candidate's train options (``--arch``, ``--width``, ``--epochs``, ``--val-size``,
        ``--recipe``, ``--plan PATH``); missing ones take TrainConfig's defaults.
    members : int
        The members trained (with a plan: the plan's total).

    Returns
    -------
    cost : float
        Multiply-adds.
    shape : dict
        ``arch``, ``width``, ``epochs``, ``training_runs``, ``train_digits`` (``"plan"`` / mixed values
        when a plan makes members differ).
    """
    arch = _option(options, "--arch", DEFAULTS["arch"])
    width = float(_option(options, "--width", DEFAULTS["width"]))
    epochs = int(_option(options, "--epochs", DEFAULTS["epochs"]))
    val_size = int(_option(options, "--val-size", DEFAULTS["val_size"]))
    recipe = _option(options, "--recipe", DEFAULTS["recipe"])
    per_run = MEMBERS_PER_RUN.get(recipe, 1)
    plan = _option(options, "--plan")
    if not plan:
        runs = math.ceil(members / per_run)
        digits = STUDY_TRAIN - val_size
        return training_cost(arch, width, epochs, runs, digits), {
            "arch": arch, "width": width, "epochs": epochs, "training_runs": runs, "train_digits": digits}
    groups = tomllib.loads(_plan_path(plan).read_text(encoding="utf-8")).get("members", [])
    total, count, shapes = 0.0, 0, set()
    for group in groups:
        g_arch = group.get("arch", arch)
        g_width = float(group.get("width", width))
        g_epochs = int(group.get("epochs", epochs))
        g_digits = STUDY_TRAIN - int(group.get("val_size", val_size))
        g_runs = math.ceil(int(group.get("count", 1)) / per_run)
        total += training_cost(g_arch, g_width, g_epochs, g_runs, g_digits)
        count += g_runs
        shapes.add((g_arch, g_width, g_epochs, g_digits))
    one = next(iter(shapes)) if len(shapes) == 1 else ("plan", "", "", "")
    return total, {"arch": one[0], "width": one[1], "epochs": one[2], "training_runs": count, "train_digits": one[3]}


def _round_of(stage: str):
    """``round4`` -> 4; other stages (``screen``, ``pool``) stay strings."""
    match = re.fullmatch(r"round(\d+)", str(stage))
    return int(match.group(1)) if match else str(stage)


def _parts(note: str) -> list[tuple[str, int]]:
    """``parts=a:2+b:2`` in a CSV note -> ``[("a", 2), ("b", 2)]`` (pooled screens)."""
    match = re.search(r"parts=([^;\s]+)", note or "")
    if not match:
        return []
    return [(name, int(k)) for name, k in (item.rsplit(":", 1) for item in match.group(1).split("+"))]


def _number(text: str):
    return float(text) if str(text).strip() else None


def _resolve_parts(point: dict, points: list[dict]) -> None:
    """Give a pooled point the summed cost of its parts (the earliest-round point of each name and size)."""
    total = 0.0
    for name, k in point["parts"]:
        found = [p for p in points if p["name"] == name and p["members"] == k and not p["parts"]]
        if not found:
            raise ValueError(f"{point['name']}: part {name} x{k} is not among the screens")
        total += min(found, key=lambda p: str(p["round"]))["cost"]
    point["cost"] = total


def load_points(csv_path, jsonl_path=None) -> list[dict]:
    """Every screened candidate as a point: the CSV's rows, then the results lines it does not hold.

    Parameters
    ----------
    csv_path : path-like
        ``benchmarks/study_screens.csv`` (columns name, members, training_runs, epochs, arch, width,
        train_digits, val_majority, test_majority, wall_minutes, cpu, round, note; pooled screens leave
        the shape empty and name their parts in the note as ``parts=NAME:K+NAME:K``).
    jsonl_path : path-like, optional
        ``artifacts/study/results.jsonl``; skipped when None or missing. A line duplicates a CSV row
        when name and members match and its round matches (a non-``roundN`` stage matches rounds 1-3
        and ``pool``): the CSV wins.

    Returns
    -------
    list of dict
        ``name, members, cost`` (multiply-adds), ``val_majority, test_majority`` (fractions),
        ``wall_minutes, cpu, round, note, parts, source`` (``"csv"`` or ``"jsonl"``) and the shape fields.
    """
    points: list[dict] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            round_ = int(row["round"]) if row["round"].strip().isdigit() else row["round"].strip()
            point = {"name": row["name"], "members": int(row["members"]),
                     "val_majority": float(row["val_majority"]), "test_majority": _number(row["test_majority"]),
                     "wall_minutes": _number(row["wall_minutes"]), "cpu": row["cpu"], "round": round_,
                     "note": row["note"], "parts": _parts(row["note"]), "source": "csv",
                     "arch": row["arch"], "width": _number(row["width"]), "epochs": _number(row["epochs"]),
                     "training_runs": _number(row["training_runs"]), "train_digits": _number(row["train_digits"])}
            if not point["parts"]:
                point["cost"] = training_cost(point["arch"], point["width"], point["epochs"],
                                              point["training_runs"], point["train_digits"])
            points.append(point)
    csv_keys = {(p["name"], p["members"], p["round"]) for p in points}

    def duplicate(name: str, members: int, round_) -> bool:
        if isinstance(round_, int):
            return (name, members, round_) in csv_keys
        return any((name, members, r) in csv_keys for r in (1, 2, 3, "pool"))

    if jsonl_path is not None and Path(jsonl_path).is_file():
        seen = set()
        for line in Path(jsonl_path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            result = json.loads(line)
            round_ = _round_of(result.get("stage", "screen"))
            is_pool = round_ == "pool"
            if is_pool:
                round_ = 2 if duplicate(result["name"], result["members"], "pool") else "pool"
            key = (result["name"], int(result["members"]), round_)
            if duplicate(*key) or key in seen:
                continue
            seen.add(key)
            point = {"name": result["name"], "members": int(result["members"]),
                     "val_majority": float(result["val_majority"]), "test_majority": result.get("test_majority"),
                     "wall_minutes": result.get("wall_minutes"), "cpu": result.get("cpu", ""), "round": round_,
                     "note": "from results.jsonl" + ("; wall shared" if result.get("shared") else ""),
                     "parts": [], "source": "jsonl"}
            if is_pool:
                point["parts"] = [(m.group(1), int(m.group(2))) for m in
                                  (re.fullmatch(r"(.+)-k(\d+)-s\d+", run) for run in result.get("runs", [])) if m]
                point["note"] += "; parts=" + "+".join(f"{n}:{k}" for n, k in point["parts"])
                point.update(arch="", width=None, epochs=None, training_runs=None, train_digits=None)
            else:
                cost, shape = cost_from_options(list(result.get("options", [])), point["members"])
                point.update(shape, cost=cost)
            points.append(point)
    for point in points:
        if point["parts"]:
            _resolve_parts(point, points)
    return points


def short_label(point: dict) -> str:
    """A short label: nielsen variants of the chosen recipe lose ``nielsen-cos-ema-ls-mild``, the rest ``nielsen-``;
    ``xK`` when the member count is not 2; `` r4`` for round-4 points."""
    name = point["name"]
    base = "nielsen-cos-ema-ls-mild"
    if name == DEFAULT_NAME:
        label = "default 5x30"
    elif name == base:
        label = "base r4" if isinstance(point["round"], int) and point["round"] >= 4 else "base (quick)"
    elif name.startswith(base + "-"):
        label = name[len(base) + 1:]
    else:
        label = name.replace("-cos-ema-ls-mild", "").replace("nielsen-", "n-")
        label = label.replace("nielsen", "n")
    if point["members"] != 2 and name != DEFAULT_NAME:
        label += f" x{point['members']}"
    if isinstance(point["round"], int) and point["round"] >= 4 and not label.endswith(f" r{point['round']}"):
        label += f" r{point['round']}"
    return label


def markdown_table(points: list[dict], frontier: list[int]) -> str:
    """The points as a Markdown table, cheapest first (name, members, cost, val majority, on frontier)."""
    on = set(frontier)
    lines = ["| name | members | round | cost (T MACs) | val: majority | on frontier |", "|---|---|---|---|---|---|"]
    for i in sorted(range(len(points)), key=lambda i: (points[i]["cost"], -points[i]["val_majority"])):
        p = points[i]
        lines.append(f"| `{p['name']}` | {p['members']} | {p['round']} | {p['cost'] / TERA:.2f} | "
                     f"{100 * p['val_majority']:.2f}% | {'yes' if i in on else 'no'} |")
    return "\n".join(lines)


_BOX = dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.75)


def _place_labels(ax, fig, xs, ys, labels, fontsize, avoid_boxes):
    """Greedy label placement: for each label try offsets around its point (nearest first) and keep the first
    whose box overlaps no placed label, no marker and stays inside the axes; draw a leader line when far."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    placed: list = list(avoid_boxes)
    axes_box = ax.get_window_extent(renderer)
    offsets = [(6, 0)]
    for r in (0, 9, 18, 27, 36, 45, 54, 66, 78, 90, 105, 120):
        for dx in (6, -6, 24, -24, 48, -48, 80, -80):
            for dy in ((r, -r) if r else (0,)):
                if (dx, dy) not in offsets:
                    offsets.append((dx, dy))
    offsets.sort(key=lambda o: (abs(o[0]) + abs(o[1]) * 1.2, o[0] < 0))
    dpi_scale = fig.dpi / 72.0
    order = sorted(range(len(xs)), key=lambda i: ys[i], reverse=True)
    for i in order:
        px, py = ax.transData.transform((xs[i], ys[i]))
        chosen = None
        for dx, dy in offsets:
            ha = "left" if dx >= 0 else "right"
            text = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va="center", fontsize=fontsize, bbox=_BOX)
            box = text.get_window_extent(renderer).expanded(1.04, 1.15)
            inside = (box.x0 >= axes_box.x0 and box.x1 <= axes_box.x1 and box.y0 >= axes_box.y0
                      and box.y1 <= axes_box.y1)
            if inside and not any(box.overlaps(other) for other in placed):
                chosen = (text, box, dx, dy)
                break
            text.remove()
        if chosen is None:  # nothing free: the nearest spot, overlapping
            dx, dy = offsets[0]
            text = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                               ha="left", va="center", fontsize=fontsize, bbox=_BOX)
            chosen = (text, text.get_window_extent(renderer), dx, dy)
        text, box, dx, dy = chosen
        placed.append(box)
        if abs(dy) > 4 or abs(dx) > 10:
            text.remove()
            ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                        ha="left" if dx >= 0 else "right", va="center", fontsize=fontsize, bbox=_BOX,
                        arrowprops=dict(arrowstyle="-", lw=0.5, color="0.55", shrinkA=0, shrinkB=2.5 * dpi_scale))
    return placed


def plot(points: list[dict], out) -> Path:
    """Draw accuracy against training cost and write the PNG atomically.

    Parameters
    ----------
    points : list of dict
        From :func:`load_points` (``cost``, ``val_majority``, ``name``, ``members``, ``round``).
    out : path-like
        The PNG to write (a temporary file in the same folder is renamed over it).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    out = Path(out)
    costs = np.array([p["cost"] / TERA for p in points])
    accs = np.array([100 * p["val_majority"] for p in points])
    frontier = pareto_frontier(costs, accs)

    # An outlier far below the rest (an7q-cycle-ema, 97.3%) would squash the axis: draw it at the floor.
    ordered = np.sort(accs)
    floor = None
    if len(accs) > 2 and ordered[0] < np.median(accs) - 1.0:
        rest = accs[accs >= np.median(accs) - 1.0]
        floor = rest.min() - 0.12
    shown = np.where(accs < (floor if floor is not None else -np.inf), floor + 0.03 if floor is not None else 0, accs)

    fig, ax = plt.subplots(figsize=(13, 8.5), dpi=110)
    ax.set_xscale("log")
    ax.set_xlim(costs.min() / 1.25, costs.max() * 1.6)
    top = accs.max() + 0.05
    ax.set_ylim(floor if floor is not None else accs.min() - 0.05, top)

    colors = {1: "#1f77b4", 2: "#2ca02c", 3: "#9467bd", 4: "#d62728", 5: "#17becf"}
    markers = {}
    for p in points:
        p.setdefault("round", "?")
    rounds = sorted({p["round"] for p in points}, key=str)
    # the frontier: a step line (flat until the next, more accurate point)
    fx = [costs[i] for i in frontier]
    fy = [shown[i] for i in frontier]
    if fx:
        ax.step(fx + [ax.get_xlim()[1]], fy + [fy[-1]], where="post", color="0.35", lw=1.2, ls="--", zorder=1,
                label="Pareto frontier")
    for r in rounds:
        idx = [i for i, p in enumerate(points) if p["round"] == r]
        color = colors.get(r, "#ff7f0e")
        size_idx = [i for i in idx if "size:" in points[i]["note"]]
        main_idx = [i for i in idx if i not in size_idx]
        cpu = "Xeon AVX-512 bf16" if r in (4, "pool") else "EPYC AVX2 fp32"  # rounds 1-3 and 5 ran on the EPYC
        ax.scatter(costs[main_idx], shown[main_idx], s=34, color=color, zorder=3, edgecolor="white", lw=0.6,
                   label=f"round {r} ({cpu})")
        if size_idx:
            ax.scatter(costs[size_idx], shown[size_idx], s=34, facecolor="white", edgecolor=color, lw=1.3, zorder=3,
                       label=f"round {r}: first K members of one 6-member e30 run")
    on = set(frontier)
    ax.scatter(costs[list(on)], shown[list(on)], s=110, facecolor="none", edgecolor="black", lw=1.0, zorder=2,
               label="on the frontier")
    marks = []
    for i, p in enumerate(points):
        if p["name"] == DEFAULT_NAME:
            marks.append((i, "*", "#ffbf00", 360, "default: 5 members x 30 epochs"))
        elif (p["name"], p["members"]) == QUICK and p["round"] == 1:
            marks.append((i, "D", "#ffbf00", 110, "--preset quick: 2 members x 16 epochs"))
        elif (p["name"], p["members"]) == BEST:
            marks.append((i, "P", "#ffbf00", 160, "--preset best: 2 deotte members x 30 epochs"))
    for i, marker, color, size, text in marks:
        ax.scatter([costs[i]], [shown[i]], marker=marker, s=size, color=color, edgecolor="black", lw=0.8, zorder=4,
                   label=text)
    if floor is not None:
        low = [i for i in range(len(points)) if accs[i] < floor]
        ax.scatter(costs[low], shown[low], marker="v", s=60, color="none", edgecolor="black", lw=0.9, zorder=4)

    # labels: one per distinct position (coincident points share a label)
    groups: dict[tuple, list[int]] = {}
    for i in range(len(points)):
        groups.setdefault((round(costs[i], 3), round(shown[i], 3)), []).append(i)
    xs, ys, labels = [], [], []
    for (x, y), members in groups.items():
        text = " = ".join(short_label(points[i]) for i in members)
        if floor is not None and accs[members[0]] < floor:
            text += f" ({accs[members[0]]:.2f}%, off scale)"
        xs.append(costs[members[0]])
        ys.append(shown[members[0]])
        labels.append(text)
    ax.set_xlabel("training cost: multiply-adds per digit x digits seen in training  [T MACs = 10^12, log scale]")
    ax.set_ylabel("study-validation accuracy of the majority vote [%]")
    ax.set_title("Recipe study: accuracy vs training compute (every screen so far; study validation, never test)")
    ax.grid(True, which="both", color="0.92", lw=0.6)
    ticks = [t for t in (2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 60, 80, 100) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.1f"))
    legend = ax.legend(loc="lower right", fontsize=8, framealpha=0.95, scatterpoints=1)
    fig.text(0.01, 0.012,
             "Labels: nielsen variants of the chosen recipe drop 'nielsen-cos-ema-ls-mild-' (base = the recipe itself, "
             "2 x 16 epochs), other names drop\n'nielsen-' -> 'n-' and '-cos-ema-ls-mild'; xK = K members (else 2); "
             "r4, r5 = rounds 4, 5; 'a = b' = points at the same spot. Pools = sums of their parts' costs (n-distill: the 2 "
             "students alone,\ntheir teacher's cost not counted; n5+distill2 counts it). "
             "Cost counts the forward multiply-adds only; CPUs differ by round, cost does not depend on them.",
             fontsize=7.5, color="0.25", va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    avoid = [legend.get_window_extent(renderer)]
    big = {i for i, *_ in marks}
    for i, (x, y) in enumerate(zip(costs, shown)):
        px, py = ax.transData.transform((x, y))
        half = 11 if i in big else 4  # the default's and the presets' marks are larger
        avoid.append(matplotlib.transforms.Bbox([[px - half, py - half], [px + half, py + half]]))
    if fx:  # the frontier's step line, as small boxes along it
        corners = [ax.transData.transform(xy) for xy in
                   zip([fx[0]] + [x for x in fx[1:] for _ in (0, 1)] + [ax.get_xlim()[1]],
                       [y for y in fy for _ in (0, 1)])]
        for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
            steps = max(2, int(max(abs(x1 - x0), abs(y1 - y0)) / 4))
            for t in np.linspace(0, 1, steps):
                x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                avoid.append(matplotlib.transforms.Bbox([[x - 1.5, y - 1.5], [x + 1.5, y + 1.5]]))
    _place_labels(ax, fig, xs, ys, labels, fontsize=7.5, avoid_boxes=avoid)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_PATH, help="the PNG to write (default: %(default)s)")
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="transcribed earlier rounds (default: %(default)s)")
    parser.add_argument("--jsonl", type=Path, default=JSONL_PATH, help="study results lines, if present")
    args = parser.parse_args(argv)
    inputs = [args.csv, args.jsonl, Path(__file__), *sorted((ROOT / "benchmarks" / "plans").glob("*.toml"))]
    out = args.out.resolve()
    if any(out == Path(p).resolve() for p in inputs):
        raise SystemExit(f"{args.out}: is one of this script's inputs; refusing to overwrite it")
    if out.suffix.lower() != ".png":
        raise SystemExit(f"{args.out}: the figure is a PNG; give a .png path")
    points = load_points(args.csv, args.jsonl)
    frontier = pareto_frontier([p["cost"] for p in points], [p["val_majority"] for p in points])
    print(markdown_table(points, frontier))
    print()
    print("Frontier: " + " -> ".join(f"{points[i]['name']} x{points[i]['members']} "
                                      f"({points[i]['cost'] / TERA:.2f} T, {100 * points[i]['val_majority']:.2f}%)"
                                      for i in frontier))
    plot(points, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
