"""Training one ensemble member: the function every worker process runs.

:func:`train_member` is a module-level function that receives only plain data (the
run config as a dict, the member index, the run folder), imports TensorFlow inside
(TensorFlow is not fork-safe, and workers must set its thread pools before its first
op), trains, writes the member's files atomically and returns a small record, never
a live model.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ensemble_cnn import _atomic
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.hashing import sha256_file
from ensemble_cnn.seeding import member_seed
from ensemble_cnn.training_data import TrainingPool, batch_stream, data_fingerprint, load_pool, split_for_member


def member_stem(index: int) -> str:
    return f"member_{index:02d}"


def member_files(run_dir: Path, index: int) -> dict[str, Path]:
    """The files one member owns in the run folder."""
    stem = member_stem(index)
    return {
        "model": run_dir / f"{stem}.keras",
        "probabilities": run_dir / f"{stem}_test_proba.npy",
        "history": run_dir / f"{stem}_history.json",
        "record": run_dir / f"{stem}.json",
    }


def member_path(run_dir: Path, name: str, *, source: str | Path | None = None) -> Path:
    """Resolve a file name read from a run's JSON, refusing anything outside the run folder.

    ``name`` must resolve (symbolic links followed) to a file directly in ``run_dir``;
    ``source`` names the JSON file it came from, for the error message.
    """
    root = Path(run_dir).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        where = source if source is not None else run_dir
        raise RunFolderError(f"{where}: member file {name!r} points outside the run folder; refused")
    return path


def configure_tensorflow(intra_op: int, inter_op: int) -> None:
    """Set TensorFlow's own thread pools (loky caps BLAS/OpenMP, not these) and GPU memory growth.

    Must run before TensorFlow's first op; in a reused worker where TensorFlow is
    already initialised the earlier (identical) setting stays.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # already initialised in this (reused) process
    for gpu in tf.config.list_physical_devices("GPU"):
        # Several worker processes may share a GPU: each takes memory as it needs it
        # instead of most of the card up front.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this (reused) process


@dataclass
class MemberPlan:
    """One member's seed, data split and augmentation, before any TensorFlow work."""

    index: int
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    distortion: Any

    def stream(self, cfg: TrainConfig):
        """The member's own shuffled, freshly distorted batches for every epoch."""
        return batch_stream(
            self.x_train, self.y_train, batch_size=cfg.batch_size, epochs=cfg.epochs,
            seed=self.seed, distortion=self.distortion,
        )


def plan_member(cfg: TrainConfig, index: int, pool: TrainingPool) -> MemberPlan:
    """Derive member ``index``'s seed, validation split and distortion from the config."""
    seed = member_seed(cfg.seed, index)
    split = split_for_member(pool, val_size=cfg.val_size, seed=seed)
    x_pool, y_pool = pool.data.x_train, pool.data.y_train
    distortion = None
    if cfg.augmentation == "distort":
        from augment import Distortion

        distortion = Distortion.from_dict(cfg.distortion) if cfg.distortion else Distortion()
    return MemberPlan(
        index=index,
        seed=seed,
        x_train=x_pool[split.train_rows],
        y_train=y_pool[split.train_rows],
        x_val=x_pool[split.val_rows],
        y_val=y_pool[split.val_rows].astype(np.int32),
        distortion=distortion,
    )


def set_determinism(enabled: bool) -> None:
    """Switch on TensorFlow's op determinism in this process (``enabled=False`` leaves it as is).

    With it, the same seeds and thread count give bit-identical training on CPU
    (ops without a deterministic kernel raise instead of running).
    """
    if enabled:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


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


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy (``float32`` or ``mixed_bfloat16``) in this process."""
    import keras

    keras.mixed_precision.set_global_policy(policy)


def train_member(
    config: dict[str, Any],
    index: int,
    run_dir: str,
    *,
    threads: int,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train member ``index`` of the run described by ``config`` alone and save it.

    Parameters
    ----------
    config : dict
        :meth:`TrainConfig.to_dict` of the run.
    index : int
        Member index; its seed is derived from ``(config["seed"], index)``.
    run_dir : str
        The run folder; the member's files are written there atomically, the record
        (``member_XX.json``) last, so its presence means the member is complete.
    threads : int
        TensorFlow intra-op threads for this worker.
    log : callable, optional
        Receives one progress line per epoch.

    Returns
    -------
    dict
        The member record (also saved as ``member_XX.json``).
    """
    configure_tensorflow(threads, max(1, min(2, threads)))
    import keras

    from ensemble_cnn.callbacks import BestWeights, EpochLog

    cfg = TrainConfig.from_dict(config)
    set_determinism(cfg.deterministic)
    set_precision(cfg.precision)
    pool = load_checked_pool(cfg)
    plan = plan_member(cfg, index, pool)
    steps_per_epoch = math.ceil(len(plan.x_train) / cfg.batch_size)
    keras.utils.set_random_seed(plan.seed)
    model = build_member(cfg)
    compile_members(model, cfg, steps_per_epoch=steps_per_epoch)
    best = BestWeights(model)
    progress = EpochLog([index], cfg.epochs, log)
    start = time.perf_counter()
    history = model.fit(
        plan.stream(cfg),
        steps_per_epoch=steps_per_epoch,
        epochs=cfg.epochs,
        validation_data=(plan.x_val, plan.y_val),
        validation_batch_size=1000,
        callbacks=[best, progress],
        shuffle=False,  # the stream is already shuffled, per member and epoch
        verbose=0,
    )
    seconds = time.perf_counter() - start
    return finish_member(
        model, best, history.history, plan, cfg, pool, Path(run_dir), seconds=seconds, epoch_seconds=progress.epoch_seconds
    )


def finish_member(
    model, best, history: dict, plan: MemberPlan, cfg: TrainConfig, pool: TrainingPool, run_dir: Path, *,
    seconds: float, epoch_seconds: list[float],
) -> dict[str, Any]:
    """Restore the best-validation weights, score the test set, write the member's files and record."""
    files = member_files(run_dir, plan.index)
    best.restore()
    probabilities = model.predict(pool.data.x_test, batch_size=1000, verbose=0).astype(np.float32)
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == pool.data.y_test))
    save_member(model, cfg, files["model"])
    with _atomic.atomic_path(files["probabilities"], suffix=".npy") as tmp:
        np.save(tmp, probabilities)
    _atomic.write_json(files["history"], {key: [float(v) for v in values] for key, values in history.items()})
    record = {
        "index": plan.index,
        "seed": plan.seed,
        "model": files["model"].name,
        "model_sha256": sha256_file(files["model"]),
        "probabilities": files["probabilities"].name,
        "probabilities_sha256": sha256_file(files["probabilities"]),
        "history": files["history"].name,
        "best_epoch": best.best_epoch + 1,
        "val_accuracy": best.best_accuracy,
        "val_size": int(len(plan.x_val)),
        "train_size": int(len(plan.x_train)),
        "test_accuracy": test_accuracy,
        "train_seconds": round(seconds, 2),
        "epoch_seconds": epoch_seconds,
        "precision": cfg.precision,
    }
    _atomic.write_json(files["record"], record)
    return record


def save_member(model, cfg: TrainConfig, path: Path) -> None:
    """Save the weights in a fresh, uncompiled copy (no optimizer state: a third of the size)."""
    plain = build_member(cfg)
    plain.set_weights(model.get_weights())
    with _atomic.atomic_path(path, suffix=".keras") as tmp:
        plain.save(tmp)


def build_member(cfg: TrainConfig, *, name: str | None = None):
    """A fresh member model of the run's architecture (call after seeding Keras)."""
    from ensemble_cnn.models import build_model

    return build_model(cfg.arch, width=cfg.width, dropout=cfg.dropout, name=name)


def compile_members(model, cfg: TrainConfig, *, steps_per_epoch: int) -> None:
    """Compile with Adam and per-epoch exponential learning-rate decay.

    ``model`` is one member, or a fused model whose outputs are several members;
    Keras sums the members' losses, so each member's gradient is its own.
    """
    import keras

    decay_rate = cfg.final_lr_fraction ** (1.0 / max(1, cfg.epochs - 1))
    schedule = keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, decay_steps=steps_per_epoch, decay_rate=decay_rate, staircase=True
    )
    n_outputs = len(model.outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=["sparse_categorical_crossentropy"] * n_outputs if n_outputs > 1 else "sparse_categorical_crossentropy",
        metrics=[["accuracy"]] * n_outputs if n_outputs > 1 else ["accuracy"],
        jit_compile=cfg.jit_compile,
    )


def read_record(run_dir: Path, index: int) -> dict[str, Any] | None:
    """The member's record if it is complete and its files match their sha256, else ``None``.

    A record is complete when it is a JSON object for member ``index`` naming the
    member's own files (``member_XX.keras``, ``member_XX_test_proba.npy``) and their
    sha256. Stray temporary files of a killed writer are never looked at.

    Raises
    ------
    RunFolderError
        The record names a file outside the run folder (a tampered run folder).
    """
    run_dir = Path(run_dir)
    files = member_files(run_dir, index)
    try:
        record = json.loads(files["record"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("index") != index:
        return None
    for key in ("model", "probabilities"):
        name, digest = record.get(key), record.get(f"{key}_sha256")
        if not isinstance(name, str) or not isinstance(digest, str):
            return None
        path = member_path(run_dir, name, source=files["record"])
        if path != files[key].resolve():
            return None
        try:
            if sha256_file(path) != digest:
                return None
        except OSError:
            return None
    return record
