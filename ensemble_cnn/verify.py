"""Checking saved members before anyone trusts them: sha256 against the record, safe loading.

Workers (local processes or cluster nodes) write members into the run folder and
return small records; the driver re-checks every member here before evaluating:
the files a record names lie in the run folder, their sha256 matches the record,
and the model loads with Keras ``safe_mode`` (no Python code deserialised).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.hashing import sha256_file
from ensemble_cnn.member import member_files, member_path


def load_member(path: str | Path):
    """Load a saved member with Keras ``safe_mode`` (no deserialised Python code).

    Raises
    ------
    RunFolderError
        One line: the file is missing, unreadable, not a Keras model, or carries
        Python code (e.g. a ``Lambda`` layer) that ``safe_mode`` refuses.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: member model missing")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file; all mean "refused"
        text = str(exc)
        if "safe_mode" in text or "lambda" in text.lower():
            raise RunFolderError(
                f"{path}: refused: it carries Python code (e.g. a Lambda layer), unsafe to load"
            ) from None
        raise RunFolderError(f"{path}: not a loadable Keras model ({_first_line(exc)})") from None


def verify_member(run_dir: str | Path, record: dict[str, Any], *, load: bool = True) -> None:
    """Check one member's files against its record; raise :class:`RunFolderError` if anything is off.

    Parameters
    ----------
    run_dir : path-like
        The run folder.
    record : dict
        The member's record, as a worker returned it or as read from ``member_XX.json``.
    load : bool, default True
        Also load the model with ``safe_mode`` (imports TensorFlow).
    """
    run_dir = Path(run_dir)
    try:
        index = int(record["index"])
        own = member_files(run_dir, index)
        for key in ("model", "probabilities"):
            path = member_path(run_dir, record[key], source=own["record"])
            if path != own[key].resolve():
                raise RunFolderError(f"{own['record']}: names {record[key]!r}, expected {own[key].name!r}")
            if not path.is_file():
                raise RunFolderError(f"{path}: missing")
            if sha256_file(path) != record[f"{key}_sha256"]:
                raise RunFolderError(f"{path}: sha256 differs from its record (corrupt or overwritten)")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RunFolderError):
            raise
        raise RunFolderError(f"{run_dir}: malformed member record ({_first_line(exc)})") from None
    if load:
        load_member(own["model"])


def verify_members(
    run_dir: str | Path, records: Iterable[dict[str, Any]], *, load: bool = True
) -> dict[int, str]:
    """Check every member (see :func:`verify_member`); return the failures.

    Returns
    -------
    dict of int to str
        Member index to the one-line reason, for the members that failed; empty when
        all are sound.
    """
    failures = {}
    for record in records:
        try:
            verify_member(run_dir, record, load=load)
        except RunFolderError as exc:
            failures[int(record.get("index", -1))] = str(exc)
    return failures


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
