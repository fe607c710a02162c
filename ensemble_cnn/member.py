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
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ensemble_cnn import _atomic
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.hashing import sha256_file
from ensemble_cnn.seeding import member_seed
from ensemble_cnn.training_data import batch_stream, load_pool, split_for_member


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


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Set TensorFlow's own thread pools (loky caps BLAS/OpenMP, not these).

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


def train_member(
    config: dict[str, Any],
    index: int,
    run_dir: str,
    *,
    threads: int,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train member ``index`` of the run described by ``config`` and save it.

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
    configure_threads(threads, max(1, min(2, threads)))
    import keras

    from ensemble_cnn.callbacks import BestWeights, EpochLog

    cfg = TrainConfig.from_dict(config)
    run_path = Path(run_dir)
    files = member_files(run_path, index)
    seed = member_seed(cfg.seed, index)
    keras.utils.set_random_seed(seed)

    pool = load_pool(data=cfg.data, expanded=cfg.expanded, limit=cfg.limit)
    split = split_for_member(pool, val_size=cfg.val_size, seed=seed)
    x_pool, y_pool = pool.data.x_train, pool.data.y_train
    x_train, y_train = x_pool[split.train_rows], y_pool[split.train_rows]
    x_val, y_val = x_pool[split.val_rows], y_pool[split.val_rows].astype(np.int32)

    distortion = None
    if cfg.augmentation == "distort":
        from augment import Distortion

        distortion = Distortion.from_dict(cfg.distortion) if cfg.distortion else Distortion()

    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    model = compile_member(cfg, steps_per_epoch=steps_per_epoch)
    best = BestWeights()
    progress = EpochLog(index, cfg.epochs, log)
    stream = batch_stream(
        x_train, y_train, batch_size=cfg.batch_size, epochs=cfg.epochs, seed=seed, distortion=distortion
    )
    start = time.perf_counter()
    history = model.fit(
        stream,
        steps_per_epoch=steps_per_epoch,
        epochs=cfg.epochs,
        validation_data=(x_val, y_val),
        validation_batch_size=1000,
        callbacks=[best, progress],
        shuffle=False,  # the stream is already shuffled, per member and epoch
        verbose=0,
    )
    train_seconds = time.perf_counter() - start
    best.restore(model)

    probabilities = model.predict(pool.data.x_test, batch_size=1000, verbose=0).astype(np.float32)
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == pool.data.y_test))

    save_member(model, cfg, files["model"])
    with _atomic.atomic_path(files["probabilities"], suffix=".npy") as tmp:
        np.save(tmp, probabilities)
    hist = {key: [float(v) for v in values] for key, values in history.history.items()}
    _atomic.write_json(files["history"], hist)
    record = {
        "index": index,
        "seed": seed,
        "model": files["model"].name,
        "model_sha256": sha256_file(files["model"]),
        "probabilities": files["probabilities"].name,
        "probabilities_sha256": sha256_file(files["probabilities"]),
        "history": files["history"].name,
        "best_epoch": best.best_epoch + 1,
        "val_accuracy": best.best_accuracy,
        "val_size": int(len(x_val)),
        "train_size": int(len(x_train)),
        "test_accuracy": test_accuracy,
        "train_seconds": round(train_seconds, 2),
    }
    _atomic.write_json(files["record"], record)
    return record


def save_member(model, cfg: TrainConfig, path: Path) -> None:
    """Save the weights in a fresh, uncompiled copy (no optimizer state: a third of the size)."""
    from ensemble_cnn.models import build_model

    plain = build_model(cfg.arch, width=cfg.width, dropout=cfg.dropout)
    plain.set_weights(model.get_weights())
    with _atomic.atomic_path(path, suffix=".keras") as tmp:
        plain.save(tmp)


def compile_member(cfg: TrainConfig, *, steps_per_epoch: int):
    """Build and compile a member: Adam with per-epoch exponential learning-rate decay."""
    import keras

    from ensemble_cnn.models import build_model

    model = build_model(cfg.arch, width=cfg.width, dropout=cfg.dropout)
    decay_rate = cfg.final_lr_fraction ** (1.0 / max(1, cfg.epochs - 1))
    schedule = keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, decay_steps=steps_per_epoch, decay_rate=decay_rate, staircase=True
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def read_record(run_dir: Path, index: int) -> dict[str, Any] | None:
    """The member's record if it is complete and its files match their sha256, else ``None``."""
    files = member_files(run_dir, index)
    try:
        record = json.loads(files["record"].read_text(encoding="utf-8"))
        for key in ("model", "probabilities"):
            if sha256_file(files[key]) != record[f"{key}_sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record
