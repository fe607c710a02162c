"""The report's calibrated part (issue 31): thresholds and conformal sets fixed on the calibration digits.

ONE tiny real run (``train --holdout shared``, 2 members, 1 epoch on 600 digits, 60 calibration
digits), evaluated; its calibrated figures are recomputed by hand with selective.py and conformal.py
from the probabilities read directly. Known answers on synthetic probabilities for the conformal
part with finite thresholds, and the one-line notes of runs that have no calibrated part.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import tiny_args
from ensemble_cnn.evaluation.evaluate import evaluate_run
from ensemble_cnn.evaluation.report import (
    CONFORMAL_LEVELS, NO_CALIBRATION_NOTE, SELECTIVE_COVERAGES, SELECTIVE_MAX_ERROR, calibrated_section,
)
from ensemble_cnn.evaluation.selective import calibrated_selection, select, threshold_for_coverage, \
    threshold_for_error
from ensemble_cnn.inference.conformal import conformal_quantile, conformity_scores, empty_sets, prediction_sets, \
    set_statistics
from ensemble_cnn.inference.uncertainty import SCORES, uncertainty
from ensemble_cnn.inference.vote import majority_vote
from ensemble_cnn.storage.calibration import read_calibration
from ensemble_cnn.storage.run_folder import RunFolder


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, small_mnist_npz):
    run_dir = tmp_path_factory.mktemp("calibrated") / "run"
    args = tiny_args(members="2", limit="600", val_size="60", holdout="shared")
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *args, "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    evaluate_run(run_dir, voting="majority", reload=False, plots=False, log=None)
    return run_dir


def close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12))


def test_the_calibrated_figures_equal_a_hand_computation(shared_run, small_mnist_npz):
    report = json.loads((shared_run / "report.json").read_text())
    calibrated = report["uncertainty"]["calibrated"]
    folder = RunFolder(shared_run)
    records = folder.records(2)
    calibration = read_calibration(folder, records)
    with np.load(small_mnist_npz) as npz:
        y_test = npz["y_test"]
    test = np.stack([np.load(shared_run / r["probabilities"]) for r in records])
    cal = calibration.probabilities
    assert cal.shape == (2, 60, 10) and calibrated["n_calibration"] == 60
    cal_right = majority_vote(cal) == calibration.labels
    test_right = majority_vote(test) == y_test
    assert set(calibrated["scores"]) == set(SCORES)
    for name, entry in calibrated["scores"].items():
        cal_scores, test_scores = uncertainty(cal, score=name), uncertainty(test, score=name)
        for coverage, point in zip(SELECTIVE_COVERAGES, entry["at_coverage"]):
            threshold = threshold_for_coverage(cal_scores, coverage)
            hand = select(test_scores, test_right, threshold)
            assert point["target_coverage"] == coverage and close(point["threshold"], threshold)
            assert (point["accepted"], point["errors"]) == (hand["accepted"], hand["errors"])
            assert close(point["coverage"], hand["coverage"]) and close(point["error"], hand["error"])
            assert close(point["error_low"], hand["error_low"]) and close(point["error_high"], hand["error_high"])
            assert close(point["calibration_coverage"], float(np.mean(cal_scores <= threshold)))
            assert point["accepted"] == int(np.sum(test_scores <= threshold))  # the rule itself, not only the helper
        threshold = threshold_for_error(cal_scores, cal_right, SELECTIVE_MAX_ERROR)
        hand = select(test_scores, test_right, threshold)
        at_error = entry["at_error"]
        assert close(at_error["threshold"], threshold if math.isfinite(threshold) else None)
        assert (at_error["accepted"], at_error["errors"]) == (hand["accepted"], hand["errors"])
        assert close(at_error["error"], hand["error"] if hand["accepted"] else None)
        on_cal = cal_right[cal_scores <= threshold]
        assert at_error["calibration_errors"] == int(np.sum(~on_cal))
        assert close(at_error["calibration_coverage"], on_cal.size / 60)
        assert on_cal.size == 0 or np.mean(~on_cal) <= SELECTIVE_MAX_ERROR
    # conformal: LAC on the members' mean probabilities; 60 digits cannot fix a 99% quantile (ceil(61 * 0.99) = 61 > 60)
    fit = conformity_scores(cal.astype(np.float64).mean(axis=0), calibration.labels)
    levels = calibrated["conformal"]["levels"]
    assert [level["level"] for level in levels] == list(CONFORMAL_LEVELS) == [0.99, 0.999]
    for level in levels:
        threshold = conformal_quantile(fit, level["level"])
        assert math.isinf(threshold) and level["threshold"] is None and level["every_label"]
        stats = set_statistics(prediction_sets(test.astype(np.float64).mean(axis=0), threshold), y_test)
        assert stats == {key: level[key] for key in stats} == {"n_digits": 1000, "mean_size": 10.0, "singletons": 0.0,
                                                                "empty": 0.0, "coverage": 1.0}
    markdown = (shared_run / "report.md").read_text()
    assert "### Thresholds fixed on the calibration digits" in markdown
    assert "∞ (every label)" in markdown and '"unsure"' in markdown and "marginal" in markdown
    assert NO_CALIBRATION_NOTE not in markdown


def test_conformal_sets_with_finite_thresholds_match_set_statistics():
    rng = np.random.default_rng(7)
    m, n = 2000, 500
    cal_mean, test_mean = rng.dirichlet(np.full(10, 0.3), size=m), rng.dirichlet(np.full(10, 0.3), size=n)
    cal_labels = np.array([rng.choice(10, p=p) for p in cal_mean])  # labels drawn from the probabilities
    test_labels = np.array([rng.choice(10, p=p) for p in test_mean])
    cal_scores = {"max_probability": 1 - cal_mean.max(axis=1)}
    test_scores = {"max_probability": 1 - test_mean.max(axis=1)}
    cal_right, test_right = cal_mean.argmax(axis=1) == cal_labels, test_mean.argmax(axis=1) == test_labels
    section = calibrated_section(cal_scores, cal_right, test_scores, test_right, calibration_mean=cal_mean,
                                 calibration_labels=cal_labels, test_mean=test_mean, test_labels=test_labels)
    assert section["n_calibration"] == m
    fit = 1 - cal_mean[np.arange(m), cal_labels]
    for level in section["conformal"]["levels"]:
        k = math.ceil((m + 1) * level["level"])  # 1981 and 1999: both within the 2000 digits
        threshold = np.sort(fit)[k - 1]
        assert level["threshold"] == threshold and not level["every_label"]
        sets = 1 - test_mean <= threshold
        sizes = sets.sum(axis=1)
        assert level["mean_size"] == sizes.mean() and level["singletons"] == np.mean(sizes == 1)
        assert level["empty"] == np.mean(empty_sets(sets)) == np.mean(sizes == 0)
        assert level["coverage"] == np.mean(sets[np.arange(n), test_labels])
        assert level["coverage"] >= level["level"] - 0.03  # marginal guarantee, within sampling noise for 500 digits
    point = section["scores"]["max_probability"]["at_coverage"][3]
    assert point == {**calibrated_selection(cal_scores["max_probability"], test_scores["max_probability"], test_right,
                                            coverage=0.95)}


def test_a_run_without_calibration_digits_gets_one_line(make_run, tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, members=1, holdout="member")
    report = evaluate_run(run_dir, reload=False, plots=False, log=None)
    assert report["uncertainty"]["calibrated"] == {"note": NO_CALIBRATION_NOTE}
    section = (run_dir / "report.md").read_text().split("### Thresholds fixed on the calibration digits\n")[1]
    lines = [line for line in section.split("\n## ")[0].splitlines() if line.strip()]
    assert lines == [f"Calibrated thresholds: {NO_CALIBRATION_NOTE}."]


def test_a_member_without_calibration_probabilities_skips_the_calibrated_part(shared_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(shared_run, run_dir)
    record_path = run_dir / "member_01.json"
    record = json.loads(record_path.read_text())
    del record["calibration"], record["calibration_sha256"]
    record_path.write_text(json.dumps(record))
    report = evaluate_run(run_dir, reload=False, plots=False, log=None)
    assert [m["name"] for m in report["members"]] == ["member_00", "member_01"]  # still evaluated
    note = report["uncertainty"]["calibrated"]["note"]
    assert note.startswith("member_01 evaluated without calibration probabilities")
    assert note in (run_dir / "report.md").read_text()
    # evaluating member_00 alone: its calibration probabilities are there, so the part comes back
    alone = evaluate_run(run_dir, members=1, reload=False, plots=False, log=None)
    assert alone["uncertainty"]["calibrated"]["n_calibration"] == 60
