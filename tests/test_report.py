"""Tests for ensemble_cnn.evaluation.report (building), .render (rendering, writing) and .plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ensemble_cnn.evaluation.render import format_markdown, format_table, write_report
from ensemble_cnn.evaluation.report import build_report
from ensemble_cnn.evaluation.stats import calibration
from ensemble_cnn.inference.vote import VOTES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Hand-made case: K=3 members, N=6 samples, C=3 classes.
Y_TRUE = np.array([0, 1, 2, 0, 1, 2])
PROBA = np.array(
    [
        # member A -> predicts [0, 1, 2, 1, 1, 1]
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.4, 0.5, 0.1], [0.0, 0.51, 0.49], [0.1, 0.7, 0.2]],
        # member B -> predicts [0, 1, 2, 1, 1, 2]
        [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.2, 0.7], [0.45, 0.55, 0.0], [0.0, 0.51, 0.49], [0.3, 0.2, 0.5]],
        # member C -> predicts [0, 2, 1, 0, 2, 0]
        [[0.6, 0.2, 0.2], [0.0, 0.0, 1.0], [0.2, 0.5, 0.3], [0.9, 0.05, 0.05], [0.0, 0.0, 1.0], [0.6, 0.3, 0.1]],
    ]
)
# Sample 3: majority 1 (wrong), soft 0 (right). Sample 1 and 4: majority right, soft
# wrong (C is confident). Sample 5: three-way vote tie; summed probabilities
# 1.0 / 1.2 / 0.8 -> class 1 (wrong) for both votes.
MAJORITY = [0, 1, 2, 1, 1, 1]
SOFT = [0, 2, 2, 0, 2, 1]
NAMES = ["A", "B", "C"]


@pytest.fixture()
def report() -> dict:
    return build_report(PROBA, Y_TRUE, member_names=NAMES)


def test_hand_case_predictions_are_as_designed() -> None:
    from ensemble_cnn.inference.vote import majority_vote, soft_vote

    assert PROBA.argmax(axis=2).tolist() == [[0, 1, 2, 1, 1, 1], [0, 1, 2, 1, 1, 2], [0, 2, 1, 0, 2, 0]]
    assert majority_vote(PROBA).tolist() == MAJORITY
    assert soft_vote(PROBA).tolist() == SOFT


def test_build_report_counts_and_members(report: dict) -> None:
    assert report["n_test"] == 6 and report["n_members"] == 3 and report["n_classes"] == 3
    assert report["weights"] is None
    assert [m["name"] for m in report["members"]] == NAMES
    assert [m["test_accuracy"] for m in report["members"]] == pytest.approx([4 / 6, 5 / 6, 2 / 6])
    assert [m["errors"] for m in report["members"]] == [2, 1, 4]


def test_build_report_members_summary(report: dict) -> None:
    s = report["members_summary"]
    assert s["mean"] == pytest.approx(11 / 18)
    # population std: deviations 1/18, 4/18, -5/18 -> variance 42 / 324 / 3 = 7 / 162
    assert s["std"] == pytest.approx(math.sqrt(7 / 162))
    assert s["best"] == pytest.approx(5 / 6) and s["best_member"] == "B"
    assert s["worst"] == pytest.approx(2 / 6) and s["worst_member"] == "C"


def test_build_report_ensemble_oracle_disagreement_gain(report: dict) -> None:
    majority, soft = report["ensemble"]["majority"], report["ensemble"]["soft"]
    assert (majority["test_accuracy"], majority["errors"]) == (pytest.approx(4 / 6), 2)
    assert (soft["test_accuracy"], soft["errors"]) == (pytest.approx(3 / 6), 3)
    assert report["oracle_accuracy"] == pytest.approx(1.0)
    assert report["oracle_errors"] == 0

    pairwise = np.array(report["disagreement"]["pairwise"])
    expected = np.array([[0, 1, 5], [1, 0, 5], [5, 5, 0]]) / 6
    np.testing.assert_allclose(pairwise, expected)
    assert report["disagreement"]["mean"] == pytest.approx(11 / 18)

    assert report["gain"] == {
        "majority_over_mean": pytest.approx(4 / 6 - 11 / 18),
        "majority_over_best": pytest.approx(4 / 6 - 5 / 6),
        "soft_over_mean": pytest.approx(3 / 6 - 11 / 18),
        "soft_over_best": pytest.approx(3 / 6 - 5 / 6),
    }


def test_build_report_confusion_matrix_of_every_vote(report: dict) -> None:
    # rows true labels; majority predicts [0, 1, 2, 1, 1, 1] for [0, 1, 2, 0, 1, 2]
    assert report["ensemble"]["majority"]["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 1, 1]]
    # soft predicts [0, 2, 2, 0, 2, 1]
    assert report["ensemble"]["soft"]["confusion_matrix"] == [[2, 0, 0], [0, 0, 2], [0, 1, 1]]


def test_markdown_and_figures_show_the_chosen_vote(report: dict) -> None:
    """`evaluate --vote soft`: the confusion matrix (table and picture) is the soft vote's, and says so."""
    from ensemble_cnn.evaluation.plots import confusion_figure

    soft_md = format_markdown({**report, "vote_shown": "soft"})
    assert "## Confusion matrix (soft vote)" in soft_md
    assert "| 1 | 0 | 0 | 2 |" in soft_md  # true 1: soft says 2 twice
    assert "## Confusion matrix (majority vote)" in format_markdown({**report, "vote_shown": "majority"})
    for vote, counts in (("soft", report["ensemble"]["soft"]["confusion_matrix"]),
                         ("majority", report["ensemble"]["majority"]["confusion_matrix"])):
        ax = confusion_figure(report, voting=vote).axes[0]
        assert ax.get_title().startswith(f"{vote.capitalize()} vote: ")
        cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
        assert all(cells.get((i, j), 0) == counts[i][j] for i in range(3) for j in range(3))


def test_build_report_oracle_below_one_and_weights() -> None:
    proba = PROBA.copy()
    proba[:, 5] = [0.9, 0.05, 0.05]  # every member says 0 for sample 5 (true 2)
    rep = build_report(proba, Y_TRUE, weights=[1.0, 1.0, 3.0])
    assert rep["oracle_accuracy"] == pytest.approx(5 / 6) and rep["oracle_errors"] == 1
    assert rep["weights"] == [1.0, 1.0, 3.0]
    assert [m["name"] for m in rep["members"]] == ["member_0", "member_1", "member_2"]
    # Weight 3 on C: the majority vote follows C -> [0, 2, 1, 0, 2, 0]: correct on 0 and 3.
    assert rep["ensemble"]["majority"]["errors"] == 4


def test_build_report_single_member() -> None:
    rep = build_report(PROBA[:1], Y_TRUE)
    assert rep["disagreement"] == {"pairwise": [[0.0]], "mean": 0.0}
    assert rep["members_summary"]["std"] == 0.0
    assert rep["ensemble"]["majority"]["test_accuracy"] == pytest.approx(4 / 6)
    assert rep["gain"]["majority_over_best"] == pytest.approx(0.0)


def test_report_is_plain_json(report: dict) -> None:
    text = json.dumps(report)
    assert json.loads(text) == report

    def walk(obj: object) -> None:
        assert type(obj) in (dict, list, str, int, float, bool, type(None)), type(obj)
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(report)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"y_true": [0, 1, 2]}, r"`y_true` must have shape \(6,\)"),
        ({"y_true": [0, 1, 2, 0, 1, 3]}, r"`y_true` labels must lie in \[0, 3\)"),
        ({"y_true": [0, 1, 2, 0, 1, -1]}, r"`y_true` labels must lie in \[0, 3\)"),
        ({"y_true": [0, 1, 2, 0, 1, 1.5]}, "integer labels"),
        ({"member_names": ["a", "b"]}, "`member_names` must hold 3 names"),
        ({"member_names": ["a", "a", "b"]}, "`member_names` must be unique"),
        ({"weights": [1.0, 1.0]}, r"`weights` must have shape \(3,\)"),
    ],
)
def test_build_report_validation(kwargs: dict, match: str) -> None:
    kwargs = {"y_true": Y_TRUE, **kwargs}
    y_true = kwargs.pop("y_true")
    with pytest.raises(ValueError, match=match):
        build_report(PROBA, y_true, **kwargs)


def test_build_report_rejects_empty_test_set() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        build_report(np.zeros((2, 0, 3)), np.zeros(0, dtype=int))


# --------------------------------------------------------------------------- #
# Rendering and writing
# --------------------------------------------------------------------------- #
def test_format_table(report: dict) -> None:
    table = format_table(report)
    for name, acc, errors in zip(NAMES, ("66.67 %", "83.33 %", "33.33 %"), (2, 1, 4)):
        line = next(ln for ln in table.splitlines() if ln.startswith(name + " "))
        assert acc in line and line.rstrip().endswith(str(errors))
    assert "61.11 ± 20.79 %" in table  # mean ± population std
    for label, value in [
        ("majority vote", "66.67 %"),
        ("soft vote", "50.00 %"),
        ("oracle", "100.00 %"),
        ("mean pairwise disagreement", "61.11 %"),
        ("majority − members mean", "+5.56 pp"),
        ("majority − best member", "-16.67 pp"),
        ("soft − members mean", "-11.11 pp"),
        ("soft − best member", "-33.33 pp"),
    ]:
        line = next(ln for ln in table.splitlines() if label in ln)
        assert value in line, (label, line)


def test_format_markdown(report: dict) -> None:
    md = format_markdown(report, title="MNIST ensemble")
    assert md.startswith("# MNIST ensemble\n")
    assert format_markdown(report).startswith("# Ensemble report\n")
    for name in NAMES:
        assert f"| {name} | " in md
    assert "| majority vote | 66.67 % | 30.00–90.32 | 2 |" in md  # Wilson 95% of 4/6
    assert "| soft vote | 50.00 % | 18.76–81.24 | 3 |" in md
    assert "| 0 | 1 | 1 | 0 |" in md  # first confusion-matrix row
    assert "| A | 0.00 % | 16.67 % | 83.33 % |" in md  # first disagreement row


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out (independently of ensemble_cnn.evaluation.stats)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_report_intervals(report: dict) -> None:
    assert report["ensemble"]["majority"]["ci95"] == pytest.approx(wilson(4, 6))
    assert report["ensemble"]["soft"]["ci95"] == pytest.approx(wilson(3, 6))
    assert [m["ci95"] for m in report["members"]] == [pytest.approx(wilson(k, 6)) for k in (4, 5, 2)]
    assert report["oracle_ci95"] == pytest.approx([wilson(6, 6)[0], 1.0])
    assert report["statistics"]["interval"] == "Wilson score, 95%"


def test_report_paired_tests_by_hand(report: dict) -> None:
    """Majority right on samples 0, 1, 2, 4; B (best) on 0, 1, 2, 4, 5; C on 0, 3."""
    best = report["ensemble"]["majority"]["mcnemar_vs_best_member"]
    assert best == {"member": "B", "only_ensemble": 0, "only_member": 1, "p_value": 1.0}
    versus = {t["member"]: t for t in report["ensemble"]["majority"]["mcnemar_vs_members"]}
    # vs C: only the vote is right on 1, 2, 4; only C on 3: p = 2 * P(Binom(4, 1/2) <= 1) = 2 * 5/16
    assert (versus["C"]["only_ensemble"], versus["C"]["only_member"]) == (3, 1)
    assert versus["C"]["p_value"] == pytest.approx(10 / 16)
    assert versus["A"]["p_value"] == 1.0 and (versus["A"]["only_ensemble"], versus["A"]["only_member"]) == (0, 0)
    table = format_table(report)
    assert "majority vote vs best member (B): +0/−1 digits, p = 1: not significant at 5%" in table
    assert "majority ties: 1 (broken by summed probability: 1, by lower label: 0)" in table  # sample 5


def test_report_subset_curve_agrees_with_members_and_the_full_vote(report: dict) -> None:
    curve = report["accuracy_vs_members"]
    assert [row["k"] for row in curve] == [1, 2, 3] and all(row["exhaustive"] for row in curve)
    first, last = curve[0], curve[-1]
    assert first["majority_mean"] == pytest.approx(11 / 18) and first["soft_min"] == pytest.approx(2 / 6)
    assert first["majority_max"] == pytest.approx(5 / 6)
    assert last["majority_mean"] == pytest.approx(4 / 6) and last["soft_mean"] == pytest.approx(3 / 6)
    assert last["oracle_mean"] == pytest.approx(1.0) and curve[1]["n_subsets"] == 3


def test_report_calibration(report: dict) -> None:
    # member A: p(true) = 0.8, 0.8, 0.8, 0.4, 0.51, 0.2
    expected_nll = -np.mean(np.log([0.8, 0.8, 0.8, 0.4, 0.51, 0.2]))
    assert report["members"][0]["nll"] == pytest.approx(expected_nll)
    assert 0 <= report["ensemble"]["soft"]["ece"] <= 1 and "nll" in report["ensemble"]["soft"]


@pytest.mark.parametrize("weights", [None, [1.0, 1.0, 3.0]])
@pytest.mark.parametrize("name", list(VOTES))
def test_report_calibrates_every_vote(name: str, weights: list[float] | None) -> None:
    """Every vote in VOTES has the NLL and ECE of its own probabilities (``shares``), weighted or not."""
    rep = build_report(PROBA, Y_TRUE, weights=weights)
    entry = rep["ensemble"][name]
    expected = calibration(VOTES[name].shares(PROBA, weights=weights), Y_TRUE, bins=15)
    assert (entry["nll"], entry["ece"]) == (pytest.approx(expected["nll"]), pytest.approx(expected["ece"]))
    assert math.isfinite(entry["nll"]) and entry["nll"] >= 0 and 0 <= entry["ece"] <= 1
    assert f"| {name} vote | {entry['nll']:.4f} | {100 * entry['ece']:.2f} % |" in format_markdown(rep)


@pytest.mark.parametrize("weights", [None, [1.0, 1.0, 3.0]])
def test_soft_calibration_is_the_weighted_mean_probability(weights: list[float] | None) -> None:
    """The soft vote's calibration stays that of the members' (weighted) mean probability, where it always was."""
    w = np.ones(3) if weights is None else np.asarray(weights)
    mean = np.einsum("k,knc->nc", w / w.sum(), PROBA)
    soft = build_report(PROBA, Y_TRUE, weights=weights)["ensemble"]["soft"]
    assert soft["nll"] == pytest.approx(-np.mean(np.log(mean[np.arange(6), Y_TRUE])))
    assert soft["ece"] == pytest.approx(calibration(mean, Y_TRUE, bins=15)["ece"])


def test_calibration_of_one_hot_members_known_answer() -> None:
    """One-hot members: the majority's (and the soft vote's) probabilities are the vote fractions.

    Votes per sample (K = 3): 0,0,0 (true 0); 1,1,0 (true 1); 2,2,1 (true 1); 0,1,2 (true 2, a
    three-way tie -> label 0). p(true) = 1, 2/3, 1/3, 1/3; confidences 1, 2/3, 2/3, 1/3 with
    right, right, wrong, wrong: ECE = 2/4 * |2/3 - 1/2| + 1/4 * |1/3 - 0| + 1/4 * 0 = 1/6.
    """
    votes = np.array([[0, 1, 2, 0], [0, 1, 2, 1], [0, 0, 1, 2]])  # (K, N)
    y = np.array([0, 1, 1, 2])
    proba = np.eye(3)[votes]  # (K, N, C) one-hot
    np.testing.assert_allclose(VOTES["majority"].shares(proba), np.eye(3)[votes].mean(axis=0))
    rep = build_report(proba, y)
    assert rep["ensemble"]["majority"]["errors"] == 2 and rep["ensemble"]["majority"]["ties"]["by_label"] == 1
    expected_nll = -np.mean(np.log([1, 2 / 3, 1 / 3, 1 / 3]))
    for name in ("majority", "soft"):
        assert rep["ensemble"][name]["nll"] == pytest.approx(expected_nll)
        assert rep["ensemble"][name]["ece"] == pytest.approx(1 / 6)


def test_a_new_vote_is_calibrated_and_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule added to VOTES gets its calibration (and a row in report.md) without touching the report."""
    from ensemble_cnn.inference.vote import VoteRule

    def max_shares(probabilities: np.ndarray, *, weights: object = None) -> np.ndarray:
        top = np.asarray(probabilities).max(axis=0)
        return top / top.sum(axis=1, keepdims=True)

    def max_labels(probabilities: np.ndarray, *, weights: object = None) -> np.ndarray:
        return np.argmax(max_shares(probabilities), axis=1).astype(np.int64)

    monkeypatch.setitem(VOTES, "maxprob", VoteRule("maxprob", max_labels, max_shares, "the most confident member"))
    rep = build_report(PROBA, Y_TRUE, member_names=NAMES)
    entry = rep["ensemble"]["maxprob"]
    assert entry["nll"] == pytest.approx(calibration(max_shares(PROBA), Y_TRUE)["nll"])
    assert f"| maxprob vote | {entry['nll']:.4f} | {100 * entry['ece']:.2f} % |" in format_markdown(rep)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".")]


def test_write_report(report: dict, tmp_path: Path) -> None:
    out = tmp_path / "run"
    paths = write_report(report, out)
    assert set(paths) == {"json", "markdown"}
    assert paths["json"] == out / "report.json" and paths["markdown"] == out / "report.md"
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == report
    assert paths["markdown"].read_text(encoding="utf-8") == format_markdown(report)
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    assert _no_temp_files(out)


# --------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------- #
def _assert_png(path: Path, *, min_side: int = 100) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path, format="png")
    assert pixels.ndim == 3 and pixels.shape[0] >= min_side and pixels.shape[1] >= min_side
    assert pixels.std() > 0.01  # not a blank canvas


def _digits(n: int, seed: int = 0) -> np.ndarray:
    """Blobby fake digits (n, 28, 28) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    imgs = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(9, 19, size=2)
        ring = np.abs(np.hypot(yy - cy, xx - cx) - rng.uniform(4, 8)) < 1.5
        imgs[i][ring] = 255
    return imgs


@pytest.mark.parametrize("k", [3, 5, 8, 15])
def test_accuracy_figure_labels_do_not_overlap(k: int) -> None:
    """The member names under the bars and the accuracy labels over them never overlap, at any ensemble size."""
    from ensemble_cnn.evaluation.plots import accuracy_figure

    rng = np.random.default_rng(k)
    proba = rng.dirichlet(np.ones(10), size=(k, 200))
    y = rng.integers(0, 10, 200)
    rep = build_report(proba, y, member_names=[f"member_{i:02d}" for i in range(k)])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = accuracy_figure(rep)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    for texts in (list(ax.get_yticklabels()), [t for t in ax.texts if t.get_text()]):
        boxes = [t.get_window_extent(renderer) for t in texts]
        assert len(boxes) == k + len(rep["ensemble"])
        for a, b in zip(boxes, boxes[1:]):
            assert not a.overlaps(b), f"{k} members: labels overlap"


def test_write_plots(report: dict, tmp_path: Path) -> None:
    from ensemble_cnn.evaluation.plots import write_plots

    images = _digits(6)
    paths = write_plots(report, images, Y_TRUE, np.array(MAJORITY), tmp_path / "plots")
    assert set(paths) == {"accuracy", "confusion", "errors", "members_curve", "agreement", "risk_coverage"}
    for key, path in paths.items():
        assert path == tmp_path / "plots" / f"{key}.png"
        _assert_png(path)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "accuracy.png", "agreement.png", "confusion.png", "errors.png", "members_curve.png", "risk_coverage.png"]


def test_plot_errors_none_wrong_and_many_wrong(tmp_path: Path) -> None:
    from ensemble_cnn.evaluation.plots import plot_errors

    images = _digits(150, seed=1)
    y = np.arange(150) % 10
    plot_errors(images, y, y, tmp_path / "none.png")
    _assert_png(tmp_path / "none.png")
    plot_errors(images[..., None], y, (y + 1) % 10, tmp_path / "many.png", max_images=30)
    _assert_png(tmp_path / "many.png")
    assert _no_temp_files(tmp_path)
    with pytest.raises(ValueError, match="same length"):
        plot_errors(images, y[:10], y, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="`max_images` must be a positive integer"):
        plot_errors(images, y, y, tmp_path / "bad.png", max_images=0)
    assert not (tmp_path / "bad.png").exists()


def test_plot_preview(tmp_path: Path) -> None:
    from ensemble_cnn.evaluation.plots import plot_preview

    originals = _digits(4, seed=2)
    variants = np.stack([np.roll(originals, s, axis=2) for s in (-2, -1, 1, 2, 3)], axis=1)
    assert variants.shape == (4, 5, 28, 28)
    path = plot_preview(originals, variants, tmp_path / "preview.png")
    assert path == tmp_path / "preview.png"
    _assert_png(path)
    # float images in [0, 1] are accepted too
    plot_preview(originals / 255.0, variants / 255.0, tmp_path / "preview_float.png")
    _assert_png(tmp_path / "preview_float.png")
    assert _no_temp_files(tmp_path)
    with pytest.raises(ValueError, match="`variants` must have shape"):
        plot_preview(originals, variants[:3], tmp_path / "bad.png")


def test_failed_plot_leaves_previous_file_and_no_temp(
    report: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    from ensemble_cnn.evaluation.plots import plot_confusion

    target = tmp_path / "confusion.png"
    plot_confusion(report, target)
    before = target.read_bytes()

    def broken_savefig(self: Figure, fname: object, **kwargs: object) -> None:
        Path(fname).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_confusion(report, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png"]
