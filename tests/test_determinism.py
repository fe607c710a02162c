"""Determinism: with --deterministic, the same command (same thread count) gives bit-identical members on CPU.

(The same seed giving a byte-identical expanded dataset is tested in test_cli.py.)
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import TINY_ARGS

# fresh random distortions every epoch and dropout: all must come from the seeds
TINY = [*TINY_ARGS, "--members", "2", "--epochs", "2", "--augment", "distort"]


@pytest.fixture()
def op_determinism_restored():
    """Switch TensorFlow's process-wide op determinism back off after the test."""
    yield
    from tensorflow.python.framework import config as tf_config

    tf_config.disable_op_determinism()


def test_deterministic_runs_are_bit_identical(tmp_path, small_mnist_npz, op_determinism_restored):
    import keras
    from tensorflow.python.framework import config as tf_config

    runs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in runs:
        args = ["train", "--data", str(small_mnist_npz), *TINY, "--deterministic", "--out", str(run_dir)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    assert tf_config.is_op_determinism_enabled(), "--deterministic switched it on"
    assert json.loads((runs[0] / "config.json").read_text())["deterministic"] is True
    for index in range(2):
        name = f"member_{index:02d}"
        a, b = (np.load(run / f"{name}_test_proba.npy") for run in runs)
        assert a.shape == (1000, 10) and np.array_equal(a, b), f"{name}: max |diff| {np.abs(a - b).max()}"
        weights = [keras.saving.load_model(run / f"{name}.keras", safe_mode=True).get_weights() for run in runs]
        for wa, wb in zip(*weights):
            assert np.array_equal(wa, wb)
    # and the members differ from each other: equality above is not a constant output
    first = [np.load(runs[0] / f"member_{i:02d}_test_proba.npy") for i in range(2)]
    assert not np.array_equal(*first)
