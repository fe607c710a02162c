"""Distillation ("born-again" members): a finished run's committee teaches a new run.

With ``--teacher RUN`` every member of the new run trains on soft targets instead of
one-hot labels: ``(1 - w)`` of the label plus ``w`` (``--teacher-weight``) of the
teacher committee's mean probabilities on the same undistorted training digit; each
distorted view of a digit keeps its digit's target. The driver predicts the teacher's
probabilities once, before any member trains, and writes them to the run folder
(:attr:`RunFolder.teacher_path`), where every worker reads them; a resumed or grown
run reuses the file (the teacher's identity, its members' sha256, is part of the run's).

:func:`check_teacher` reads no model (no TensorFlow); :func:`write_teacher_targets`
loads the teacher's members.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.storage.run_folder import RunFolder

__all__ = ["check_teacher", "read_teacher_targets", "soft_targets", "write_teacher_targets"]


def check_teacher(config: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """Check ``config.teacher`` can teach this run; return the config with it resolved and fingerprinted.

    Reads the teacher's ``config.json`` and member records only. ``config.data_fingerprint``
    must be filled in (:func:`ensemble_cnn.training.train.check_run` does it first).

    Raises
    ------
    RunFolderError
        The teacher is not a run folder, is the run itself, has a member missing or
        corrupt, or trained on other digits (one line naming ``--teacher`` and the folder).
    """
    if config.teacher is None:
        return config
    where = f"--teacher {shown(config.teacher)}"
    folder = RunFolder(config.teacher)
    if folder.path.resolve() == Path(run_dir).resolve():
        raise RunFolderError(f"{where}: is the run folder itself (a teacher is another, finished run)")
    try:
        taught_by = folder.require_config()
    except RunFolderError as exc:
        raise RunFolderError(f"--teacher: {exc}") from None  # the message names the folder
    if taught_by.data_fingerprint != config.data_fingerprint:
        raise RunFolderError(f"{where}: trained on other digits than this run (data sha256 "
                             f"{taught_by.data_fingerprint[:12]}…, this run's {config.data_fingerprint[:12]}…); "
                             "a teacher must have trained on the same --data, --expanded and --limit")
    statuses = folder.scan(range(taught_by.members))
    missing = [f"member_{i:02d} ({s.problem or 'not trained yet'})" for i, s in statuses.items() if not s.complete]
    if missing:
        raise RunFolderError(f"{where}: {len(missing)} of {taught_by.members} members not complete: "
                             f"{'; '.join(missing)} (a teacher is a finished run)")
    digest = hashlib.sha256()
    for index, status in statuses.items():
        digest.update(f"{index}:{status.record['model_sha256']}\n".encode())
    return replace(config, teacher=str(folder.path.resolve()), teacher_fingerprint=digest.hexdigest())


def soft_targets(labels: np.ndarray, teacher: np.ndarray, *, weight: float) -> np.ndarray:
    """Blend one-hot labels with a teacher's probabilities.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    teacher : ndarray of float, shape (N, 10)
        The teacher's class probabilities (rows sum to 1).
    weight : float
        The teacher's share, in (0, 0.5): every row's largest entry stays at its label.

    Returns
    -------
    ndarray of float32, shape (N, 10)
        ``(1 - weight) * one_hot(labels) + weight * teacher``; rows sum to 1.
    """
    if not 0 < weight < 0.5:
        raise ValueError(f"teacher_weight must be in (0, 0.5), got {weight!r}")
    labels = np.asarray(labels)
    teacher = np.asarray(teacher, dtype=np.float32)
    if teacher.shape != (len(labels), N_CLASSES):
        raise ValueError(f"teacher probabilities must have shape ({len(labels)}, {N_CLASSES}), got {teacher.shape}")
    targets = weight * teacher
    targets[np.arange(len(labels)), labels.astype(np.int64)] += 1.0 - weight
    return targets


def write_teacher_targets(config: TrainConfig, folder: RunFolder, x_train: np.ndarray, *,
                          log: Callable[[str], None] | None = None) -> Path:
    """The teacher committee's mean probabilities on every training digit, written to the run folder once.

    Parameters
    ----------
    config : TrainConfig
        Checked by :func:`check_teacher`.
    folder : RunFolder
        The run's (claimed) folder; an existing complete file is kept.
    x_train : ndarray of uint8, shape (N, 28, 28)
        The run's training pool, before any input normalization (each teacher member
        applies its own).

    Returns
    -------
    Path
        :attr:`RunFolder.teacher_path`, holding float32 (N, 10).
    """
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.storage import atomic

    path = folder.teacher_path
    if _load_targets(path, len(x_train)) is not None:
        return path
    teacher = Ensemble.load(config.teacher)
    if log:
        log(f"teacher: {len(teacher)} members of {shown(config.teacher)} label {len(x_train)} training digits")
    probabilities = teacher.member_probabilities(x_train).mean(axis=0).astype(np.float32)
    with atomic.atomic_path(path) as tmp:
        np.save(tmp, probabilities, allow_pickle=False)
    return path


def read_teacher_targets(folder: RunFolder, n_rows: int) -> np.ndarray:
    """The teacher's probabilities the driver wrote, float32 (n_rows, 10); :class:`RunFolderError` if unusable."""
    path = folder.teacher_path
    targets = _load_targets(path, n_rows)
    if targets is None:
        raise RunFolderError(f"{shown(path)}: missing or not float32 ({n_rows}, {N_CLASSES}) finite probabilities "
                             "(the driver writes it before training; run train again)")
    return targets


def _load_targets(path: Path, n_rows: int) -> np.ndarray | None:
    """The file's float32 (n_rows, 10) finite array, read once; ``None`` if missing or anything else."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = (isinstance(array, np.ndarray) and array.dtype == np.float32
          and array.shape == (n_rows, N_CLASSES) and bool(np.isfinite(array).all()))
    return array if ok else None
