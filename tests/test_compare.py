"""`ensemble-cnn compare`: runs side by side on the same digits, with intervals and paired tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from ensemble_cnn.evaluation.compare import compare_runs
from ensemble_cnn.evaluation.stats import mcnemar_exact
from conftest import subset_run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, trained_run):
    """Two real 2-member runs on the same digits: members 0, 1 and members 1, 2 of the shared trained run."""
    root = tmp_path_factory.mktemp("compare")
    return subset_run(trained_run, root / "s1", [0, 1]), subset_run(trained_run, root / "s2", [1, 2])


def test_compare_two_real_runs(two_runs):
    comparison = compare_runs(two_runs)
    assert [row["members"] for row in comparison["runs"]] == [2, 2]
    labels = np.load(json.loads((two_runs[0] / "config.json").read_text())["data"])["y_test"]
    right = []
    for row, run in zip(comparison["runs"], two_runs):
        stack = np.stack([np.load(run / f"member_0{i}_test_proba.npy") for i in range(2)])
        from ensemble_cnn.inference.vote import majority_vote

        correct = majority_vote(stack) == labels
        right.append(correct)
        assert row["ensemble"]["majority"]["test_accuracy"] == pytest.approx(correct.mean())
        low, high = row["ensemble"]["majority"]["ci95"]
        assert low < correct.mean() < high
    pair = comparison["pairs"][0]
    assert {k: pair[k] for k in ("only_a", "only_b", "p_value")} == mcnemar_exact(*right)


def test_compare_command(two_runs):
    result = CliRunner().invoke(main, ["compare", *map(str, two_runs)])
    assert result.exit_code == 0, result.output
    assert "paired tests of the majority votes (exact McNemar, two-sided):" in result.output
    assert f"{two_runs[0]} vs {two_runs[1]}: " in result.output
    as_json = CliRunner().invoke(main, ["compare", *map(str, two_runs), "--vote", "soft", "--json"])
    assert json.loads(as_json.output)["vote"] == "soft"


def test_compare_refuses_runs_scored_on_other_digits(two_runs, tmp_path, make_run, small_mnist_npz):
    other_data = tmp_path / "other.npz"
    with np.load(small_mnist_npz) as npz:
        arrays = dict(npz)
    arrays["y_test"] = (arrays["y_test"] + 1) % 10
    np.savez(other_data, **arrays)
    other = tmp_path / "other-run"
    make_run(other, data=str(other_data))
    result = CliRunner().invoke(main, ["compare", str(two_runs[0]), str(other)])
    assert result.exit_code == 1 and "scored on other test digits" in result.output and "--data" in result.output


@pytest.mark.parametrize("args, text", [(["compare"], "Missing argument"), (["compare", "."], "at least two"),
                                        (["compare", "x", "y"], "x is not a folder")])
def test_compare_usage_errors(args, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and text in result.output


def test_evaluate_writes_the_statistics_and_pictures(two_runs):
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    report = evaluate_run(two_runs[0], log=None)
    saved = json.loads((two_runs[0] / "report.json").read_text())
    assert saved["accuracy_vs_members"] == report["accuracy_vs_members"] and len(saved["accuracy_vs_members"]) == 2
    for vote in ("majority", "soft"):
        entry = saved["ensemble"][vote]
        assert len(entry["ci95"]) == 2 and set(entry["mcnemar_vs_best_member"]) == {
            "member", "only_ensemble", "only_member", "p_value"}
    assert {"nll", "ece"} <= set(saved["ensemble"]["soft"]) and {"nll", "ece", "ci95"} <= set(saved["members"][0])
    for picture in ("members_curve.png", "agreement.png"):
        assert (two_runs[0] / picture).read_bytes()[:4] == b"\x89PNG"
    markdown = (two_runs[0] / "report.md").read_text()
    assert "majority vote vs best member" in markdown and "## Accuracy against ensemble size" in markdown
