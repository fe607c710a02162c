"""Training an ensemble for real on a slice of MNIST: members, resume, grow/shrink, parallel = sequential."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ensemble_cnn.evaluation.evaluate import evaluate_run
from ensemble_cnn.models import load_member
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import RunFolderError, train_ensemble

PARALLEL = dict(width=0.5, members=2, epochs=2, limit=2000, val_size=200, final_lr_fraction=0.3,
                augmentation="distort", ema=0.999, seed=7, jobs=2, mode="processes")  # the default recipe, short


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory, tiny_config):
    run_dir = tmp_path_factory.mktemp("runs") / "parallel"
    result = train_ensemble(tiny_config(**PARALLEL), run_dir, log=None)
    return run_dir, result


def test_parallel_run_writes_loadable_members_that_learned(parallel_run, small_mnist_npz):
    run_dir, result = parallel_run
    assert result.complete and result.trained == [0, 1] and not result.reused
    assert result.execution.mode == "processes" and result.execution.jobs == 2
    with np.load(small_mnist_npz) as npz:
        x_test, y_test = npz["x_test"], npz["y_test"]
    import keras

    folder = RunFolder(run_dir)
    for index in range(2):
        files = folder.files(index)
        model = keras.saving.load_model(files.model)  # plain Keras, no custom objects
        probabilities = model.predict(x_test, verbose=0)
        np.testing.assert_allclose(probabilities, np.load(files.probabilities), atol=1e-5)
        accuracy = np.mean(probabilities.argmax(1) == y_test)
        assert accuracy > 0.7, f"member {index} learned too little: {accuracy:.3f}"
        record = json.loads(files.record.read_text())
        assert record["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert record["train_size"] == 1800 and record["val_size"] == 200
        assert record["recipe"] == "standard" and record["checkpoint"] == "last-epoch+ema"  # the default recipe
        assert record["precision"] == "float32" and record["run"] == index
    seeds = [json.loads(folder.files(i).record.read_text())["seed"] for i in range(2)]
    assert seeds[0] != seeds[1], "members must draw different seeds"


def test_report_has_members_and_every_vote(parallel_run):
    from ensemble_cnn.inference.vote import VOTES

    run_dir, _ = parallel_run
    report = evaluate_run(run_dir, reload=True, log=None)
    saved = json.loads((run_dir / "report.json").read_text())
    assert [m["test_accuracy"] for m in saved["members"]] == [m["test_accuracy"] for m in report["members"]]
    assert set(saved["ensemble"]) == set(VOTES)
    for method in VOTES:
        assert 0.7 < saved["ensemble"][method]["test_accuracy"] <= 1.0
        assert np.sum(saved["ensemble"][method]["confusion_matrix"]) == 1000
    for name in ("report.md", "accuracy.png", "confusion.png", "errors.png"):
        assert (run_dir / name).stat().st_size > 0
    assert not list(run_dir.glob("*.tmp*")), "temporary files left behind"


def copy_run(source, target):
    shutil.copytree(source, target)
    return target


def test_resume_keeps_finished_members_and_retrains_deleted_one(parallel_run, tiny_config, tmp_path):
    run_dir = copy_run(parallel_run[0], tmp_path / "resume")
    folder = RunFolder(run_dir)
    kept = folder.files(0).model.read_bytes()
    folder.files(1).model.unlink()
    result = train_ensemble(tiny_config(**PARALLEL), run_dir, log=None)
    assert result.reused == [0] and result.trained == [1] and result.complete
    assert folder.files(0).model.read_bytes() == kept
    load_member(folder.files(1).model)


def test_grow_keeps_members_byte_for_byte_and_trains_the_rest(parallel_run, tiny_config, tmp_path):
    """--members 3 on a finished 2-member run: the 2 are kept unchanged, member 02 is trained."""
    run_dir = copy_run(parallel_run[0], tmp_path / "grow")
    folder = RunFolder(run_dir)
    before = {i: (folder.files(i).model.read_bytes(), folder.files(i).record.read_bytes()) for i in range(2)}
    lines = []
    result = train_ensemble(tiny_config(**{**PARALLEL, "members": 3}), run_dir, log=lines.append)
    assert result.reused == [0, 1] and result.trained == [2] and result.complete
    assert {i: (folder.files(i).model.read_bytes(), folder.files(i).record.read_bytes()) for i in range(2)} == before
    assert json.loads(folder.config_path.read_text())["members"] == 3
    assert any("members 00, 01 already trained, kept" in line for line in lines)
    seeds = {json.loads(folder.files(i).record.read_text())["seed"] for i in range(3)}
    assert len(seeds) == 3

    # shrink: evaluating the first 2 of the 3 scores exactly the first 2; the folder keeps 3
    report = evaluate_run(run_dir, members=2, reload=False, plots=False, log=None)
    assert [m["name"] for m in report["members"]] == ["member_00", "member_01"]
    assert report["missing_members"] == []
    assert len(evaluate_run(run_dir, reload=False, plots=False, log=None)["members"]) == 3
    # a smaller --members trains nothing and keeps the folder's count
    again = train_ensemble(tiny_config(**{**PARALLEL, "members": 2}), run_dir, log=None)
    assert again.reused == [0, 1] and not again.trained and [r["index"] for r in again.records] == [0, 1]
    assert json.loads(folder.config_path.read_text())["members"] == 3


def test_member_does_not_depend_on_the_ensemble_size(parallel_run, tiny_config, tmp_path):
    """Member 01 trained as part of a 1..2 run equals member 01 trained in a fresh 2-member run (same seed/data).

    The grown run trains 1 epoch, not 2: a member's seed and split come from the run's seed and its index alone."""
    source = parallel_run[0]
    grown = tmp_path / "grown"
    short = {**PARALLEL, "epochs": 1, "mode": "sequential", "jobs": 1}
    train_ensemble(tiny_config(**{**short, "members": 1}), grown, log=None)
    train_ensemble(tiny_config(**{**short, "members": 2}), grown, log=None)
    for index in range(2):
        a = json.loads(RunFolder(grown).files(index).record.read_text())
        b = json.loads(RunFolder(source).files(index).record.read_text())
        assert a["seed"] == b["seed"] and a["train_size"] == b["train_size"]


def test_sequential_matches_parallel(parallel_run, tiny_config, tmp_path):
    """Same seeds, one process with 2 threads vs 2 processes with 1 thread: same predictions.

    Thread count changes TensorFlow's float summation order, so a barely trained
    member (2 epochs on 1,800 digits, many test digits near a decision boundary)
    agrees to a tolerance (documented in the README), not bit for bit: >= 97% equal
    predictions, mean absolute probability difference < 0.01.
    """
    parallel_dir, _ = parallel_run
    result = train_ensemble(tiny_config(**{**PARALLEL, "jobs": 1, "mode": "sequential"}), tmp_path / "seq", log=None)
    assert result.complete and result.execution.mode == "sequential"
    for index in range(2):
        a = np.load(RunFolder(parallel_dir).files(index).probabilities)
        b = np.load(RunFolder(tmp_path / "seq").files(index).probabilities)
        assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.97
        assert np.mean(np.abs(a - b)) < 0.01


@pytest.mark.parametrize(
    "change, named",
    [
        ({"epochs": 3}, "--epochs (2 in the folder, 3 asked)"),
        ({"learning_rate": 0.002}, "--lr (0.001 in the folder, 0.002 asked)"),
        ({"distortion": {"max_rotation": 5.0}}, "--distortion"),
        ({"seed": 8}, "--seed (7 in the folder, 8 asked)"),
        ({"limit": 1500}, "--limit"),
        ({"bootstrap": True}, "--bootstrap (False in the folder, True asked)"),
    ],
)
def test_a_different_run_in_the_folder_is_refused_naming_the_field(parallel_run, tiny_config, change, named):
    run_dir, _ = parallel_run
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.iterdir())
    with pytest.raises(RunFolderError, match="holds a different run") as caught:
        train_ensemble(tiny_config(**{**PARALLEL, **change}), run_dir, log=None)
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.iterdir()) == before


def test_data_path_and_execution_are_not_identity(parallel_run, tiny_config, small_mnist_npz, tmp_path):
    """The same data under another path, another mode/precision setting: the run is the same run."""
    run_dir = copy_run(parallel_run[0], tmp_path / "moved")
    moved_data = tmp_path / "elsewhere.npz"
    shutil.copy(small_mnist_npz, moved_data)
    config = tiny_config(**{**PARALLEL, "data": str(moved_data), "mode": "fused", "jobs": 1, "precision": "auto"})
    result = train_ensemble(config, run_dir, log=None)
    assert result.reused == [0, 1] and not result.trained and result.execution is None
