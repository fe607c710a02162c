"""Exporting a run as one model: every member and the vote in a single Keras file or TensorFlow SavedModel.

The exported model carries a small JSON description of what it holds,
:data:`METADATA_NAME` (the run, the vote, the members in it and the members asked for
but left out, with why): an extra entry in the ``.keras`` zip (Keras ignores it when
loading), or ``assets.extra/ensemble_cnn.json`` in a SavedModel folder (where
TensorFlow Serving expects extra files). :func:`read_export_metadata` reads it back.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ensemble_cnn.data.reader import MAX_JSON_BYTES, RUN_FILES, open_regular, parse_json, read_json
from ensemble_cnn.deprecation import renamed_keyword
from ensemble_cnn.inference.ensemble import Ensemble, member_count, refuse_normalized
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.inference.trust import DEFAULT_COVERAGE, DEFAULT_LEVEL, PLAIN_OOD_SCORE
from ensemble_cnn.inference.vote import get_vote
from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.storage.outputs import check_clear_of_inputs, shown
from ensemble_cnn.storage.run_folder import RunFolder, member_stem

__all__ = ["EXPORT_FORMATS", "METADATA_NAME", "export_ensemble", "export_metadata", "read_export_metadata"]

EXPORT_FORMATS = ("keras", "saved_model")
METADATA_NAME = "ensemble_cnn.json"
SAVED_MODEL_EXTRA = "assets.extra"
THRESHOLDS_HOW = ("unsure: output unsure_score > unsure_above, or an empty set; not a digit: output not_a_digit_score "
                  "> not_a_digit_above (for a combined ood_score such as energy+ink_area, not_a_digit_score is "
                  "the largest (score - above) / scale over the ood_components, so a digit is flagged when any of "
                  "its scores is above its own threshold); label set: every label c with "
                  "mean(members[:, :, c], axis=1) >= 1 - set_threshold (null: every label)")
"""How a file user applies the exported thresholds to the model's outputs (in ``ensemble_cnn.json``)."""


def export_metadata(ensemble: Ensemble, *, voting: str, coverage: float = DEFAULT_COVERAGE,
                    level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """What an exported model holds: ``run``, ``vote`` (``voting``), ``members`` (names, in the order of the
    ``members`` output), ``members_asked``, ``left_out`` (``[{"member", "reason"}]``, empty when complete) and
    ``thresholds``: the run's :class:`~ensemble_cnn.inference.trust.Thresholds` at ``coverage`` and ``level``
    (``None`` without calibration digits, and ``trust_note`` says why) with ``how`` (applying them to the
    model's outputs in one sentence)."""
    thresholds, note = None, None
    try:
        thresholds = {**ensemble.thresholds(coverage=coverage, level=level).to_dict(), "how": THRESHOLDS_HOW}
    except RunFolderError as exc:
        note = str(exc).strip().splitlines()[0]
    return {
        "run": None if ensemble.run_dir is None else str(ensemble.run_dir),
        "vote": voting,
        "members": list(ensemble.names_),
        "members_asked": ensemble.members_asked_,
        "left_out": [{"member": member_stem(i), "reason": r} for i, r in sorted(ensemble.left_out_.items())],
        "thresholds": thresholds,
        "trust_note": note,
    }


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The :func:`export_metadata` stored in an exported ``.keras`` file or SavedModel folder.

    Raises
    ------
    ValueError
        ``path`` holds no such description (not exported by ``ensemble-cnn export``).
    """
    path = Path(path)
    try:  # every file through the one guarded open: no FIFO or device, at most MAX_JSON_BYTES of JSON
        if path.is_dir():
            return read_json(path / SAVED_MODEL_EXTRA / METADATA_NAME, what="export metadata", voice=RUN_FILES)
        with open_regular(path, what="exported model", voice=RUN_FILES) as fh, zipfile.ZipFile(fh) as archive:
            info = archive.getinfo(METADATA_NAME)
            if info.file_size > MAX_JSON_BYTES:
                raise ValueError(f"{METADATA_NAME} unpacks to {info.file_size} bytes, over {MAX_JSON_BYTES}")
            with archive.open(info) as member:
                data = member.read(MAX_JSON_BYTES + 1)
            return parse_json(data, path=f"{path} [{METADATA_NAME}]", what="export metadata", voice=RUN_FILES)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{shown(path)}: no {METADATA_NAME} (not exported by ensemble-cnn export: {exc})") from None


@renamed_keyword("vote", "voting")
def export_ensemble(
    run_dir: str | Path,
    out: str | Path,
    *,
    voting: str = "majority",
    fmt: str = "keras",
    members: int | None = None,
    allow_missing: bool = False,
    overwrite: bool = False,
    coverage: float = DEFAULT_COVERAGE,
    level: float = DEFAULT_LEVEL,
) -> Path:
    """Write the run's ensemble (:meth:`Ensemble.to_keras`) to ``out``; return the path.

    What the model holds (members, left-out members) is in :func:`read_export_metadata` of it.

    Parameters
    ----------
    run_dir : path-like
        A trained run folder.
    out : path-like
        ``keras``: a ``.keras`` file that ``keras.saving.load_model(out, safe_mode=True)``
        loads without this package. ``saved_model``: a folder (``Model.export``) that
        ``tf.saved_model.load(out).serve(digits)`` serves (TensorFlow Serving reads it).
        Written to a temporary name beside ``out`` and renamed into place; its folder
        must exist.
    voting : str
        The vote in the model's ``vote`` output (a name in :data:`ensemble_cnn.inference.vote.VOTES`).
        Formerly ``vote``, still accepted with a deprecation warning.
    fmt : {"keras", "saved_model"}
    members : int, optional
        Export only the first ``members`` members (at most the run's count).
    allow_missing : bool, default False
        Export the usable members when some are missing or unusable (they are named
        in the ensemble's ``left_out_`` and in the model's :data:`METADATA_NAME`);
        otherwise that is a :class:`~ensemble_cnn.errors.MissingMembersError`.
    overwrite : bool, default False
        Replace an existing ``out`` (a previous export); otherwise an existing ``out``
        is refused (``FileExistsError``), whatever the format. An ``out`` that is, holds
        or lies inside ``run_dir`` is always refused (:class:`~ensemble_cnn.errors.OutputPathError`).
    coverage, level : float
        The thresholds written into :data:`METADATA_NAME` (:func:`export_metadata`), for the model's
        ``unsure_score`` and ``not_a_digit_score`` outputs.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    get_vote(voting)
    out = Path(out)
    check_clear_of_inputs("out", out, [run_dir])  # replacing out must never delete (nor write into) the run read
    if not overwrite and (out.exists() or out.is_symlink()):
        raise FileExistsError(f"{shown(out)} exists; overwrite=True replaces it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{shown(out.parent)}: no such folder (the folder of {shown(out)} must exist)")
    folder = RunFolder(run_dir)
    config = folder.require_config()
    count = member_count(members, config, folder.path)  # refused before any member is loaded
    refuse_normalized([member_stem(i) for i in range(count)],
                      [config.member_config(i).normalize for i in range(count)], where=f"{shown(folder.path)}: ")
    ensemble = Ensemble.load(run_dir, members=members, voting=voting, allow_missing=allow_missing)
    described = export_metadata(ensemble, voting=voting, coverage=coverage, level=level)
    # the not_a_digit_score output is the score the thresholds were fixed for (energy+ink_area; energy or
    # entropy in older runs)
    fixed = described["thresholds"] or {}
    model = ensemble.to_keras(ood_score=fixed.get("ood_score", PLAIN_OOD_SCORE),
                              ood_components=fixed.get("ood_components"))
    metadata = json.dumps(described, indent=2)
    if fmt == "keras":
        with _atomic.atomic_path(out, suffix=".keras") as tmp:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_NAME, metadata)
        return out
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from None
    try:
        try:
            model.export(os.fspath(staging / "model"), format="tf_saved_model", verbose=False)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from None
        (staging / "model" / SAVED_MODEL_EXTRA).mkdir(exist_ok=True)
        (staging / "model" / SAVED_MODEL_EXTRA / METADATA_NAME).write_text(metadata, encoding="utf-8")
        if out.exists() or out.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{shown(out)} appeared while exporting; not replaced")
            os.replace(out, staging / "previous")  # a folder: renamed aside, removed with the staging folder
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
