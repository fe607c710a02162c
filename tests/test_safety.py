"""Safe loading: members load with Keras safe_mode, and no path read from a run's JSON leaves the run folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.errors import RunFolderError
from conftest import TINY_ARGS
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import train_ensemble


def read_record(run_dir, index):
    return RunFolder(run_dir).status(index).record


def lambda_model():
    """A working digit model that carries Python code: a Lambda layer (what safe_mode must refuse)."""
    import keras

    inputs = keras.Input((28, 28), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(inputs)
    scaled = keras.layers.Lambda(lambda x: x * 2.0, output_shape=(28, 28))(scaled)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(scaled))
    return keras.Model(inputs, outputs)


def assert_one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    assert text in errors[0], result.output


def test_lambda_member_is_refused_by_evaluate(tmp_path, make_run):
    import keras

    run_dir = tmp_path / "run"
    make_run(run_dir, model=lambda_model())
    # the file itself is a fine Keras model: only safe_mode stands between it and running its code
    unsafe = keras.saving.load_model(run_dir / "member_00.keras", safe_mode=False)
    assert unsafe.predict(np.zeros((1, 28, 28), np.uint8), verbose=0).shape == (1, 10)
    assert read_record(run_dir, 0) is not None, "its record matches its sha256"

    result = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir)])
    assert_one_line_error(result, "member_00.keras: refused: it carries Python code (e.g. a Lambda layer)")
    assert not (run_dir / "report.json").exists()


def test_training_refuses_to_keep_a_lambda_member(tmp_path, make_run, fake_member):
    """The driver's verification loads every member with safe_mode; an unsafe one is failed and forgotten."""
    run_dir = tmp_path / "run"
    config = make_run(run_dir, members=2)
    fake_member(run_dir, 1, lambda_model(), n_test=1000)
    result = train_ensemble(config, run_dir, log=None)
    assert result.reused == [0] and not result.trained
    assert list(result.failures) == [1] and "refused: it carries Python code" in result.failures[1]
    assert [r["index"] for r in result.records] == [0]
    assert not (run_dir / "member_01.json").exists(), "its record is removed so the next run retrains it"
    assert read_record(run_dir, 1) is None


@pytest.mark.parametrize("key", ["model", "probabilities"])
@pytest.mark.parametrize("name", ["../x.keras", "/etc/passwd", "sub/../../x.keras"])
def test_record_paths_never_leave_the_run_folder(key, name, tmp_path, make_run, small_mnist_npz):
    run_dir = tmp_path / "run"
    config = make_run(run_dir)
    (tmp_path / "x.keras").write_bytes((run_dir / "member_00.keras").read_bytes())  # a tempting target outside
    record = json.loads((run_dir / "member_00.json").read_text())
    _atomic.write_json(run_dir / "member_00.json", {**record, key: name})

    with pytest.raises(RunFolderError, match="points outside the run folder"):
        read_record(run_dir, 0)
    with pytest.raises(RunFolderError, match="points outside the run folder"):
        train_ensemble(config, run_dir, log=None)
    assert RunFolder(run_dir).verify_all([{**record, key: name}])[0].count("outside the run folder") == 1

    result = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir)])
    assert_one_line_error(result, f"member file {name!r} points outside the run folder")
    args = ["train", "--data", str(small_mnist_npz), *TINY_ARGS, "--out", str(run_dir)]
    assert_one_line_error(CliRunner().invoke(main, args), "points outside the run folder")


def test_symlink_out_of_the_run_folder_is_refused(tmp_path, make_run):
    run_dir = tmp_path / "run"
    make_run(run_dir)
    outside = tmp_path / "elsewhere.keras"
    (run_dir / "member_00.keras").rename(outside)
    (run_dir / "member_00.keras").symlink_to(outside)
    with pytest.raises(RunFolderError, match="points outside the run folder"):
        read_record(run_dir, 0)
