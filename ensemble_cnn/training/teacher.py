"""Distillation ("born-again" members): a finished run's committee teaches a new run.

With ``--teacher RUN`` every member of the new run trains on soft targets instead of
one-hot labels: ``(1 - w)`` of the label plus ``w`` (``--teacher-weight``) of the
teacher committee's mean probabilities on the same undistorted training digit; each
distorted view of a digit keeps its digit's target. The driver predicts the teacher's
probabilities once, before any member trains, and writes them to the run folder
(:attr:`RunFolder.teacher_path`), then their sha256 beside them (``teacher_train_proba.json``,
written last: present = the file is complete), where every worker reads them; a resumed
or grown run reuses the file (the teacher's identity, its members' sha256, is part of the
run's). Every read goes through the one guarded open and checks the file against its
sha256, then its ``.npy`` header (float32 (N, 10)) before anything is allocated: a file
changed since it was written is refused in one line naming it, never trained on.

:func:`check_teacher` reads no model (no TensorFlow); :func:`write_teacher_targets`
loads the teacher's members.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.data.reader import RUN_FILES, read_json, read_npy, read_regular
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.storage.hashing import sha256_file
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.storage.run_folder import RunFolder

__all__ = ["check_teacher", "read_teacher_targets", "soft_targets", "teacher_record_path", "write_teacher_targets"]

_NPY_HEADER_ROOM = 64 * 1024  # the teacher file's size limit: its data plus room for a .npy header


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


def teacher_record_path(folder: RunFolder) -> Path:
    """Where the teacher file's sha256 is kept: ``teacher_train_proba.json``, beside it, written after it."""
    return folder.teacher_path.with_suffix(".json")


def write_teacher_targets(config: TrainConfig, folder: RunFolder, x_train: np.ndarray, *,
                          log: Callable[[str], None] | None = None) -> Path:
    """The teacher committee's mean probabilities on every training digit, written to the run folder once.

    Parameters
    ----------
    config : TrainConfig
        Checked by :func:`check_teacher`.
    folder : RunFolder
        The run's (claimed) folder. A file written before (its record present) is
        reused once it matches its recorded sha256 and holds float32 (N, 10) finite
        probabilities; without a record (never written, or a writer killed before it
        wrote the record) the teacher labels the digits again.
    x_train : ndarray of uint8, shape (N, 28, 28)
        The run's training pool, before any input normalization (each teacher member
        applies its own).

    Returns
    -------
    Path
        :attr:`RunFolder.teacher_path`, holding float32 (N, 10).

    Raises
    ------
    RunFolderError
        The file written before differs from its sha256 (corrupt or overwritten), or is
        not a regular file, or not float32 (N, 10) finite probabilities (one line naming it).
    """
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.storage import atomic

    path, record = folder.teacher_path, teacher_record_path(folder)
    if record.exists() and os.path.lexists(path):  # written before: reused once it checks out, never rewritten
        _read_verified(folder, len(x_train))
        return path
    teacher = Ensemble.load(config.teacher)
    if log:
        log(f"teacher: {len(teacher)} members of {shown(config.teacher)} label {len(x_train)} training digits")
    probabilities = teacher.member_probabilities(x_train).mean(axis=0).astype(np.float32)
    with atomic.atomic_path(path) as tmp:
        np.save(tmp, probabilities, allow_pickle=False)
        digest = sha256_file(tmp, what="teacher probabilities", voice=RUN_FILES)
    atomic.write_json(record, {"file": path.name, "sha256": digest, "shape": list(probabilities.shape),
                               "dtype": "float32"})
    return path


def read_teacher_targets(folder: RunFolder, n_rows: int) -> np.ndarray:
    """The teacher's probabilities the driver wrote, float32 (n_rows, 10), checked against their sha256.

    Raises
    ------
    RunFolderError
        The file or its record is missing or unusable, or the file differs from its sha256.
    """
    if not teacher_record_path(folder).exists():
        raise RunFolderError(f"{shown(teacher_record_path(folder))}: missing (the driver writes the teacher's "
                             "probabilities and their sha256 before training; run train again)")
    return _read_verified(folder, n_rows)


def _read_verified(folder: RunFolder, n_rows: int) -> np.ndarray:
    """The teacher file, read once through the one guarded open, checked against its record's sha256, then its
    ``.npy`` header (float32 (n_rows, 10)) before allocation; finite probabilities only."""
    path, record_path = folder.teacher_path, teacher_record_path(folder)
    name = shown(path)
    record = read_json(record_path, what="teacher record", voice=RUN_FILES)
    digest = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(digest, str):
        raise RunFolderError(f"{shown(record_path)}: not a teacher record (no sha256 of {path.name})")
    limit = n_rows * N_CLASSES * np.dtype(np.float32).itemsize + _NPY_HEADER_ROOM
    data = read_regular(path, limit=limit, what="teacher probabilities", voice=RUN_FILES)
    if hashlib.sha256(data).hexdigest() != digest:
        raise RunFolderError(f"{name}: sha256 differs from the one in {record_path.name} (corrupt or overwritten "
                             "since the driver wrote it); delete both files to have the teacher label the digits again")

    def float32_rows(shape: tuple[int, ...], dtype: np.dtype) -> None:
        if shape != (n_rows, N_CLASSES) or dtype != np.float32:
            raise RunFolderError(f"{name}: header gives {dtype} {shape}, expected float32 ({n_rows}, {N_CLASSES}) "
                                 "teacher probabilities")

    targets = read_npy(io.BytesIO(data), available=len(data), path=path, limit=limit, check=float32_rows,
                       voice=RUN_FILES)
    if not np.isfinite(targets).all():
        raise RunFolderError(f"{name}: holds non-finite probabilities")
    return targets
