"""Training ensemble members: what every worker process runs.

A *training run* ``r`` is one model trained from its own seed ``member_seed(root, r)``
on its own validation split and its own stream of distorted batches; its recipe
(:mod:`ensemble_cnn.training.recipes`) turns it into ``M = recipe.members_per_run`` members,
indices ``r * M ... r * M + M - 1`` (``M = 1`` today: run ``r`` is member ``r``).

:func:`train_runs` is a module-level function that receives only plain data (the
run config as a dict, the runs, the run folder, the execution settings), imports
TensorFlow inside (TensorFlow is not fork-safe, and workers must set its thread
pools before its first op), trains, writes each member's files atomically through
:class:`ensemble_cnn.storage.run_folder.RunFolder` and returns small records, never live models.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.inference.features import FEATURE_SCORES, gaussian_arrays, member_feature_scores
from ensemble_cnn.training.checkpoint import Checkpoint
from ensemble_cnn.training.recipes import Recipe, get_recipe
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.seeding import member_seed
from ensemble_cnn.data.training import (
    TrainingPool, batch_stream, data_fingerprint, load_pool, normalized_pool, split_for_member,
)


@dataclass(frozen=True)
class WorkerSettings:
    """Execution settings a worker needs besides the config (plain data, sent to the worker).

    Attributes
    ----------
    precision : {"float32", "mixed_bfloat16"}
        The resolved Keras dtype policy.
    threads : int
        TensorFlow intra-op threads.
    started : float
        ``time.time()`` when the driver started training (for the finish estimate).
    rounds : int
        Rounds of training runs the driver planned (for the finish estimate).
    driver_pid : int
        The driver's process id: a local worker process exits when it dies (0: not watched).
    """

    precision: str
    threads: int
    started: float = 0.0
    rounds: int = 0
    driver_pid: int = 0


@dataclass
class RunPlan:
    """One training run's seed, data split and augmentation, before any TensorFlow work."""

    run: int
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    distortion: Any
    erasing: Any = None
    train_rows: np.ndarray | None = None  # the pool rows of x_train (with repeats under bootstrap)

    def stream(self, cfg: TrainConfig):
        """The run's own shuffled, freshly distorted (and erased) batches for every epoch."""
        return batch_stream(
            self.x_train, self.y_train, batch_size=cfg.batch_size, epochs=cfg.epochs,
            seed=self.seed, distortion=self.distortion, erasing=self.erasing,
        )


def print_line(text: str) -> None:
    """A worker's progress line on its standard output (a module function: workers receive it by reference)."""
    print(text, flush=True)


def run_of(index: int, recipe: Recipe) -> int:
    """The training run that yields member ``index``."""
    return index // recipe.members_per_run


def members_of(run: int, recipe: Recipe) -> list[int]:
    """The member indices training run ``run`` yields."""
    per_run = recipe.members_per_run
    return list(range(run * per_run, (run + 1) * per_run))


def run_label(run: int, recipe: Recipe) -> str:
    """How progress lines name training run ``run``: ``member 03``, or ``members 03-05`` for a multi-member recipe."""
    indices = members_of(run, recipe)
    return f"member {indices[0]:02d}" if len(indices) == 1 else f"members {indices[0]:02d}-{indices[-1]:02d}"


def run_config(cfg: TrainConfig, run: int) -> TrainConfig:
    """The config training run ``run`` trains with: its members' plan group's settings over the base config."""
    return cfg.member_config(members_of(run, get_recipe(cfg.recipe))[0])


def run_cost(cfg: TrainConfig, run: int) -> float:
    """Training run ``run``'s relative cost: epochs x multiply-adds per digit (its split size is the run's)."""
    from ensemble_cnn.models import multiply_adds

    own = run_config(cfg, run)
    return own.epochs * multiply_adds(own.arch, own.width)


class PoolCache:
    """The run's training pool under each input normalization, each made once per worker."""

    def __init__(self, pool: TrainingPool) -> None:
        self._pools = {"none": pool}

    def get(self, normalize: str) -> TrainingPool:
        if normalize not in self._pools:
            self._pools[normalize] = normalized_pool(self._pools["none"], normalize)
        return self._pools[normalize]


def plan_run(cfg: TrainConfig, run: int, pool: TrainingPool, *, teacher: np.ndarray | None = None) -> RunPlan:
    """Derive training run ``run``'s seed, validation split, distortion and erasing from the config.

    With ``teacher`` (float32 (N, 10), the teacher's probabilities on every pool row) the
    training targets are soft (:func:`ensemble_cnn.training.teacher.soft_targets`, shape
    (n, 10)) and the validation targets one-hot; else both are integer labels.
    """
    seed = member_seed(cfg.seed, run)
    split = split_for_member(pool, val_size=cfg.val_size, seed=seed, bootstrap=cfg.bootstrap, holdout=cfg.holdout,
                             root_seed=cfg.seed)
    x_pool, y_pool = pool.data.x_train, pool.data.y_train
    y_train, y_val = y_pool[split.train_rows], y_pool[split.val_rows].astype(np.int32)
    if teacher is not None:
        from ensemble_cnn.training.teacher import soft_targets

        y_train = soft_targets(y_train, teacher[split.train_rows], weight=cfg.teacher_weight)
        y_val = np.eye(N_CLASSES, dtype=np.float32)[y_val]
    distortion = None
    if cfg.augmentation == "distort":
        from augment import Distortion

        distortion = Distortion.from_dict(cfg.distortion)
    erasing = None
    if cfg.erase > 0:
        from augment import Erasing

        erasing = Erasing.from_size(cfg.erase, cfg.erase_size)
    return RunPlan(
        run=run,
        seed=seed,
        x_train=x_pool[split.train_rows],
        y_train=y_train,
        x_val=x_pool[split.val_rows],
        y_val=y_val,
        distortion=distortion,
        erasing=erasing,
        train_rows=split.train_rows,
    )


def gaussian_fit_rows(plan: RunPlan, pool: TrainingPool, *, size: int | None = None) -> np.ndarray:
    """The pool rows a member's feature Gaussian is fitted on: its own undistorted training originals.

    Not its held-out digits, not the test digits, no distorted copy: the distinct original
    rows among ``plan.train_rows``, at most ``size`` (default
    :data:`~ensemble_cnn.inference.features.GAUSSIAN_FIT_SIZE`) of them drawn without
    replacement from ``(plan.seed, GAUSSIAN_STREAM)``; sorted.

    Returns
    -------
    ndarray of int64, shape (min(size, originals),)
    """
    from ensemble_cnn.inference.features import GAUSSIAN_FIT_SIZE
    from ensemble_cnn.seeding import GAUSSIAN_STREAM, rng_for

    size = GAUSSIAN_FIT_SIZE if size is None else size
    if plan.train_rows is None:
        raise ValueError(f"training run {plan.run}: its plan has no training rows (made by plan_run)")
    rows = np.unique(plan.train_rows)
    rows = rows[pool.variant[rows] == 0].astype(np.int64)
    if len(rows) > size:
        rows = np.sort(rng_for(plan.seed, GAUSSIAN_STREAM).choice(rows, size=size, replace=False))
    return rows


def fit_member_gaussian(model, plan: RunPlan, pool: TrainingPool):
    """Member ``model``'s class-conditional Gaussian of its penultimate features on :func:`gaussian_fit_rows`.

    ``pool``: the training pool under the member's input normalization (as it trained).
    Returns a :class:`~ensemble_cnn.inference.features.ClassGaussian`, or ``None`` when a class
    has no training original (a tiny ``--limit``): such a member has no Gaussian.
    """
    from ensemble_cnn.inference.features import fit_class_gaussian, member_features

    rows = gaussian_fit_rows(plan, pool)
    labels = pool.data.y_train[rows].astype(np.int64)
    if len(np.unique(labels)) < N_CLASSES:
        return None
    features, _ = member_features(model, pool.data.x_train[rows])
    return fit_class_gaussian(features, labels)


def load_checked_pool(cfg: TrainConfig) -> TrainingPool:
    """The run's training pool, checked against the fingerprint the driver took.

    A worker on another machine must see the very data the run was started with
    (same path, same bytes); a different file there raises instead of training on it.
    """
    pool = load_pool(data=cfg.data, expanded=cfg.expanded, limit=cfg.limit)
    if cfg.data_fingerprint and data_fingerprint(pool) != cfg.data_fingerprint:
        source = cfg.expanded or cfg.data or "keras"
        raise ValueError(f"{source}: the data on this worker differs from the data the run was started with")
    return pool


def teacher_targets(cfg: TrainConfig, run_dir: str, pool: TrainingPool) -> np.ndarray | None:
    """The teacher's probabilities on every pool row, as the driver wrote them (``None`` without a teacher)."""
    if cfg.teacher is None:
        return None
    from ensemble_cnn.training.teacher import read_teacher_targets

    return read_teacher_targets(RunFolder(run_dir), len(pool.data.x_train))


def build_member(cfg: TrainConfig, *, name: str | None = None):
    """A fresh member model of the run's architecture (call after seeding Keras)."""
    from ensemble_cnn.models import build_model

    return build_model(cfg.arch, width=cfg.width, dropout=cfg.dropout, name=name)


def compile_members(model, cfg: TrainConfig, *, steps_per_epoch: int) -> None:
    """Compile with the recipe's optimizer and learning-rate schedule.

    ``model`` is one member, or a fused model whose outputs are several members;
    Keras sums the members' losses, so each member's gradient is its own.
    """
    recipe = get_recipe(cfg.recipe)
    n_outputs = len(model.outputs)
    loss = recipe.loss(cfg)
    model.compile(
        optimizer=recipe.optimizer(cfg, steps_per_epoch=steps_per_epoch),
        loss=[loss] * n_outputs if n_outputs > 1 else loss,
        metrics=[["accuracy"]] * n_outputs if n_outputs > 1 else ["accuracy"],
        jit_compile=cfg.jit_compile,
    )


def start_worker(config: dict[str, Any], settings: WorkerSettings) -> TrainConfig:
    """Start TensorFlow in this worker (quietly, with its threads, determinism and precision); return the config."""
    from ensemble_cnn import runtime

    runtime.configure_tensorflow(settings.threads, max(1, min(2, settings.threads)))
    cfg = TrainConfig.from_dict(config)
    runtime.set_determinism(cfg.deterministic)
    runtime.set_precision(settings.precision)
    return cfg


def estimate_for(settings: WorkerSettings, round_index: int, *, announce: bool = True):
    """The finish-time estimate of a run trained in round ``round_index``.

    ``None`` without a plan, or when another task of the round announces it (``announce=False``:
    the run's estimate is printed once, not once per worker).
    """
    from ensemble_cnn.training.callbacks import FinishEstimate

    if not settings.rounds or not announce:
        return None
    return FinishEstimate(started=settings.started, rounds=settings.rounds, round_index=round_index)


def train_runs(
    config: dict[str, Any],
    runs: Sequence[tuple[int, Sequence[int]]],
    run_dir: str,
    *,
    settings: WorkerSettings,
    log: Callable[[str], None] | None = print,
    round_index: int = 0,
    announce: bool = True,
) -> list[dict[str, Any]]:
    """Train the given training runs one after another and save the members they yield.

    Parameters
    ----------
    config : dict
        :meth:`TrainConfig.to_dict` of the run.
    runs : sequence of (int, sequence of int)
        Each training run with the member indices to save from it (the others it
        would yield are already complete in the folder).
    run_dir : str
        The run folder; each member's files are written there atomically, its record
        last, so its presence means the member is complete.
    settings : WorkerSettings
    log : callable, optional
        Receives one progress line per epoch.
    round_index : int
        Which scheduling round the first run belongs to (finish estimate).
    announce : bool
        Whether this task prints the run's estimated finish time (one task of the first round does).

    Returns
    -------
    list of dict
        The records of the saved members.
    """
    cfg = start_worker(config, settings)  # first: TensorFlow starts here, quietly, with its threads
    import keras

    from ensemble_cnn.training.callbacks import EpochLog

    recipe = get_recipe(cfg.recipe)
    pools = PoolCache(load_checked_pool(cfg))
    teacher = teacher_targets(cfg, run_dir, pools.get("none"))
    records = []
    for position, (run, wanted) in enumerate(runs):
        own = run_config(cfg, run)  # the base config with the run's plan group's settings
        pool = pools.get(own.normalize)
        plan = plan_run(own, run, pool, teacher=teacher)
        steps_per_epoch = math.ceil(len(plan.x_train) / own.batch_size)
        keras.utils.set_random_seed(plan.seed)
        model = build_member(own)
        compile_members(model, own, steps_per_epoch=steps_per_epoch)
        policy = recipe.checkpoint_policy(own, model)
        progress = EpochLog([run_label(run, recipe)], own.epochs, log,
                            estimate=estimate_for(settings, round_index + position, announce=announce and position == 0))
        start = time.perf_counter()
        history = model.fit(
            plan.stream(own),
            steps_per_epoch=steps_per_epoch,
            epochs=own.epochs,
            validation_data=(plan.x_val, plan.y_val) if len(plan.x_val) else None,
            validation_batch_size=1000,
            callbacks=[*recipe.training_callbacks(own), policy, progress],
            shuffle=False,  # the stream is already shuffled, per run and epoch
            verbose=0,
        )
        timing = {"train_seconds": round(time.perf_counter() - start, 2), "epoch_seconds": progress.epoch_seconds}
        records += save_checkpoints(
            model, policy.checkpoints(), plan, wanted, own, pool, RunFolder(run_dir),
            history=history.history, timing=timing, precision=settings.precision, spec_of=cfg.member_spec,
        )
    return records


def save_checkpoints(
    model,
    checkpoints: list[Checkpoint],
    plan: RunPlan,
    wanted: Sequence[int],
    cfg: TrainConfig,
    pool: TrainingPool,
    folder: RunFolder,
    *,
    history: dict[str, list],
    timing: dict[str, Any],
    precision: str,
    spec_of: Callable[[int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Turn a run's checkpoints into members: score each on the test set and write it.

    With ``holdout="shared"`` each member also predicts the run's calibration digits (its
    held-out digits, undistorted: ``plan.x_val``), kept beside it in the run folder. Every
    member's class-conditional Gaussian of its penultimate features is fitted on its own
    training originals (:func:`fit_member_gaussian`) and kept as ``member_XX_gaussian.npz``;
    with ``holdout="shared"`` its scores past the softmax on the calibration digits too
    (``member_XX_calibration_scores.npy``, columns :data:`~ensemble_cnn.inference.features.FEATURE_SCORES`).
    ``cfg`` is the run's own config (:func:`run_config`) and ``pool`` the training pool
    under its input normalization; ``spec_of(index)`` is what the member's record says it
    is (the run config's :meth:`~ensemble_cnn.config.TrainConfig.member_spec`).

    Raises
    ------
    ValueError
        The run gave no checkpoint with finite validation figures, or a member's
        weights or predictions are not finite (the training diverged).
    """
    recipe = get_recipe(cfg.recipe)
    indices = members_of(plan.run, recipe)
    if len(checkpoints) != len(indices):
        raise ValueError(
            f"training run {plan.run} diverged (no epoch with finite validation loss); try a lower --lr"
            if not checkpoints else
            f"recipe {recipe.name} gave {len(checkpoints)} checkpoints, expected {len(indices)}"
        )
    with_ema = bool(cfg.ema)
    records = []
    for index, checkpoint in zip(indices, checkpoints):
        if index not in wanted:
            continue
        model.set_weights(checkpoint.weights)
        if not all(np.isfinite(w).all() for w in checkpoint.weights):
            raise ValueError(f"member {index:02d} diverged (non-finite weights); try a lower --lr")
        probabilities = model.predict(pool.data.x_test, batch_size=1000, verbose=0).astype(np.float32)
        calibration = None  # its probabilities on the run's calibration digits (ensemble_cnn.storage.calibration)
        if cfg.holdout == "shared":
            calibration = model.predict(plan.x_val, batch_size=1000, verbose=0).astype(np.float32)
        if not all(np.isfinite(p).all() for p in (probabilities, calibration) if p is not None):
            raise ValueError(f"member {index:02d} diverged (non-finite predictions); try a lower --lr")
        gaussian = fit_member_gaussian(model, plan, pool)  # "not a digit" past the softmax (inference.features)
        calibration_scores = None  # its scores past the softmax on the calibration digits, (M, 3) float32
        if cfg.holdout == "shared" and gaussian is not None:
            scored = member_feature_scores(model, plan.x_val, gaussian)
            calibration_scores = np.stack([scored[name] for name in FEATURE_SCORES], axis=1).astype(np.float32)
        details = {
            "run": plan.run,
            "seed": plan.seed,
            "recipe": recipe.name,
            "checkpoint": checkpoint.policy + ("+ema" if with_ema else ""),
            "best_epoch": checkpoint.epoch,
            "val_accuracy": checkpoint.val_accuracy if math.isfinite(checkpoint.val_accuracy) else None,
            "val_size": int(len(plan.x_val)),
            "train_size": int(len(plan.x_train)),
            "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == pool.data.y_test)),
            **timing,
            "precision": precision,
            "spec": spec_of(index),
        }
        records.append(folder.write_member(
            index, save_model=lambda path: save_model(model, cfg, path), probabilities=probabilities,
            history=history, details=details, calibration=calibration,
            gaussian=None if gaussian is None else gaussian_arrays(gaussian),
            calibration_scores=calibration_scores,
        ))
    return records


def save_model(model, cfg: TrainConfig, path: Path) -> None:
    """Save the weights in a fresh, uncompiled copy (no optimizer state: a third of the size)."""
    plain = build_member(cfg)
    plain.set_weights(model.get_weights())
    plain.save(path)
