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
