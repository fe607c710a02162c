"""A run's calibration digits: labelled training digits that no member trained on (``holdout="shared"``).

With ``--holdout shared`` every member holds out the same ``val_size`` original training
digits, drawn from the run's root seed (:func:`ensemble_cnn.data.training.shared_holdout`):
they lie outside every member's training data (no distorted copy of them either) and
outside the test set, so thresholds and conformal quantiles can be fixed on them. The run
folder keeps::

    calibration_labels.npy           uint8 (M,): their labels, in the order of their rows in the training pool
    calibration_ink_area.npy         float32 (M,): each one's ink area (the share of its 784 pixels with any
                                     ink, ensemble_cnn.inference.features.ink_area), for the "not a digit" test
    calibration.json                 what they are, written after the labels file (present = complete): their
                                     count, the sha256 of their pool rows (int64) and of their labels (uint8),
                                     the labels file's sha256, the data's fingerprint, the seed and val_size;
                                     the ink area file and its sha256 (absent in runs trained before it: resuming
                                     such a run adds them)
    member_XX_calibration_proba.npy  float32 (M, 10): member XX's probabilities on them, undistorted, under its
                                     own input normalization (its sha256 in the member's record)
    member_XX_calibration_scores.npy float32 (M, 3): member XX's scores past the softmax on them, columns
                                     FEATURE_SCORE_COLUMNS (mahalanobis, relative_mahalanobis, energy;
                                     ensemble_cnn.inference.features);
                                     its sha256 in the record; absent in runs trained before these scores

The trainer's driver writes the first two before any member trains and, when a run is
resumed or grown, draws them again and refuses a folder whose files say otherwise
(:func:`write_calibration_set`). :func:`read_calibration` gives the labels and the
members' probabilities, each file read once through the one guarded open and checked
against its sha256 before it is parsed (and, where every member has them, their scores past the
softmax). No TensorFlow and no training code here, so
``evaluate``, ``predict``, ``serve`` and ``export`` all read the same digits the same way.

With ``checkpoint="best"`` the same digits also pick each member's epoch: they are then
not entirely untouched (the default checkpoint is ``"last"``).
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.data.reader import RUN_FILES, read_json, read_npy, read_regular
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.storage import atomic
from ensemble_cnn.storage.hashing import sha256_arrays, sha256_file
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.storage.run_folder import RunFolder, member_stem

__all__ = ["CALIBRATION_NAME", "FEATURE_SCORE_COLUMNS", "INK_AREA_NAME", "LABELS_NAME", "CalibrationSet",
           "calibration_record",
           "read_calibration", "write_calibration_set"]

CALIBRATION_NAME = "calibration.json"
LABELS_NAME = "calibration_labels.npy"
INK_AREA_NAME = "calibration_ink_area.npy"
# The columns of member_XX_calibration_scores.npy: the scores past the softmax (ensemble_cnn.inference.features).
FEATURE_SCORE_COLUMNS = ("mahalanobis", "relative_mahalanobis", "energy")
_NPY_HEADER_ROOM = 64 * 1024  # a file's size limit: its data plus room for a .npy header
# What calibration.json must say for the digits a run draws (the labels file's own sha256 comes on top).
_DRAWN_KEYS = ("holdout", "count", "indices_sha256", "labels_sha256", "data_fingerprint", "seed", "val_size")


class CalibrationSet(NamedTuple):
    """The calibration digits of a run: their labels and each member's probabilities on them.

    Attributes
    ----------
    labels : ndarray of uint8, shape (M,)
    probabilities : ndarray of float32, shape (K, M, 10)
        ``probabilities[k]``: the k-th member record's probabilities (its own input normalization).
    feature_scores : dict of str to ndarray of float32, shape (K, M), or None
        Each score past the softmax (:data:`FEATURE_SCORE_COLUMNS`) of each member on them;
        ``None`` when a member lacks them (a run trained before these scores).
    ink_area : ndarray of float32, shape (M,), or None
        Each digit's ink area (the share of its pixels with any ink); ``None`` in a run trained before it.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    feature_scores: dict[str, np.ndarray] | None = None
    ink_area: np.ndarray | None = None


def calibration_record(config: TrainConfig, *, rows: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """What ``calibration.json`` says of the digits at pool rows ``rows`` with ``labels`` (but the file's sha256).

    Parameters
    ----------
    config : TrainConfig
        The run's config (``data_fingerprint`` filled in).
    rows : ndarray of int, shape (M,)
        The held-out digits' rows in the training pool.
    labels : ndarray of int, shape (M,)
        Their labels, 0..9.
    """
    return {
        "holdout": "shared",
        "count": int(len(rows)),
        "indices_sha256": sha256_arrays(np.asarray(rows, dtype=np.int64)),
        "labels_sha256": sha256_arrays(np.asarray(labels, dtype=np.uint8)),
        "data_fingerprint": config.data_fingerprint,
        "seed": config.seed,
        "val_size": config.val_size,
        "labels": LABELS_NAME,
    }


def write_calibration_set(folder: RunFolder, config: TrainConfig, *, rows: np.ndarray,
                          labels: np.ndarray, ink_area: np.ndarray | None = None) -> dict[str, Any]:
    """Write the run's calibration digits (``calibration_labels.npy``, then ``calibration.json``), or check them.

    Call with the folder claimed and locked, before any member trains. A folder that
    already holds ``calibration.json`` (a resumed or grown run) keeps its files once they
    describe the very digits drawn now and the labels file matches its sha256; nothing is
    rewritten then, except that a folder written before the ink area file gets it (and
    ``calibration.json`` gets its name and sha256, every other key unchanged). Without
    ``calibration.json`` (never written, or a writer killed before it) every file is written.

    Parameters
    ----------
    folder : RunFolder
    config : TrainConfig
        The run's config (``holdout="shared"``, ``data_fingerprint`` filled in).
    rows : ndarray of int, shape (M,)
        The held-out digits' rows in the training pool (:func:`ensemble_cnn.data.training.shared_holdout`).
    labels : ndarray of int, shape (M,)
        Their labels, 0..9.
    ink_area : ndarray of float, shape (M,), optional
        Their ink areas (:func:`ensemble_cnn.inference.features.ink_area`), each in [0, 1].

    Returns
    -------
    dict
        The content of ``calibration.json``.

    Raises
    ------
    RunFolderError
        The folder's files describe other digits, or the labels file is missing, corrupt
        or differs from its sha256 (one line naming the file); or they cannot be written.
    """
    labels = np.asarray(labels)
    if labels.shape != (len(rows),) or (len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES)):
        raise ValueError(f"labels must be {len(rows)} integers in 0..{N_CLASSES - 1}")
    expected = calibration_record(config, rows=rows, labels=labels)
    record_path, labels_path = folder.path / CALIBRATION_NAME, folder.path / LABELS_NAME
    if os.path.lexists(record_path):
        record = _read_record(record_path)
        differs = [key for key in (*_DRAWN_KEYS, "labels") if record.get(key) != expected[key]]
        if differs:
            raise RunFolderError(f"{shown(record_path)}: describes other calibration digits than this run holds out "
                                 f"(it differs in {', '.join(differs)}); the folder was changed since it was written: "
                                 "train into a new --out")
        _read_labels(folder, record)  # the labels file checked against its sha256
        if "ink_area" in record:
            _read_ink_area(folder, record)
            return record
        if ink_area is None:
            return record
    try:
        if not os.path.lexists(record_path):
            with atomic.atomic_path(labels_path) as tmp:
                np.save(tmp, labels.astype(np.uint8), allow_pickle=False)
                digest = sha256_file(tmp, what="calibration labels", voice=RUN_FILES)
            record = {**expected, "labels_file_sha256": digest}
        if ink_area is not None:
            record = {**record, **_write_ink_area(folder, ink_area, len(rows))}
        atomic.write_json(record_path, record)
    except OSError as exc:
        raise RunFolderError(f"{shown(folder.path)}: cannot write the calibration digits "
                             f"({exc.strerror or exc})") from None
    return record


def read_calibration(folder: RunFolder, records: Sequence[dict[str, Any]], *,
                     config: TrainConfig | None = None) -> CalibrationSet | None:
    """The run's calibration digits: their labels and the given members' probabilities on them, verified.

    Parameters
    ----------
    folder : RunFolder
    records : sequence of dict
        The members' records (e.g. :meth:`RunFolder.records`), in the order wanted.
    config : TrainConfig, optional
        The run's config; ``None``: read from the folder.

    Returns
    -------
    CalibrationSet or None
        ``None`` for a run without calibration digits (``holdout="member"``, every run
        trained before ``--holdout`` existed).

    Raises
    ------
    RunFolderError
        ``calibration.json``, the labels file or a member's calibration probabilities is
        missing, unreadable, differs from its sha256 or does not belong to this run (one
        line naming the file).
    """
    config = config if config is not None else folder.require_config()
    if config.holdout != "shared":
        return None
    record_path = folder.path / CALIBRATION_NAME
    record = _read_record(record_path)
    for key in ("data_fingerprint", "seed", "val_size"):
        if record.get(key) != getattr(config, key):
            raise RunFolderError(f"{shown(record_path)}: not this run's calibration digits ({key} differs from "
                                 f"{folder.config_path.name})")
    labels = _read_labels(folder, record)
    probabilities = [_read_member_probabilities(folder, member, len(labels)) for member in records]
    stacked = np.stack(probabilities) if probabilities else np.empty((0, len(labels), N_CLASSES), np.float32)
    feature_scores = None
    if records and all(member.get("calibration_scores") is not None for member in records):
        columns = np.stack([_read_member_scores(folder, member, len(labels)) for member in records])  # (K, M, 3)
        feature_scores = {name: columns[:, :, j] for j, name in enumerate(FEATURE_SCORE_COLUMNS)}
    ink_area = _read_ink_area(folder, record) if "ink_area" in record else None
    return CalibrationSet(labels=labels, probabilities=stacked, feature_scores=feature_scores, ink_area=ink_area)


def _write_ink_area(folder: RunFolder, ink_area: np.ndarray, count: int) -> dict[str, str]:
    """Write ``calibration_ink_area.npy`` (float32 (count,)); the keys ``calibration.json`` gets for it."""
    values = np.asarray(ink_area, dtype=np.float32)
    if values.shape != (count,) or not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
        raise ValueError(f"ink_area must be {count} shares in [0, 1], got shape {values.shape}")
    with atomic.atomic_path(folder.path / INK_AREA_NAME) as tmp:
        np.save(tmp, values, allow_pickle=False)
        digest = sha256_file(tmp, what="calibration ink areas", voice=RUN_FILES)
    return {"ink_area": INK_AREA_NAME, "ink_area_file_sha256": digest}


def _read_ink_area(folder: RunFolder, record: dict[str, Any]) -> np.ndarray:
    """The ink area file ``record`` names: float32 (count,) in [0, 1], matching its sha256."""
    name, digest = record.get("ink_area"), record.get("ink_area_file_sha256")
    source = folder.path / CALIBRATION_NAME
    if not isinstance(name, str) or not isinstance(digest, str):
        raise RunFolderError(f"{shown(source)}: malformed ink_area or ink_area_file_sha256")
    path = folder.resolve(name, source=source)
    values = _read_hashed_npy(path, digest, shape=(record["count"],), dtype=np.float32,
                              what="calibration ink areas", source=CALIBRATION_NAME)
    if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
        raise RunFolderError(f"{shown(path)}: holds values outside [0, 1]")
    return values


def _read_record(path: Path) -> dict[str, Any]:
    """``calibration.json``, read through the one guarded open; every key it must hold of the right type."""
    if not os.path.lexists(path):
        raise RunFolderError(f"{shown(path)}: missing (a run with --holdout shared keeps its calibration digits "
                             "there; train again to write it)")
    record = read_json(path, what="calibration record", voice=RUN_FILES)
    types = {"count": int, "seed": int, "val_size": int}
    if not isinstance(record, dict) or any(
            not isinstance(record.get(key), types.get(key, str)) or isinstance(record.get(key), bool)
            for key in (*_DRAWN_KEYS, "labels", "labels_file_sha256")):
        raise RunFolderError(f"{shown(path)}: not a calibration record (expected {', '.join(_DRAWN_KEYS)}, labels "
                             "and labels_file_sha256)")
    return record


def _read_labels(folder: RunFolder, record: dict[str, Any]) -> np.ndarray:
    """The labels file ``record`` names: uint8 (count,), matching both its file sha256 and its labels' sha256."""
    path = folder.resolve(record["labels"], source=folder.path / CALIBRATION_NAME)
    count = record["count"]
    labels = _read_hashed_npy(path, record["labels_file_sha256"], shape=(count,), dtype=np.uint8,
                              what="calibration labels", source=CALIBRATION_NAME)
    if sha256_arrays(labels) != record["labels_sha256"] or (count and labels.max() >= N_CLASSES):
        raise RunFolderError(f"{shown(path)}: not the labels {CALIBRATION_NAME} describes")
    return labels


def _read_member_probabilities(folder: RunFolder, record: dict[str, Any], count: int) -> np.ndarray:
    """Member ``record``'s probabilities on the calibration digits: float32 (count, 10), finite, matching its sha256."""
    index = record.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise RunFolderError(f"{shown(folder.path)}: malformed member record (no index)")
    files = folder.files(index)
    name, digest = record.get("calibration"), record.get("calibration_sha256")
    if not isinstance(name, str) or not isinstance(digest, str):
        raise RunFolderError(f"{shown(files.record)}: no calibration probabilities (every member of a run with "
                             f"--holdout shared has {files.calibration.name}); train it again")
    path = folder.resolve(name, source=files.record)
    if path != files.calibration.resolve():
        raise RunFolderError(f"{shown(files.record)}: names {name!r}, expected {files.calibration.name!r}")
    probabilities = _read_hashed_npy(path, digest, shape=(count, N_CLASSES), dtype=np.float32,
                                     what=f"{member_stem(index)} calibration probabilities", source=files.record.name)
    if not np.isfinite(probabilities).all():
        raise RunFolderError(f"{shown(path)}: holds non-finite probabilities")
    return probabilities


def _read_member_scores(folder: RunFolder, record: dict[str, Any], count: int) -> np.ndarray:
    """Member ``record``'s scores past the softmax on the calibration digits: float32 (count, 3), finite, verified."""
    index = record["index"]
    files = folder.files(index)
    name, digest = record.get("calibration_scores"), record.get("calibration_scores_sha256")
    if not isinstance(name, str) or not isinstance(digest, str):
        raise RunFolderError(f"{shown(files.record)}: malformed member record (calibration_scores or "
                             "calibration_scores_sha256)")
    path = folder.resolve(name, source=files.record)
    if path != files.calibration_scores.resolve():
        raise RunFolderError(f"{shown(files.record)}: names {name!r}, expected {files.calibration_scores.name!r}")
    scores = _read_hashed_npy(path, digest, shape=(count, len(FEATURE_SCORE_COLUMNS)), dtype=np.float32,
                              what=f"{member_stem(index)} calibration scores", source=files.record.name)
    if not np.isfinite(scores).all():
        raise RunFolderError(f"{shown(path)}: holds non-finite scores")
    return scores


def _read_hashed_npy(path: Path, digest: str, *, shape: tuple[int, ...], dtype: type, what: str,
                     source: str) -> np.ndarray:
    """A ``.npy`` read once (the one guarded open), its bytes checked against ``digest``, then its header
    (``dtype`` ``shape``) before anything is allocated; ``source`` names the file holding ``digest``."""
    dtype = np.dtype(dtype)
    limit = int(np.prod(shape)) * dtype.itemsize + _NPY_HEADER_ROOM
    data = read_regular(path, limit=limit, what=what, voice=RUN_FILES)
    if hashlib.sha256(data).hexdigest() != digest:
        raise RunFolderError(f"{shown(path)}: sha256 differs from the one in {source} (corrupt or overwritten)")

    def expected(found_shape: tuple[int, ...], found_dtype: np.dtype) -> None:
        if found_shape != shape or found_dtype != dtype:
            raise RunFolderError(f"{shown(path)}: header gives {found_dtype} {found_shape}, expected {dtype} {shape}")

    return read_npy(io.BytesIO(data), available=len(data), path=path, limit=limit, check=expected, voice=RUN_FILES)
