"""Shared fixtures: the real MNIST file (../shared/data/mnist.npz from the repo root)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_PATH = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_npz_path() -> Path:
    """Path of the real MNIST; skips when absent, except under CI=true where that fails."""
    if not MNIST_PATH.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real MNIST missing at {MNIST_PATH} (required in CI)")
        pytest.skip(f"real MNIST not found at {MNIST_PATH}")
    return MNIST_PATH


@pytest.fixture(scope="session")
def mnist(mnist_npz_path) -> dict[str, np.ndarray]:
    """The real MNIST arrays: x_train, y_train, x_test, y_test."""
    with np.load(mnist_npz_path, allow_pickle=False) as npz:
        return {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}


@pytest.fixture(scope="session")
def small_mnist_npz(tmp_path_factory, mnist) -> Path:
    """A Keras-layout npz holding 3,000 training and 1,000 test digits of the real MNIST."""
    path = tmp_path_factory.mktemp("data") / "mnist_small.npz"
    np.savez(
        path,
        x_train=mnist["x_train"][:3000], y_train=mnist["y_train"][:3000],
        x_test=mnist["x_test"][:1000], y_test=mnist["y_test"][:1000],
    )
    return path


TINY_CONFIG = dict(arch="nielsen", width=0.25, members=1, epochs=1, limit=500, val_size=50, batch_size=32,
                   augmentation="none", distortion={}, precision="float32", mode="sequential", jobs=1)


def write_fake_member(run_dir: Path, index: int, model, *, n_test: int) -> dict:
    """Save ``model`` as member ``index`` with random probabilities and a record that matches its files."""
    import json

    from ensemble_cnn import _atomic
    from ensemble_cnn.hashing import sha256_file
    from ensemble_cnn.member import member_files

    files = member_files(run_dir, index)
    model.save(files["model"])
    probabilities = np.random.default_rng(index).dirichlet(np.ones(10), size=n_test).astype(np.float32)
    np.save(files["probabilities"], probabilities)
    files["history"].write_text(json.dumps({"accuracy": [0.5], "val_accuracy": [0.5]}))
    record = {
        "index": index, "seed": index, "model": files["model"].name, "model_sha256": sha256_file(files["model"]),
        "probabilities": files["probabilities"].name, "probabilities_sha256": sha256_file(files["probabilities"]),
        "history": files["history"].name, "best_epoch": 1, "val_accuracy": 0.5, "val_size": 50, "train_size": 450,
        "test_accuracy": 0.1, "train_seconds": 0.0, "epoch_seconds": [0.0], "precision": "float32",
    }
    _atomic.write_json(files["record"], record)
    return record


@pytest.fixture(scope="session")
def fake_member():
    """:func:`write_fake_member`: ``fake_member(run_dir, index, model, n_test=1000)``."""
    return write_fake_member


@pytest.fixture(scope="session")
def make_run(small_mnist_npz):
    """Factory: a run folder (tiny nielsen config on ``small_mnist_npz``) with untrained members.

    ``make_run(run_dir, members=1, model=None)`` claims ``run_dir`` like ``ensemble-cnn
    train`` and saves ``model`` (default: a fresh member of the run's architecture)
    as every member, each with a record matching its files. Returns the config.
    """
    from ensemble_cnn.config import TrainConfig
    from ensemble_cnn.member import build_member
    from ensemble_cnn.train import prepare_run

    def make(run_dir: Path, *, members: int = 1, model=None, **overrides) -> "TrainConfig":
        settings = {**TINY_CONFIG, "members": members, "data": str(small_mnist_npz), **overrides}
        config = prepare_run(TrainConfig(**settings), run_dir)
        for index in range(members):
            write_fake_member(run_dir, index, model if model is not None else build_member(config), n_test=1000)
        return config

    return make
