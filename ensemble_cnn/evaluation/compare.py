"""Comparing runs on the same test digits: accuracies with intervals, and paired tests between the ensembles."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ensemble_cnn.deprecation import renamed_keyword
from ensemble_cnn.errors import MissingMembersError, RunFolderError, UnsafeMemberError
from ensemble_cnn.evaluation import stats
from ensemble_cnn.evaluation.evaluate import member_test_probabilities, test_split
from ensemble_cnn.evaluation.report import CONFIDENCE, SIGNIFICANCE
from ensemble_cnn.inference.ensemble import left_out_message, member_count, usable_records
from ensemble_cnn.inference.vote import VOTES, get_vote
from ensemble_cnn.models import load_member
from ensemble_cnn.storage.run_folder import RunFolder

__all__ = ["RunPredictions", "compare_predictions", "compare_runs", "format_comparison", "load_run_predictions"]


@dataclass
class RunPredictions:
    """A run's complete members' test-set probabilities.

    Attributes
    ----------
    run_dir : Path
    names : list of str
        Member names (``member_00`` ...).
    probabilities : ndarray of float32, shape (K, N, 10)
    labels : ndarray of int, shape (N,)
        The true labels of the test split the probabilities are for.
    seed : int
        The run's root seed.
    left_out : dict of int to str
        Members asked for but left out (index -> one-line reason); empty when complete.
    members_asked : int
        How many members were asked for (0: as many as ``names``).
    """

    run_dir: Path
    names: list[str]
    probabilities: np.ndarray
    labels: np.ndarray
    seed: int
    left_out: dict[int, str] = field(default_factory=dict)
    members_asked: int = 0


def load_run_predictions(run_dir: str | Path, *, data: str | Path | None = None,
                         members: int | None = None, allow_missing: bool = False) -> RunPredictions:
    """Read a run's members (the first ``members``, default all) and their test probabilities.

    Without ``data`` the probabilities saved at training time are used (checked by
    sha256); with ``data`` every member predicts that file's test split. Either way
    every member is loaded (Keras ``safe_mode``), so a member is used exactly when
    ``evaluate``, ``predict`` and ``serve`` would use it: one that is missing, corrupt
    or not loadable is left out (:attr:`RunPredictions.left_out`); without
    ``allow_missing`` that is a :class:`~ensemble_cnn.errors.MissingMembersError` naming each.
    """
    folder = RunFolder(run_dir)
    config = folder.require_config()
    count = member_count(members, config, folder.path)
    records, left_out = usable_records(folder, count)
    if not records:
        raise RunFolderError(f"{folder.path}: no trained member found")
    test = test_split(config, data)
    stacks, names = [], []
    for record in records:
        try:
            if data is None:  # the saved probabilities stand for the model only if the model loads
                load_member(folder.resolve(record["model"]))
            stacks.append(member_test_probabilities(folder, record, test, reload=data is not None))
        except UnsafeMemberError:
            raise
        except RunFolderError as exc:
            left_out[record["index"]] = str(exc)
            continue
        names.append(f"member_{record['index']:02d}")
    left_out = dict(sorted(left_out.items()))
    if not stacks:
        raise RunFolderError(f"no usable member: {left_out_message(folder.path, left_out, count)}")
    if left_out and not allow_missing:
        raise MissingMembersError(left_out_message(folder.path, left_out, count) + " (allow_missing=True to use "
                                  "the others)", left_out=left_out, asked=count)
    return RunPredictions(folder.path, names, np.stack(stacks), test.y_test.astype(np.int64), config.seed,
                          left_out=left_out, members_asked=count)


@renamed_keyword("vote", "voting")
def compare_runs(
    run_dirs: Sequence[str | Path], *, data: str | Path | None = None, voting: str = "majority",
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Score several runs' ensembles on the same test digits and test every pair of them.

    Parameters
    ----------
    run_dirs : sequence of path-like
        Two or more run folders.
    data : path-like, optional
        Score every run on this file's test split (members reloaded); default: the
        probabilities each run saved, which must be for the same test labels (each
        member is still loaded, and left out if it cannot be).
    voting : str
        The vote (a name in :data:`ensemble_cnn.inference.vote.VOTES`) the pairwise tests compare.
        Formerly ``vote``, still accepted with a deprecation warning.
    allow_missing : bool, default False
        Compare the usable members of a run that has some missing or unusable
        (they are named in each run's ``left_out``); otherwise that is a
        :class:`~ensemble_cnn.errors.MissingMembersError`.

    Returns
    -------
    dict
        ``runs``: per run its members, members' mean, ``left_out`` (``[{"member",
        "reason"}]``, empty when complete) and each vote's ``test_accuracy`` with ``ci95``; ``pairs``: for every pair of runs the exact
        McNemar test of their ``voting`` ensembles (``only_a``, ``only_b``, ``p_value``); ``vote``: its name.
    """
    get_vote(voting)  # before any run is read
    return compare_predictions([load_run_predictions(path, data=data, allow_missing=allow_missing)
                                for path in run_dirs], voting=voting)


def compare_predictions(runs: Sequence[RunPredictions], *, voting: str = "majority") -> dict[str, Any]:
    """:func:`compare_runs` on runs already loaded (:func:`load_run_predictions`)."""
    get_vote(voting)
    labels = runs[0].labels
    for run in runs[1:]:
        if run.labels.shape != labels.shape or not np.array_equal(run.labels, labels):
            raise RunFolderError(f"{run.run_dir}: scored on other test digits than {runs[0].run_dir}; "
                                 "give --data to score every run on the same file")
    n = len(labels)
    rows, right = [], []
    for run in runs:
        members_right = run.probabilities.argmax(axis=2) == labels
        votes = {}
        for name, rule in VOTES.items():
            correct = rule.labels(run.probabilities) == labels
            votes[name] = {"test_accuracy": float(correct.mean()),
                           "ci95": list(stats.wilson_interval(int(correct.sum()), n, confidence=CONFIDENCE))}
            if name == voting:
                right.append(correct)
        rows.append({"run": str(run.run_dir), "members": len(run.names), "seed": run.seed,
                     "members_mean": float(members_right.mean()), "ensemble": votes,
                     "left_out": [{"member": f"member_{i:02d}", "reason": r} for i, r in sorted(run.left_out.items())]})
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(right), 2):
        test = stats.mcnemar_exact(a, b)
        pairs.append({"a": rows[i]["run"], "b": rows[j]["run"], **test})
    return {"vote": voting, "n_test": n, "runs": rows, "pairs": pairs}


def format_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as terminal text: one row per run, then one line per pair of runs."""
    vote = comparison["vote"]
    votes = list(comparison["runs"][0]["ensemble"])
    header = ["run", "members", "members mean", *(f"{v} (95% CI)" for v in votes)]
    body = []
    for row in comparison["runs"]:
        cells = [row["run"], str(row["members"]), f"{100 * row['members_mean']:.2f} %"]
        for v in votes:
            entry = row["ensemble"][v]
            low, high = entry["ci95"]
            cells.append(f"{100 * entry['test_accuracy']:.2f} % ({100 * low:.2f}–{100 * high:.2f})")
        body.append(cells)
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    lines = [f"{comparison['n_test']} test digits; intervals: Wilson {100 * CONFIDENCE:.0f}%"]
    for cells in [header, *body]:
        lines.append("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in
                               enumerate(zip(cells, widths))).rstrip())
    for row in comparison["runs"]:
        for entry in row.get("left_out", []):
            lines.append(f"{row['run']}: {entry['member']} left out: {entry['reason']}")
    lines.append(f"paired tests of the {vote} votes (exact McNemar, two-sided):")
    for pair in comparison["pairs"]:
        verdict = "significant" if pair["p_value"] < SIGNIFICANCE else "not significant"
        lines.append(f"  {pair['a']} vs {pair['b']}: {pair['only_a']} digits only the first gets right, "
                     f"{pair['only_b']} only the second; p = {pair['p_value']:.3g}: {verdict} at "
                     f"{100 * SIGNIFICANCE:.0f}%")
    return "\n".join(lines) + "\n"
