"""Shared fixtures: the real MNIST file (../shared/data/mnist.npz from the repo root), a small slice of it,
synthetic digits for the pure-NumPy tests, and ONE tiny training config for every training test."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_PATH = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"

# The tiny recipe every training test uses (seconds per member on 2 cores). ``TINY_ARGS`` is
# the same recipe as command-line options; tests add --members, --out, ... as they need. One
# epoch of 15 steps: no weight average (it would still hold a share of the initial weights).
TINY = dict(arch="nielsen", width=0.25, members=1, epochs=1, limit=500, val_size=50, batch_size=32,
            augmentation="none", ema=0.0, precision="float32", mode="sequential", jobs=1)
TINY_ARGS = ["--arch", "nielsen", "--width", "0.25", "--members", "1", "--epochs", "1", "--limit", "500",
             "--val-size", "50", "--batch-size", "32", "--augment", "none", "--ema", "0", "--precision", "float32",
             "--mode", "sequential", "--jobs", "1"]


def tiny_args(*, drop: tuple[str, ...] = (), **options: str) -> list[str]:
    """``TINY_ARGS`` without the options in ``drop`` and with ``options`` (``epochs="2"`` is ``--epochs 2``)."""
    pairs = dict(zip(TINY_ARGS[::2], TINY_ARGS[1::2]))  # every tiny option takes one value
    for name in drop:
        del pairs[name]
    pairs.update({"--" + key.replace("_", "-"): value for key, value in options.items()})
    return [x for pair in pairs.items() for x in pair]


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


@pytest.fixture(scope="session")
def tiny_config(small_mnist_npz):
    """Factory of the tiny training config on ``small_mnist_npz``: ``tiny_config(members=2, epochs=2, ...)``."""
    from ensemble_cnn.config import TrainConfig

    def make(**overrides) -> TrainConfig:
        return TrainConfig(**{**TINY, "data": str(small_mnist_npz), **overrides})

    return make


def draw_synthetic_digits(n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` digit-like uint8 images (28, 28): 2-3 thick, blurred random strokes inside the central 20x20 box.

    Pure NumPy (no MNIST file): the augment tests run anywhere. Stroke pixels reach 255,
    the background is 0, and the ink's mass is well inside the frame, like MNIST.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    images = np.zeros((n, 28, 28), dtype=np.float64)
    for image in images:
        for _ in range(rng.integers(2, 4)):
            (y0, x0), (y1, x1) = rng.uniform(6, 22, size=(2, 2))
            t = np.linspace(0.0, 1.0, 24)[:, None, None]
            distance = np.hypot(yy - (y0 + t * (y1 - y0)), xx - (x0 + t * (x1 - x0))).min(axis=0)
            np.maximum(image, np.clip(2.0 - distance, 0.0, 1.0), out=image)
    return np.round(images * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def synthetic_digits() -> np.ndarray:
    """300 synthetic digit-like images, uint8 (300, 28, 28) (see :func:`draw_synthetic_digits`)."""
    return draw_synthetic_digits(300, seed=2026)


def write_fake_member(run_dir: Path, index: int, model, *, n_test: int) -> dict:
    """Save ``model`` as member ``index`` with random probabilities and a record that matches its files."""
    from ensemble_cnn.storage.run_folder import RunFolder

    probabilities = np.random.default_rng(index).dirichlet(np.ones(10), size=n_test).astype(np.float32)
    details = {"run": index, "seed": index, "recipe": "standard", "checkpoint": "best-validation", "best_epoch": 1,
               "val_accuracy": 0.5, "val_size": 50, "train_size": 450, "test_accuracy": 0.1, "train_seconds": 0.0,
               "epoch_seconds": [0.0], "precision": "float32"}
    return RunFolder(run_dir).write_member(
        index, save_model=model.save, probabilities=probabilities,
        history={"accuracy": [0.5], "val_accuracy": [0.5]}, details=details,
    )


@pytest.fixture(scope="session")
def fake_member():
    """:func:`write_fake_member`: ``fake_member(run_dir, index, model, n_test=1000)``."""
    return write_fake_member


@pytest.fixture(scope="session")
def make_run(tiny_config):
    """Factory: a run folder (the tiny config) with untrained members.

    ``make_run(run_dir, members=1, model=None, **overrides)`` claims ``run_dir`` like
    ``ensemble-cnn train`` and saves ``model`` (default: a fresh member of the run's
    architecture) as every member, each with a record matching its files. Returns the config.
    """
    from ensemble_cnn.training.member import build_member
    from ensemble_cnn.training.train import prepare_run

    def make(run_dir: Path, *, members: int = 1, model=None, **overrides):
        config = prepare_run(tiny_config(members=members, **overrides), run_dir)
        for index in range(members):
            write_fake_member(run_dir, index, model if model is not None else build_member(config), n_test=1000)
        return config

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_config):
    """A real 3-member run, trained enough to read digits (~90% on the slice's test digits), evaluated."""
    from ensemble_cnn.evaluation.evaluate import evaluate_run
    from ensemble_cnn.training.train import train_ensemble

    path = tmp_path_factory.mktemp("trained") / "run"
    config = tiny_config(members=3, epochs=3, width=0.5, limit=3000, val_size=300, augmentation="distort",
                         mode="processes", jobs=2)
    assert train_ensemble(config, path, log=None).complete
    evaluate_run(path, reload=False, plots=False, log=None)
    return path


@pytest.fixture()
def fake_training(monkeypatch):
    """``train`` (in-process, sequential) saves UNTRAINED members instead of training them, each with a record
    matching its files: for the tests whose property is the command's folder handling (resume, grow, options,
    presets), not the training. Everything around the trainer (locking, claiming, resuming, evaluate) is real.
    Returns the list of member indices the fake trainer saved, in order."""
    import ensemble_cnn.training.member as member
    from ensemble_cnn.config import TrainConfig

    saved: list[int] = []

    def untrained_members(config, runs, run_dir, **_):
        cfg = TrainConfig.from_dict(config)
        with np.load(cfg.data) as npz:
            n_test = len(npz["y_test"])
        records = []
        for _, indices in runs:
            for index in indices:
                records.append(write_fake_member(Path(run_dir), index, member.build_member(cfg), n_test=n_test))
                saved.append(index)
        return records

    monkeypatch.setattr(member, "train_runs", untrained_members)
    return saved


def subset_run(source: Path, target: Path, indices: list[int]) -> Path:
    """A new run folder ``target`` holding ``source``'s members ``indices`` renumbered from 0 (their files copied,
    each with a record matching them): a real trained run of ``len(indices)`` members without training one."""
    import dataclasses
    import json
    import shutil

    from ensemble_cnn.config import TrainConfig
    from ensemble_cnn.storage.run_folder import RunFolder

    origin, folder = RunFolder(source), RunFolder(target)
    folder.claim(dataclasses.replace(TrainConfig.load(source / "config.json"), members=len(indices)))
    file_keys = ("index", "model", "model_sha256", "probabilities", "probabilities_sha256", "history",
                 "calibration", "calibration_sha256", "gaussian", "gaussian_sha256", "calibration_scores",
                 "calibration_scores_sha256")
    for name in ("calibration_labels.npy", "calibration.json"):  # a run's calibration digits (holdout shared)
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)
    for new, old in enumerate(indices):
        files = origin.files(old)
        record = json.loads(files.record.read_text())
        calibration = np.load(files.calibration) if record.get("calibration") else None
        scores = np.load(files.calibration_scores) if record.get("calibration_scores") else None
        gaussian = dict(np.load(files.gaussian)) if record.get("gaussian") else None
        folder.write_member(new, save_model=lambda path, model=files.model: shutil.copyfile(model, path),
                            probabilities=np.load(files.probabilities),
                            history=json.loads(files.history.read_text()), calibration=calibration,
                            calibration_scores=scores, gaussian=gaussian,
                            details={key: value for key, value in record.items() if key not in file_keys})
    return target
