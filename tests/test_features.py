"""The scores past the softmax (issue 31): the class-conditional Gaussian, Mahalanobis, energy, a member's
features and logits, a run folder's Gaussians and calibration scores, and training writing them.

Known answers on synthetic data; real (untrained) Keras members of both heads (a softmax Dense, and
Dense + BatchNorm + softmax Activation); real files in tmp_path; one tiny real training (2 members,
1 epoch, 500 digits, holdout shared).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.inference.features import (
    FEATURE_SCORES, GAUSSIAN_KEYS, ClassGaussian, energy_score, ensemble_feature_scores, fit_class_gaussian, gaussian_arrays,
    mahalanobis_score, member_features, read_member_gaussian, relative_mahalanobis_score,
)
from ensemble_cnn.storage.run_folder import RunFolder

DETAILS = {"run": 0, "seed": 0, "recipe": "standard", "checkpoint": "last", "best_epoch": 1}


# --------------------------------------------------------------------------- known answers
def test_fit_class_gaussian_recovers_two_classes_means_and_shared_precision():
    rng = np.random.default_rng(0)
    covariance = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    means = np.array([[0.0, 0.0, 0.0], [5.0, -3.0, 1.0]])
    labels = rng.integers(0, 2, size=200_000)
    features = means[labels] + rng.multivariate_normal(np.zeros(3), covariance, size=labels.size)
    fitted = fit_class_gaussian(features, labels, n_classes=2)
    assert fitted.means.shape == (2, 3) and fitted.precision.shape == (3, 3)
    assert fitted.means.dtype == np.float64 and fitted.precision.dtype == np.float64
    np.testing.assert_allclose(fitted.means, means, atol=0.02)
    np.testing.assert_allclose(fitted.precision, np.linalg.inv(covariance), rtol=0.03, atol=0.02)
    np.testing.assert_array_equal(fitted.precision, fitted.precision.T)


def test_fit_class_gaussian_keeps_dead_units_and_refuses_missing_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 30)
    features = rng.normal(size=(300, 4))
    features[:, 3] = 0.0  # a ReLU unit that never fires on digits: singular covariance without the ridge
    fitted = fit_class_gaussian(features, labels)
    assert np.isfinite(fitted.precision).all()
    firing = np.zeros((1, 4))
    firing[0, 3] = 1.0  # it fires: far from every digit
    assert mahalanobis_score(firing, fitted)[0] > 1e3 * mahalanobis_score(np.zeros((1, 4)), fitted)[0]
    with pytest.raises(ValueError, match=r"absent: \[9\]"):
        fit_class_gaussian(features[labels < 9], labels[labels < 9])


def test_mahalanobis_is_zero_at_a_class_mean_and_grows_with_the_distance():
    gaussian = ClassGaussian(means=np.array([[0.0, 0.0], [10.0, 10.0]]), precision=np.diag([2.0, 0.5]))
    points = np.array([[0.0, 0.0], [10.0, 10.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 10.0]])
    np.testing.assert_allclose(mahalanobis_score(points, gaussian), [0.0, 0.0, 2.0, 18.0, 2.0, 2.0], atol=1e-12)
    # the nearest mean under the precision, not in Euclidean distance: (6, 0) is nearer class 0 in the metric
    np.testing.assert_allclose(mahalanobis_score(np.array([[6.0, 0.0]]), gaussian), [min(72.0, 16 * 2 + 100 * 0.5)])
    # batches give the same answer as one block
    many = np.random.default_rng(2).normal(size=(50, 2)) * 5
    np.testing.assert_allclose(mahalanobis_score(many, gaussian, batch_size=7), mahalanobis_score(many, gaussian))


def test_relative_mahalanobis_subtracts_the_class_blind_background():
    gaussian = ClassGaussian(means=np.array([[0.0, 0.0], [10.0, 10.0]]), precision=np.diag([2.0, 0.5]),
                             background_mean=np.array([5.0, 5.0]), background_precision=np.eye(2) / 25.0)
    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    # min-class distance minus |f - (5, 5)|^2 / 25
    np.testing.assert_allclose(relative_mahalanobis_score(points, gaussian), [0.0 - 2.0, 2.0 - 41 / 25, 62.5 - 0.0])
    fitted = fit_class_gaussian(np.random.default_rng(5).normal(size=(400, 3)), np.arange(400) % 10)
    np.testing.assert_allclose(fitted.background_mean, np.random.default_rng(5).normal(size=(400, 3)).mean(axis=0))
    with pytest.raises(ValueError, match="no background"):
        relative_mahalanobis_score(points, gaussian._replace(background_mean=None))


def test_energy_of_equal_logits_is_minus_log_c_minus_the_logit_and_stays_finite():
    logits = np.array([[0.0] * 10, [3.0] * 10, [1000.0] * 10, [-1000.0] * 10])
    np.testing.assert_allclose(energy_score(logits), -np.log(10) - logits[:, 0])
    assert energy_score(np.array([[50.0, 0.0]]))[0] == pytest.approx(-50.0 - np.log1p(np.exp(-50.0)))
    # a confident member (one large logit) has lower energy than an unsure one of the same top logit
    assert energy_score(np.array([[5.0, 0.0, 0.0]]))[0] > energy_score(np.array([[5.0, 5.0, 5.0]]))[0]


# --------------------------------------------------------------------------- members' features and logits
@pytest.mark.parametrize("arch", ["keras", "an3"])
def test_features_give_logits_whose_softmax_is_the_members_prediction(arch, synthetic_digits):
    import keras

    from ensemble_cnn.models import build_model

    keras.utils.set_random_seed(3)
    model = build_model(arch, width=0.25)
    digits = synthetic_digits[:40]
    features, logits = member_features(model, digits, batch_size=16)
    last_dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    assert features.dtype == np.float32 and logits.dtype == np.float32
    assert features.shape == (40, last_dense.kernel.shape[0]) and logits.shape == (40, 10)
    expected = model.predict(digits, verbose=0)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), expected, atol=1e-5)
    again, _ = member_features(model, digits)  # the cached sub-model, another batch size
    np.testing.assert_allclose(again, features, atol=1e-5)


# --------------------------------------------------------------------------- the run folder
def _write(folder: RunFolder, index: int, *, gaussian=None, calibration_scores=None, calibration=None):
    def save_model(path):
        path.write_bytes(b"not a model: these tests read no model")

    return folder.write_member(index, save_model=save_model, probabilities=np.zeros((5, 10), np.float32),
                               history={"accuracy": [0.5]}, details=DETAILS, gaussian=gaussian,
                               calibration=calibration, calibration_scores=calibration_scores)


def _gaussian(dims: int, seed: int = 0) -> ClassGaussian:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, dims, dims))
    return ClassGaussian(means=rng.normal(size=(10, dims)), precision=a @ a.T + dims * np.eye(dims),
                         background_mean=rng.normal(size=dims), background_precision=b @ b.T + np.eye(dims))


def test_a_gaussian_round_trips_through_the_run_folder_and_a_changed_file_is_refused(tmp_path):
    folder = RunFolder(tmp_path)
    gaussian = _gaussian(6)
    record = _write(folder, 0, gaussian=gaussian_arrays(gaussian))
    assert record["gaussian"] == "member_00_gaussian.npz" and folder.status(0).complete
    back = read_member_gaussian(folder, record, dims=6)
    for key in GAUSSIAN_KEYS:
        assert getattr(back, key).dtype == np.float64
        np.testing.assert_array_equal(getattr(back, key), getattr(gaussian, key).astype(np.float32))
    with pytest.raises(RunFolderError, match="expected float32"):
        read_member_gaussian(folder, record, dims=5)  # a Gaussian of another width: not this member's
    path = folder.files(0).gaussian
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RunFolderError) as refused:
        read_member_gaussian(folder, record, dims=6)
    assert "sha256 differs" in str(refused.value) and "\n" not in str(refused.value)
    assert not folder.status(0).complete  # the member's files no longer match its record


def test_a_member_without_a_gaussian_has_energy_only_and_no_calibration_scores(tmp_path, synthetic_digits):
    import keras

    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.models import build_model

    keras.utils.set_random_seed(4)
    model = build_model("keras", width=0.25)
    old, new = RunFolder(tmp_path / "old"), RunFolder(tmp_path / "new")
    old.path.mkdir(), new.path.mkdir()
    digits = synthetic_digits[:30]
    features, logits = member_features(model, digits)
    fitted = fit_class_gaussian(features, np.arange(30) % 10)
    old_record = _write(old, 0)  # a run trained before these scores
    assert "gaussian" not in old_record and old.status(0).complete
    assert read_member_gaussian(old, old_record, dims=features.shape[1]) is None
    scores = ensemble_feature_scores(Ensemble([model], ["member_00"], run_dir=old.path), digits)
    assert list(scores) == ["energy"]
    np.testing.assert_allclose(scores["energy"], energy_score(logits), rtol=1e-6)
    _write(new, 0, gaussian=gaussian_arrays(fitted))
    committee = Ensemble([model, model], ["member_00", "member_00"], run_dir=new.path)
    scores = ensemble_feature_scores(committee, digits)
    assert list(scores) == list(FEATURE_SCORES)
    # the Gaussians are read once per ensemble: a second pass does not read (or hash) the files again
    new.files(0).gaussian.unlink()
    again = ensemble_feature_scores(committee, digits)
    np.testing.assert_array_equal(again["relative_mahalanobis"], scores["relative_mahalanobis"])
    stored = ClassGaussian(*(getattr(fitted, key).astype(np.float32) for key in GAUSSIAN_KEYS))
    np.testing.assert_allclose(scores["mahalanobis"], mahalanobis_score(features, stored), rtol=1e-6)
    np.testing.assert_allclose(scores["relative_mahalanobis"], relative_mahalanobis_score(features, stored),
                               rtol=1e-5, atol=1e-6)


def test_calibration_scores_are_read_when_every_member_has_them(tmp_path, tiny_config):
    from ensemble_cnn.storage.calibration import read_calibration, write_calibration_set

    config = tiny_config(members=2, holdout="shared")
    folder = RunFolder(tmp_path)
    folder.claim(config)
    write_calibration_set(folder, config, rows=np.arange(5), labels=np.arange(5))
    probabilities = np.full((5, 10), 0.1, np.float32)
    scored = np.arange(15, dtype=np.float32).reshape(5, 3)
    first = _write(folder, 0, calibration=probabilities, calibration_scores=scored)
    second = _write(folder, 1, calibration=probabilities)  # trained before these scores
    assert read_calibration(folder, [first, second]).feature_scores is None
    both = read_calibration(folder, [first, first])
    np.testing.assert_array_equal(both.feature_scores["mahalanobis"], [scored[:, 0]] * 2)
    np.testing.assert_array_equal(both.feature_scores["relative_mahalanobis"], [scored[:, 1]] * 2)
    np.testing.assert_array_equal(both.feature_scores["energy"], [scored[:, 2]] * 2)
    folder.files(0).calibration_scores.write_bytes(folder.files(0).calibration_scores.read_bytes()[:-4] + b"\0" * 4)
    with pytest.raises(RunFolderError, match="sha256 differs"):
        read_calibration(folder, [first])


# --------------------------------------------------------------------------- training writes them
def test_training_fits_each_members_gaussian_on_its_own_training_originals(tmp_path, tiny_config):
    from ensemble_cnn.data.training import shared_holdout
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.storage.calibration import read_calibration
    from ensemble_cnn.training.member import gaussian_fit_rows, load_checked_pool, plan_run
    from ensemble_cnn.training.train import train_ensemble

    config = tiny_config(members=2, holdout="shared", limit=500, val_size=50)
    run_dir = tmp_path / "run"
    assert train_ensemble(config, run_dir, log=None).complete
    folder = RunFolder(run_dir)
    config = folder.require_config()
    records = folder.records(2)
    assert all(r["gaussian"] == f"member_{r['index']:02d}_gaussian.npz" for r in records)
    pool = load_checked_pool(config)
    held_out = set(shared_holdout(pool, val_size=config.val_size, root_seed=config.seed).tolist())
    ensemble = Ensemble.load(run_dir)
    for record, member in zip(records, ensemble.members_):
        plan = plan_run(config, record["index"], pool)
        rows = gaussian_fit_rows(plan, pool)
        assert len(rows) == 450 and not held_out & set(rows.tolist())  # its originals, none held out
        features, _ = member_features(member, pool.data.x_train[rows])
        refit = fit_class_gaussian(features, pool.data.y_train[rows].astype(np.int64))
        stored = read_member_gaussian(folder, record, dims=features.shape[1])
        np.testing.assert_allclose(stored.means, refit.means, rtol=1e-4, atol=1e-4)
    calibration = read_calibration(folder, records)
    scores = ensemble_feature_scores(ensemble, pool.data.x_train[sorted(held_out)], records=records)
    for name in FEATURE_SCORES:  # the committee's score = the mean of the members' stored calibration scores
        np.testing.assert_allclose(calibration.feature_scores[name].mean(axis=0), scores[name], rtol=1e-3, atol=1e-3)
    assert json.loads((run_dir / "member_00.json").read_text())["calibration_scores_sha256"]
