"""The report's uncertainty sections (issue 31): "When the vote is unsure" (every score's selective figures on the
test digits, the risk-coverage picture) and ``evaluate --ood`` ("not a digit"), through ``evaluate_run`` and the
command line on untrained runs (``make_run``), with known answers: a committee that agrees and is right everywhere,
a hand-computed curve, the test digits themselves as the "not a digit" set (chance, exactly), Fashion-MNIST."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from ensemble_cnn.errors import InputError
from ensemble_cnn.evaluation.ood import ood_metrics
from ensemble_cnn.evaluation.report import (
    SELECTIVE_COVERAGES, SELECTIVE_MAX_ERROR, SET_ASIDE_ERROR, uncertainty_section,
)
from ensemble_cnn.evaluation.selective import (
    aurc, coverage_at_error, curve_aurc, error_at_coverage, error_auroc, oracle_curve,
)
from ensemble_cnn.inference.paths import load_image_set
from ensemble_cnn.inference.uncertainty import SCORES, uncertainty
from ensemble_cnn.inference.vote import get_vote

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def strict_json(path: Path) -> dict:
    """``path`` read as strict JSON: NaN or Infinity in it fails the test."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def member_probabilities(run: Path, count: int) -> np.ndarray:
    """The probabilities the run's members saved at training time, (K, N, 10)."""
    return np.stack([np.load(run / f"member_{k:02d}_test_proba.npy") for k in range(count)])


def as_json(point: dict) -> dict:
    """A selective result as the report writes it: NaN (nothing answered) and -inf (no such threshold) as None."""
    return {key: None if isinstance(value, float) and not np.isfinite(value) else value
            for key, value in point.items()}


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """``images`` uint8 (N, 28, 28) as an uncompressed IDX images file."""
    path.write_bytes(struct.pack(">IIII", 0x00000803, *images.shape) + images.astype(np.uint8).tobytes())


# --------------------------------------------------------------------------- the section, known answers
@pytest.mark.parametrize("members", [1, 3])
def test_a_committee_that_agrees_and_is_right_answers_every_digit_at_no_risk(members: int) -> None:
    y = np.arange(300) % 10
    probabilities = np.zeros((members, 300, 10))
    probabilities[:, np.arange(300), y] = 1.0
    answers = get_vote("majority").labels(probabilities)
    scores = {name: uncertainty(probabilities, score=name) for name in SCORES}
    section = uncertainty_section(scores, answers == y, answer="majority")
    assert set(section["scores"]) == set(SCORES) and section["errors"] == 0 and section["oracle_aurc"] == 0.0
    for name, entry in section["scores"].items():
        assert entry["aurc"] == 0.0, name
        assert [p["target_coverage"] for p in entry["error_at_coverage"]] == list(SELECTIVE_COVERAGES)
        for point in [*entry["error_at_coverage"], entry["coverage_at_error"], entry["set_aside"]]:
            assert point["coverage"] == 1.0 and point["accepted"] == 300 and point["errors"] == 0, name
            assert point["error"] == 0.0 and point["error_low"] == 0.0
        assert entry["set_aside"]["share"] == 0.0
        assert entry["error_auroc"] is None  # no error to find


def test_hand_computed_section() -> None:
    """200 digits scoring 0..199, the two least trusted wrong (1% error)."""
    scores = np.arange(200, dtype=float)
    correct = scores < 198
    entry = uncertainty_section({"hand": scores}, correct, answer="soft")["scores"]["hand"]
    assert entry["aurc"] == pytest.approx((1 / 199 + 2 / 200) / 200, rel=1e-12)
    at = {p["target_coverage"]: p for p in entry["error_at_coverage"]}
    assert (at[0.995]["accepted"], at[0.995]["errors"]) == (199, 1)  # 99.5% of 200: the 199 surest, one wrong
    assert at[0.995]["error"] == pytest.approx(1 / 199)
    assert at[0.995]["error_low"] < 1 / 199 < at[0.995]["error_high"]
    for target, accepted in ((0.99, 198), (0.98, 196), (0.95, 190)):
        assert (at[target]["accepted"], at[target]["errors"], at[target]["error"]) == (accepted, 0, 0.0)
    assert entry["coverage_at_error"]["coverage"] == 0.99  # 1/199 > 0.1%: the last right digit is the limit
    assert entry["set_aside"]["share"] == pytest.approx(0.01)  # 1/199 = 0.503% > 0.5%: two digits set aside
    assert entry["error_auroc"] == 1.0 and entry["description"] == ""


def test_error_auroc_is_the_chance_an_error_scores_higher() -> None:
    # errors score 0.5 and 0.9; right answers 0.1, 0.5, 0.7: pairs (0.5 vs 0.1, 0.5, 0.7) = 1 + 0.5 + 0; 0.9: 3
    assert error_auroc([0.1, 0.5, 0.7, 0.5, 0.9], [True, True, True, False, False]) == pytest.approx(4.5 / 6)
    assert error_auroc([0.3, 0.2], [False, False]) is None


# --------------------------------------------------------------------------- evaluate writes it
@pytest.mark.parametrize("voting", ["majority", "soft"])
def test_evaluate_reports_every_score_as_selective_computes_it(make_run, tmp_path: Path, voting: str) -> None:
    """The section of report.json is selective.py on the members' probabilities, judged on the shown vote's answers."""
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    run = tmp_path / "run"
    config = make_run(run, members=3)
    evaluate_run(run, voting=voting, reload=False, log=None)
    report = strict_json(run / "report.json")
    section = report["uncertainty"]
    probabilities = member_probabilities(run, 3)
    with np.load(config.data) as npz:
        y = npz["y_test"]
    correct = get_vote(voting).labels(probabilities) == y
    assert section["answer"] == voting and section["n_test"] == len(y) == 1000
    assert section["errors"] == int((~correct).sum()) == report["ensemble"][voting]["errors"]
    assert section["oracle_aurc"] == pytest.approx(curve_aurc(oracle_curve(correct)), abs=1e-15)
    assert list(section["scores"]) == list(SCORES)
    for name, entry in section["scores"].items():
        scores = uncertainty(probabilities, score=name)
        assert entry["description"] == SCORES[name].description
        assert entry["aurc"] == pytest.approx(aurc(scores, correct), abs=1e-15)
        for point, target in zip(entry["error_at_coverage"], SELECTIVE_COVERAGES):
            assert point == pytest.approx(as_json(error_at_coverage(scores, correct, target)), abs=1e-15)
        assert entry["coverage_at_error"] == as_json(coverage_at_error(scores, correct, SELECTIVE_MAX_ERROR))
        # random members are wrong 90% of the time: no coverage reaches 0.5% error, every digit is set aside
        assert entry["set_aside"]["share"] == 1.0 - coverage_at_error(scores, correct, SET_ASIDE_ERROR)["coverage"]
        assert entry["error_auroc"] == pytest.approx(error_auroc(scores, correct), abs=1e-15)
    assert 0 <= section["seconds"] < 5
    markdown = (run / "report.md").read_text()
    assert "## When the vote is unsure" in markdown and f"**{voting} vote's answers**" in markdown
    assert "not thresholds to deploy" in markdown
    assert all(f"| {name} |" in markdown for name in SCORES)
    assert "LeNet-4 1.8 %" in markdown and "not a digit" not in markdown.lower()
    png = (run / "risk_coverage.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


# --------------------------------------------------------------------------- --ood
def test_the_test_digits_themselves_are_not_told_apart(make_run, tmp_path: Path, small_mnist_npz: Path) -> None:
    """The run's own test digits as the "not a digit" set: the same predictions, so every AUROC is 1/2 exactly."""
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    run = tmp_path / "run"
    make_run(run, members=2)
    before = small_mnist_npz.read_bytes()
    report = evaluate_run(run, reload=True, plots=False, ood=[small_mnist_npz], log=None)
    assert small_mnist_npz.read_bytes() == before  # an input, only read
    (entry,) = report["not_a_digit"]["sets"]
    assert (entry["path"], entry["n_images"], entry["read"]) == (str(small_mnist_npz), 1000, "1 file")
    # energy needs no fit, nor the digits' ink area; no Gaussians in this run, no calibration digits: no combined rule
    assert list(entry["scores"]) == [*SCORES, "energy", "ink_area"]
    for name, metrics in entry["scores"].items():
        assert metrics["auroc"] == pytest.approx(0.5, abs=1e-12), name
        assert metrics["n_in"] == metrics["n_ood"] == 1000
    assert report["not_a_digit"]["anchors"]["max_probability"] == {"auroc": 0.946, "fpr_at_tpr_ood_positive": 0.24}
    assert strict_json(run / "report.json")["not_a_digit"] == json.loads(json.dumps(report["not_a_digit"]))


def test_ood_sets_from_the_command_line(make_run, tmp_path: Path) -> None:
    """Two --ood sets (a folder of noise and blank arrays, a file of inverted digits): each reported, in range."""
    run = tmp_path / "run"
    config = make_run(run, members=2)
    rng = np.random.default_rng(0)
    folder = tmp_path / "not digits"
    (folder / "deeper").mkdir(parents=True)
    np.save(folder / "noise.npy", rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8))
    np.save(folder / "deeper" / "blank.npy", np.zeros((10, 28, 28), dtype=np.uint8))
    inverted = tmp_path / "inverted.npz"
    with np.load(config.data) as npz:  # the run's test digits, inverted
        np.savez(inverted, x=255 - npz["x_test"][:30])
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--ood", str(folder), "--ood", str(inverted)])
    assert result.exit_code == 0, result.output
    assert "not a digit (" in result.output
    sets = strict_json(run / "report.json")["not_a_digit"]["sets"]
    assert [(s["path"], s["n_images"], s["read"]) for s in sets] == [(str(folder), 50, "2 files"),
                                                                    (str(inverted), 30, "1 file")]
    for entry in sets:
        for name, metrics in entry["scores"].items():
            for key in ("auroc", "fpr_at_tpr", "fpr_at_tpr_ood_positive", "aupr_in", "aupr_out"):
                assert 0.0 <= metrics[key] <= 1.0, (entry["path"], name, key)
    markdown = (run / "report.md").read_text()
    assert "## Not a digit" in markdown and f"### {folder}" in markdown and "OpenOOD v1.5" in markdown


def test_fashion_mnist_is_read_as_its_test_split_and_scored(make_run, tmp_path: Path) -> None:
    if not FASHION_MNIST.is_dir():
        message = (f"Fashion-MNIST not found at {FASHION_MNIST} (Debian's dataset-fashion-mnist: "
                   "apt-get install dataset-fashion-mnist; .ci/run installs it)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    from ensemble_cnn.data.mnist import load_mnist
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    fashion = load_mnist(FASHION_MNIST)  # --data reads the folder too (the same IDX layout)
    images, read = load_image_set(FASHION_MNIST)
    np.testing.assert_array_equal(images, fashion.x_test)
    assert read.startswith("t10k-images-idx3-ubyte") and "MNIST-layout" in read
    run = tmp_path / "run"
    make_run(run, members=2)
    report = evaluate_run(run, reload=False, plots=False, ood=[FASHION_MNIST], log=None)
    (entry,) = report["not_a_digit"]["sets"]
    assert entry["n_images"] == 10_000 and entry["read"] == read
    probabilities = member_probabilities(run, 2)  # reload=False: the test digits' saved probabilities
    assert entry["scores"]["entropy"]["n_in"] == probabilities.shape[1]
    for metrics in entry["scores"].values():
        assert 0.0 <= metrics["auroc"] <= 1.0 and 0.0 <= metrics["fpr_at_tpr_ood_positive"] <= 1.0


def test_an_ood_path_is_never_an_output(make_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run(run, members=1)
    picture = run / "risk_coverage.png"  # a report picture's own path given as the set to read
    from PIL import Image

    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(picture)
    before = picture.read_bytes()
    for ood, words in ((picture, "is an input of this command"), (run, "an input of this command")):
        result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--ood", str(ood)])
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert picture.read_bytes() == before and not (run / "report.json").exists()


def test_a_missing_ood_path_is_one_line_exit_2(make_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run(run, members=1)
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--ood", str(tmp_path / "nowhere")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--ood" in errors[0] and "nowhere" in errors[0]
    assert not (run / "report.json").exists()


# --------------------------------------------------------------------------- reading a set whole
def test_an_mnist_layout_folder_gives_its_test_images_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    test_images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte", test_images)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x00000801, 7) + bytes(7))
    images, read = load_image_set(tmp_path)
    np.testing.assert_array_equal(images, test_images)
    assert read == "t10k-images-idx3-ubyte: the test split of an MNIST-layout folder"


def test_a_set_is_read_whole_or_not_at_all(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.full((3, 28, 28), 200, dtype=np.uint8))
    (tmp_path / "b.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match="b.npy"):
        load_image_set(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: no image or array files"):
        load_image_set(empty)


def test_ood_metrics_of_the_section_are_ood_py() -> None:
    """ood_section is ood_metrics per score, at 95% TPR."""
    from ensemble_cnn.evaluation.report import ood_section

    rng = np.random.default_rng(5)
    inside, outside = {"s": rng.random(100)}, {"s": rng.random(40) + 0.3}
    entry = ood_section(inside, outside, path="p", read="1 file")
    assert entry == {"path": "p", "read": "1 file", "n_images": 40, "default_threshold": None,
                     "scores": {"s": ood_metrics(inside["s"], outside["s"], tpr=0.95)}}


def test_the_section_says_what_the_default_threshold_flags() -> None:
    """With the run's thresholds: the share of the set and of the test digits above predict's threshold."""
    from ensemble_cnn.evaluation.report import ood_section
    from ensemble_cnn.inference.trust import fit_thresholds

    labels = np.zeros(10, dtype=int)
    proba = np.full((1, 10, 10), 0.05)
    proba[0, :, 0] = 0.55
    thresholds = fit_thresholds(proba, labels, ood_score="energy", ood_calibration=np.arange(10.0), digit_pass=0.8)
    inside, outside = {"energy": np.array([0.0, 7.0, 7.5, 9.0])}, {"energy": np.array([6.0, 8.0, 20.0])}
    entry = ood_section(inside, outside, path="p", read="1 file", thresholds=thresholds)
    assert entry["default_threshold"] == {"score": "energy", "rule": "energy above 7", "threshold": 7.0,
                                          "digit_pass": 0.8,
                                          "n_calibration": 10, "flagged": 2 / 3, "digits_flagged": 0.5}
