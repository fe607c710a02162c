"""Training an ensemble for real on a slice of MNIST: members, resume, parallel = sequential, report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.evaluate import evaluate_run, load_member
from ensemble_cnn.member import member_files
from ensemble_cnn.train import RunFolderError, train_ensemble


def tiny_config(data, **overrides) -> TrainConfig:
    settings = dict(
        arch="nielsen", width=0.5, members=2, epochs=2, limit=2000, val_size=200, batch_size=32,
        final_lr_fraction=0.3,
        augmentation="distort", data=str(data), seed=7, jobs=2, mode="processes",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory, small_mnist_npz):
    run_dir = tmp_path_factory.mktemp("runs") / "parallel"
    result = train_ensemble(tiny_config(small_mnist_npz), run_dir, log=None)
    return run_dir, result


def test_parallel_run_writes_loadable_members_that_learned(parallel_run, small_mnist_npz):
    run_dir, result = parallel_run
    assert result.complete and sorted(result.trained) == [0, 1] and not result.reused
    x_test = np.load(small_mnist_npz)["x_test"]
    y_test = np.load(small_mnist_npz)["y_test"]
    import keras

    for index in range(2):
        files = member_files(run_dir, index)
        model = keras.saving.load_model(files["model"])  # plain Keras, no custom objects
        probabilities = model.predict(x_test, verbose=0)
        saved = np.load(files["probabilities"])
        np.testing.assert_allclose(probabilities, saved, atol=1e-5)
        accuracy = np.mean(probabilities.argmax(1) == y_test)
        assert accuracy > 0.7, f"member {index} learned too little: {accuracy:.3f}"
        record = json.loads(files["record"].read_text())
        assert record["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert record["train_size"] == 1800 and record["val_size"] == 200
    members = [json.loads(member_files(run_dir, i)["record"].read_text())["seed"] for i in range(2)]
    assert members[0] != members[1], "members must draw different seeds"


def test_report_has_members_and_both_votes(parallel_run):
    run_dir, _ = parallel_run
    report = evaluate_run(run_dir, reload=True, log=None)
    saved = json.loads((run_dir / "report.json").read_text())
    assert [m["test_accuracy"] for m in saved["members"]] == [m["test_accuracy"] for m in report["members"]]
    for method in ("majority", "soft"):
        assert 0.7 < saved["ensemble"][method]["test_accuracy"] <= 1.0
    for name in ("report.md", "accuracy.png", "confusion.png", "errors.png"):
        assert (run_dir / name).stat().st_size > 0
    assert not list(run_dir.glob("*.tmp*")), "temporary files left behind"


def test_resume_keeps_finished_members_and_retrains_deleted_one(parallel_run, small_mnist_npz, tmp_path):
    source_dir, _ = parallel_run
    run_dir = tmp_path / "resume"
    run_dir.mkdir()
    for path in source_dir.iterdir():
        (run_dir / path.name).write_bytes(path.read_bytes())
    kept = member_files(run_dir, 0)["model"].read_bytes()
    member_files(run_dir, 1)["model"].unlink()
    result = train_ensemble(tiny_config(small_mnist_npz), run_dir, log=None)
    assert result.reused == [0] and result.trained == [1] and result.complete
    assert member_files(run_dir, 0)["model"].read_bytes() == kept
    load_member(member_files(run_dir, 1)["model"])


def test_sequential_matches_parallel(parallel_run, small_mnist_npz, tmp_path):
    """Same seeds, one process with 2 threads vs 2 processes with 1 thread: same predictions.

    Thread count changes TensorFlow's float summation order, so a barely trained
    member (2 epochs on 1,800 digits, many test digits near a decision boundary)
    agrees to a tolerance (documented in the README), not bit for bit: >= 97% equal
    predictions, mean absolute probability difference < 0.01.
    """
    parallel_dir, _ = parallel_run
    result = train_ensemble(tiny_config(small_mnist_npz, jobs=1, mode="sequential"), tmp_path / "seq", log=None)
    assert result.complete
    for index in range(2):
        a = np.load(member_files(parallel_dir, index)["probabilities"])
        b = np.load(member_files(tmp_path / "seq", index)["probabilities"])
        assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.97
        assert np.mean(np.abs(a - b)) < 0.01


def test_run_folder_of_another_run_is_refused(parallel_run, small_mnist_npz):
    run_dir, _ = parallel_run
    with pytest.raises(RunFolderError, match="holds a different run .*epochs"):
        train_ensemble(tiny_config(small_mnist_npz, epochs=3), run_dir, log=None)
