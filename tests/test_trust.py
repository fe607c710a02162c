"""When to trust an answer (issue 31, item 6): thresholds fixed on calibration digits, applied by judge,
carried by the Python API, predict, serve and export.

Known answers on synthetic probabilities; the real paths on the session's tiny trained run (``trained_run``:
3 members, ``--holdout`` auto = shared, 300 calibration digits).
"""
from __future__ import annotations

import json
import math
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.inference import trust
from ensemble_cnn.inference.conformal import conformal_quantile
from ensemble_cnn.inference.uncertainty import SCORES
from ensemble_cnn_cli.main import main


def one_hot_committee(labels: np.ndarray, k: int = 3, confidence: float = 1.0) -> np.ndarray:
    """(k, N, 10): every member gives ``confidence`` to the label, the rest spread evenly."""
    proba = np.full((k, len(labels), 10), (1 - confidence) / 9)
    proba[:, np.arange(len(labels)), labels] = confidence
    return proba


# --------------------------------------------------------------------------- known answers
def test_a_committee_that_agrees_everywhere_answers_every_digit_at_any_threshold():
    labels = np.arange(50) % 10
    calibration = one_hot_committee(labels)
    for coverage in (0.5, 0.9, 0.99):
        thresholds = trust.fit_thresholds(calibration, labels, coverage=coverage, level=0.9, ood_score="entropy")
        assert thresholds.calibration_coverage == 1.0  # every score is 0: ties come along
        verdicts = trust.judge(one_hot_committee(labels[::-1]), thresholds)
        assert verdicts.answered.all() and not verdicts.unsure.any() and not verdicts.not_a_digit.any()
        np.testing.assert_array_equal(verdicts.labels, labels[::-1])
        np.testing.assert_array_equal(verdicts.sets, np.eye(10, dtype=bool)[labels[::-1]])  # singletons
        assert verdicts.summary() == "50 of 50 answered, 0 set aside (0 unsure, 0 not a digit)"


def test_thresholds_match_a_hand_computation():
    # one member, 10 calibration digits of label 0 with confidences 0.91 .. 1.00
    confidence = np.linspace(0.91, 1.0, 10)
    proba = np.zeros((1, 10, 10))
    proba[0, :, 0] = confidence
    proba[0, :, 1] = 1 - confidence
    labels = np.zeros(10, dtype=int)
    thresholds = trust.fit_thresholds(proba, labels, coverage=0.8, level=0.5, digit_pass=0.9, ood_score="entropy")
    scores = np.sort(1 - confidence)  # max_probability: 0.00 .. 0.09
    assert thresholds.unsure_above == pytest.approx(scores[7])  # the 8th smallest answers 8 of 10
    assert thresholds.calibration_coverage == pytest.approx(0.8)
    entropy = np.sort(-(confidence * np.log(confidence) + np.where(confidence < 1, (1 - confidence)
                                                                    * np.log(np.maximum(1 - confidence, 1e-300)), 0)))
    assert thresholds.not_a_digit_above == pytest.approx(entropy[8])  # 9 of 10 pass
    # the label sets: LAC, 1 - p(true label), k = ceil(11 * 0.5) = 6th smallest
    assert thresholds.set_threshold == pytest.approx(scores[5])
    assert thresholds.set_threshold == conformal_quantile(1 - confidence, 0.5)

    new = np.zeros((1, 3, 10))
    new[0, 0, 0], new[0, 0, 1] = 0.99, 0.01  # sure: answered, set {0}
    new[0, 1, 3], new[0, 1, 5] = 0.5, 0.5  # split: unsure, set empty (no label reaches 1 - threshold)
    new[0, 2, :] = 0.1  # flat: unsure and not a digit
    verdicts = trust.judge(new, thresholds)
    assert verdicts.unsure.tolist() == [False, True, True]
    assert verdicts.not_a_digit.tolist() == [False, True, True]
    assert [trust.set_text(row) for row in verdicts.sets] == ["0", "-", "-"]
    assert verdicts.labels.tolist() == [0, 3, 0]  # the vote's labels, whatever the flags say


def test_an_empty_set_is_always_unsure_even_below_the_score_threshold():
    labels = np.zeros(20, dtype=int)
    proba = one_hot_committee(labels, k=1, confidence=0.99)
    thresholds = trust.fit_thresholds(proba, labels, coverage=0.5, level=0.5, ood_score="max_probability")
    thresholds = trust.Thresholds(**{**thresholds.__dict__, "unsure_above": 1.0})  # the score never flags
    odd = one_hot_committee(np.array([4]), k=1, confidence=0.6)  # p = 0.6 < 1 - threshold: no label fits
    verdicts = trust.judge(odd, thresholds)
    assert not verdicts.sets.any() and verdicts.unsure.all()


def test_a_score_past_the_softmax_takes_its_values_from_the_caller():
    labels = np.zeros(10, dtype=int)
    proba = one_hot_committee(labels, k=2, confidence=0.9)
    energy = -np.arange(10, 20, dtype=float)  # -19 .. -10 on the calibration digits
    thresholds = trust.fit_thresholds(proba, labels, ood_score="energy", ood_calibration=energy, digit_pass=0.8)
    assert thresholds.ood_score == "energy" and thresholds.not_a_digit_above == -12.0  # 8 of 10 pass
    verdicts = trust.judge(proba[:, :3], thresholds, ood_scores=[-15.0, -12.0, -11.5])
    assert verdicts.not_a_digit.tolist() == [False, False, True]
    with pytest.raises(ValueError, match=r"^ood_score 'energy\+ink_area' needs the energy scores of the calibration "
                                         "digits: pass them$"):
        trust.fit_thresholds(proba, labels)  # the default, energy+ink_area, needs them
    with pytest.raises(ValueError, match=r"^energy scores of the judged digits must be 3 finite numbers"):
        trust.judge(proba[:, :3], thresholds, ood_scores=[1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"^ood_score must be one of vote_margin, .*, energy, ink_area, or several "
                                         r"joined with \+ \(the default energy\+ink_area\), got 'logits'$"):
        trust.fit_thresholds(proba, labels, ood_score="logits")
    for name in ("energy+energy", "energy+logits", "+", ""):
        with pytest.raises(ValueError, match="ood_score must be one of"):
            trust.check_ood_score(name)


def test_a_combined_score_flags_a_digit_when_any_of_its_scores_is_above_its_own_threshold():
    labels = np.zeros(10, dtype=int)
    proba = one_hot_committee(labels, k=2, confidence=0.9)
    # two scores whose largest values fall on different digits: 8 and 9 for energy, 0 and 1 for ink area
    energy = np.array([0, 1, 2, 3, 4, 5, 6, 7, 20, 30], dtype=float)
    ink = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.2, 0.1, 0.2, 0.2, 0.1])
    thresholds = trust.fit_thresholds(proba, labels, ood_calibration={"energy": energy, "ink_area": ink},
                                      digit_pass=0.6)
    assert thresholds.ood_score == "energy+ink_area" and thresholds.not_a_digit_above == 0.0
    # by hand: at the 8th smallest each (7 and 0.3), digits 0, 1, 8 and 9 fail: 60% pass (the 7th passes 50%)
    parts = thresholds.ood_components
    assert parts["energy"]["above"] == 7.0 and parts["ink_area"]["above"] == 0.3
    assert parts["energy"]["scale"] == 7.0 - 4.5 and parts["ink_area"]["scale"] == pytest.approx(0.3 - 0.2)
    judged = {"energy": [6.0, 8.0, 0.0, 7.0], "ink_area": [0.2, 0.1, 0.35, 0.3]}
    verdicts = trust.judge(proba[:, :4], thresholds, ood_scores=judged)
    assert verdicts.not_a_digit.tolist() == [False, True, True, False]  # at a threshold itself: passes
    np.testing.assert_allclose(verdicts.ood_scores, [max(-1 / 2.5, -1), max(1 / 2.5, -2), max(-7 / 2.5, 0.5), 0.0])
    assert "energy above 7 or ink_area above 0.3" in thresholds.describe()
    with pytest.raises(ValueError, match="needs the ink_area scores of the judged digits"):
        trust.judge(proba[:, :4], thresholds, ood_scores={"energy": judged["energy"]})


@pytest.mark.parametrize("name, value", [("coverage", 1), ("coverage", 0), ("level", 1.5), ("level", True),
                                         ("digit_pass", "0.9"), ("coverage", float("nan"))])
def test_a_share_outside_zero_to_one_is_refused_in_one_line(name, value):
    labels = np.arange(10)
    with pytest.raises(ValueError, match=rf"^`{name}` must be a number in \(0, 1\), e\.g\. 0\.99; "):
        trust.fit_thresholds(one_hot_committee(labels), labels, ood_score="entropy", **{name: value})


def test_every_registered_score_can_drive_both_flags():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(10) * 0.3, size=(3, 200))
    labels = proba.mean(axis=0).argmax(axis=1)
    for name in SCORES:
        thresholds = trust.fit_thresholds(proba, labels, score=name, ood_score=name, coverage=0.9, digit_pass=0.9)
        verdicts = trust.judge(proba, thresholds)
        assert verdicts.scores.shape == verdicts.ood_scores.shape == (200,)
        assert np.mean(verdicts.scores <= thresholds.unsure_above) >= 0.9  # the same digits: at least the target
    with pytest.raises(ValueError, match="score must be one of"):
        trust.fit_thresholds(proba, labels, score="confidence")


# --------------------------------------------------------------------------- the Python API on a real run
@pytest.fixture(scope="module")
def ensemble(trained_run):
    from ensemble_cnn.inference.ensemble import Ensemble

    return Ensemble.load(trained_run)


def test_a_default_run_judges_its_digits_with_thresholds_from_its_calibration_digits(ensemble, mnist):
    x = mnist["x_test"][:300]
    assert ensemble.calibration_ is not None and ensemble.calibration_note_ is None
    thresholds = ensemble.thresholds()
    assert thresholds.n_calibration == 300 and thresholds.coverage == trust.DEFAULT_COVERAGE
    # the members kept their energy on the calibration digits, and the run their ink areas
    assert thresholds.ood_score == "energy+ink_area" == trust.DEFAULT_OOD_SCORE
    assert thresholds.calibration_coverage >= 0.99
    verdicts = ensemble.judge(x)
    np.testing.assert_array_equal(verdicts.labels, ensemble.predict(x))  # labels never change
    np.testing.assert_allclose(verdicts.scores, ensemble.uncertainty(x, score=thresholds.score))
    np.testing.assert_array_equal(verdicts.probabilities, ensemble.member_probabilities(x))  # one pass, same numbers
    from ensemble_cnn.inference.features import ensemble_feature_scores

    from ensemble_cnn.inference.features import ink_area

    parts = {"energy": ensemble_feature_scores(ensemble, x)["energy"], "ink_area": ink_area(x)}
    np.testing.assert_allclose(verdicts.ood_scores, trust.combined_score(parts, thresholds.ood_components))
    flagged = np.any([parts[name] > rule["above"] for name, rule in thresholds.ood_components.items()], axis=0)
    np.testing.assert_array_equal(verdicts.not_a_digit, flagged)
    assert ensemble.judge(x, ood_score="energy").thresholds.ood_components is None  # a single score on request
    assert verdicts.sets.shape == (300, 10)
    assert not (verdicts.answered & ~verdicts.sets.any(axis=1)).any()  # an empty set is never an answer
    looser = ensemble.judge(x, coverage=0.5)
    assert looser.unsure.sum() >= verdicts.unsure.sum()


def test_a_run_without_calibration_digits_predicts_and_says_why_it_cannot_flag(trained_run, tmp_path):
    from ensemble_cnn.inference.ensemble import Ensemble

    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    (run_dir / "calibration.json").unlink()
    damaged = Ensemble.load(run_dir)
    assert damaged.calibration_ is None
    with pytest.raises(RunFolderError, match=r"^no calibration digits: .*calibration\.json: missing"):
        damaged.thresholds()
    with pytest.raises(ValueError, match="load the ensemble with tta='none'"):
        Ensemble.load(trained_run, tta="shift").thresholds()


def test_a_run_whose_members_kept_no_energy_falls_back_to_entropy_and_exports_it(trained_run, mnist, tmp_path):
    import keras

    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.export import export_ensemble, read_export_metadata

    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    for record_path in run_dir.glob("member_??.json"):  # as trained before the scores past the softmax
        record = json.loads(record_path.read_text())
        for key in ("calibration_scores", "calibration_scores_sha256", "gaussian", "gaussian_sha256"):
            record.pop(key, None)
        record_path.write_text(json.dumps(record))
    older = Ensemble.load(run_dir)
    assert older.calibration_.feature_scores is None
    assert older.thresholds().ood_score == trust.FALLBACK_OOD_SCORE == "entropy"
    with pytest.raises(RunFolderError, match="no energy values on its calibration digits"):
        older.thresholds(ood_score="energy")
    x = mnist["x_test"][:100]
    verdicts = older.judge(x)
    np.testing.assert_allclose(verdicts.ood_scores, SCORES["entropy"].function(older.member_probabilities(x)))
    out = export_ensemble(run_dir, tmp_path / "older.keras")
    assert read_export_metadata(out)["thresholds"]["ood_score"] == "entropy"
    outputs = keras.saving.load_model(out, safe_mode=True).predict(x, verbose=0)
    np.testing.assert_allclose(outputs["not_a_digit_score"], verdicts.ood_scores, atol=1e-5)


def test_a_run_without_ink_areas_uses_energy_and_resuming_it_adds_them(trained_run, mnist, tmp_path):
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.storage.calibration import INK_AREA_NAME
    from ensemble_cnn.storage.run_folder import RunFolder

    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    record_path = run_dir / "calibration.json"
    record = json.loads(record_path.read_text())
    ink = np.load(run_dir / INK_AREA_NAME)
    older = {key: value for key, value in record.items() if not key.startswith("ink_area")}
    record_path.write_text(json.dumps(older))  # as trained before the ink areas
    (run_dir / INK_AREA_NAME).unlink()
    ensemble = Ensemble.load(run_dir)
    assert ensemble.calibration_.ink_area is None
    assert ensemble.thresholds().ood_score == trust.PLAIN_OOD_SCORE == "energy"
    with pytest.raises(RunFolderError, match="no ink_area values on its calibration digits"):
        ensemble.thresholds(ood_score="energy+ink_area")
    # resuming the run (every member complete: nothing trains) adds them, every other key unchanged
    from ensemble_cnn.training.train import train_ensemble

    assert train_ensemble(RunFolder(run_dir).require_config(), run_dir, log=None).complete
    assert json.loads(record_path.read_text()) == record  # the same keys and hashes as a run trained with them
    np.testing.assert_array_equal(np.load(run_dir / INK_AREA_NAME), ink)
    assert Ensemble.load(run_dir).thresholds().ood_score == "energy+ink_area"
    (run_dir / INK_AREA_NAME).write_bytes(np.zeros(3).tobytes())
    with pytest.raises(RunFolderError, match="calibration_ink_area.npy"):
        Ensemble.load(run_dir).thresholds()


def test_the_report_flags_what_judge_flags_with_the_default_combined_rule(trained_run, mnist, tmp_path):
    from ensemble_cnn.evaluation.evaluate import evaluate_run
    from ensemble_cnn.inference.ensemble import Ensemble

    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    rng = np.random.default_rng(3)
    images = np.concatenate([rng.integers(0, 256, size=(100, 28, 28)), 255 - mnist["x_test"][:100]]).astype(np.uint8)
    np.save(tmp_path / "odd.npy", images)
    report = evaluate_run(run_dir, reload=False, plots=False, ood=[tmp_path / "odd.npy"], log=None)
    (entry,) = report["not_a_digit"]["sets"]
    default = entry["default_threshold"]
    assert default["score"] == trust.DEFAULT_OOD_SCORE and default["threshold"] == 0.0
    assert default["rule"].startswith("energy above ") and " or ink_area above " in default["rule"]
    assert default["rule"] in (run_dir / "report.md").read_text()
    assert {"ink_area", "energy", trust.DEFAULT_OOD_SCORE} <= set(entry["scores"])
    ensemble = Ensemble.load(run_dir)
    assert default["flagged"] == pytest.approx(ensemble.judge(images).not_a_digit.mean())
    assert default["flagged"] == 1.0  # noise and inverted digits cover most of their pixels
    test_digits = mnist["x_test"][:report["uncertainty"]["n_test"]]  # the run's test digits (its --limit)
    assert default["digits_flagged"] == pytest.approx(ensemble.judge(test_digits).not_a_digit.mean())


# --------------------------------------------------------------------------- the CLI
def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_predict_shows_the_set_and_flags_and_ends_with_a_summary(trained_run, mnist, tmp_path):
    digits = np.concatenate([mnist["x_test"][:40], np.rot90(mnist["x_test"][40:50], axes=(1, 2))])
    np.save(tmp_path / "digits.npy", digits)
    from ensemble_cnn.inference.ensemble import Ensemble

    verdicts = Ensemble.load(trained_run).judge(digits)

    table = run_cli("predict", "--run", trained_run, tmp_path / "digits.npy")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "set" in lines[0] and "flag" in lines[0]
    aside = int((~verdicts.answered).sum())
    assert lines[-1].startswith(f"{50 - aside} of 50 answered, {aside} set aside")

    csv_out = run_cli("predict", "--run", trained_run, "--format", "csv", tmp_path / "digits.npy")
    header, *rows = csv_out.stdout.splitlines()
    assert header.endswith(",set,unsure,not_a_digit")
    unsure = [row.split(",")[-2] == "true" for row in rows]
    assert unsure == verdicts.unsure.tolist()
    assert [row.split(",")[-3] for row in rows] == [trust.set_text(s) for s in verdicts.sets]

    as_json = json.loads(run_cli("predict", "--run", trained_run, "--format", "json", "--coverage", "0.9",
                                 tmp_path / "digits.npy").stdout)
    assert as_json["thresholds"]["coverage"] == 0.9 and as_json["thresholds"]["n_calibration"] == 300
    assert as_json["trust_note"] is None
    item = as_json["predictions"][0]
    assert isinstance(item["set"], list) and isinstance(item["unsure"], bool) and isinstance(item["not_a_digit"], bool)


def test_predict_on_a_run_without_calibration_digits_keeps_its_labels_and_says_why(trained_run, mnist, tmp_path):
    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    (run_dir / "calibration.json").unlink()
    np.save(tmp_path / "digits.npy", mnist["x_test"][:20])
    before = run_cli("predict", "--run", trained_run, "--format", "csv", tmp_path / "digits.npy").stdout
    after = run_cli("predict", "--run", run_dir, "--format", "csv", tmp_path / "digits.npy")
    assert after.exit_code == 0, after.output
    strip = lambda text: [",".join(row.split(",")[:-3]) for row in text.splitlines()]  # noqa: E731
    assert strip(after.stdout) == strip(before)  # the same labels and probabilities
    assert all(row.endswith(",,,") for row in after.stdout.splitlines()[1:])  # no set, no flags
    table = run_cli("predict", "--run", run_dir, tmp_path / "digits.npy")
    assert "20 predicted; no unsure / not-a-digit flags: no calibration digits:" in table.stdout.splitlines()[-1]


@pytest.mark.parametrize("option, value", [("--coverage", "1"), ("--level", "0"), ("--coverage", "x")])
def test_predict_refuses_a_share_outside_zero_to_one(trained_run, mnist, tmp_path, option, value):
    np.save(tmp_path / "digits.npy", mnist["x_test"][:2])
    result = run_cli("predict", "--run", trained_run, option, value, tmp_path / "digits.npy")
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


def test_export_carries_both_scores_and_the_thresholds_a_file_user_needs(trained_run, mnist, tmp_path):
    import keras

    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.export import read_export_metadata

    out = tmp_path / "ensemble.keras"
    result = run_cli("export", "--run", trained_run, "--out", out, "--coverage", "0.95")
    assert result.exit_code == 0, result.output
    x = mnist["x_test"][:200]
    outputs = keras.saving.load_model(out, safe_mode=True).predict(x, verbose=0)
    metadata = read_export_metadata(out)["thresholds"]
    assert metadata["coverage"] == 0.95 and metadata["score"] == "max_probability"
    assert metadata["ood_score"] == trust.DEFAULT_OOD_SCORE
    verdicts = Ensemble.load(trained_run).judge(x, coverage=0.95)
    np.testing.assert_allclose(outputs["unsure_score"], verdicts.scores, atol=1e-5)
    np.testing.assert_allclose(outputs["not_a_digit_score"], verdicts.ood_scores, atol=1e-5)
    # the file user's rule, from the metadata alone, gives the package's flags (but for float32 ties)
    mean = outputs["members"].mean(axis=1)
    sets = mean >= 1 - (metadata["set_threshold"] if metadata["set_threshold"] is not None else math.inf)
    unsure = (outputs["unsure_score"] > metadata["unsure_above"]) | ~sets.any(axis=1)
    assert np.mean(unsure == verdicts.unsure) >= 0.99
    assert np.mean((outputs["not_a_digit_score"] > metadata["not_a_digit_above"]) == verdicts.not_a_digit) >= 0.99


def test_serve_answers_with_the_set_and_a_verdict(trained_run, mnist):
    import io

    from PIL import Image

    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.predict import ImagePredictor

    predictor = ImagePredictor(Ensemble.load(trained_run))
    info = predictor.info()
    assert info["thresholds"]["n_calibration"] == 300 and info["trust_note"] is None
    buffer = io.BytesIO()
    Image.fromarray(255 - mnist["x_test"][0]).save(buffer, format="PNG")  # dark ink on white, as drawn
    answer = predictor.predict_image(buffer.getvalue())
    expected = "not a digit" if answer["not_a_digit"] else "unsure" if answer["unsure"] else "answered"
    assert answer["verdict"] == expected and isinstance(answer["set"], list)
    verdicts = predictor.ensemble.judge(np.asarray(answer["input"], dtype=np.uint8)[None])
    assert answer["set"] == np.flatnonzero(verdicts.sets[0]).tolist() and answer["unsure"] == verdicts.unsure[0]

    without = ImagePredictor(Ensemble.load(trained_run, tta="shift"))
    assert without.thresholds is None and "test-time views" in without.info()["trust_note"]
    assert without.predict_image(buffer.getvalue())["verdict"] is None
