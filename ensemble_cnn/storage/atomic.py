"""Atomic file writes: write to a temporary file in the target folder, then rename.

A reader never sees a half-written artifact: either the old file (or none) or the
complete new one.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# ``.<target name>.<random>.tmp<suffix>``: what :func:`atomic_path` creates (mkstemp adds 8 characters).
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent folder must exist.
    suffix : str, optional
        Suffix of the temporary file (some writers, e.g. ``np.savez`` or Keras,
        insist on a file extension). Defaults to the suffix of ``path``.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        tmp = _create_temporary(path.parent, f".{path.name}.", f".tmp{suffix}")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename in (None, str(tmp), tmp):
            # Name the file being written (a disk-full error must not name a temporary file).
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Several files written as one: temporary paths for all; all renamed into place only if the block succeeds.

    On an exception every temporary file is removed and every target is left as it
    was (the renames at the end are the only step that touches the targets).
    """
    temporaries: list[Path] = []
    try:
        for path in paths:
            path = Path(path)
            try:
                temporaries.append(_create_temporary(path.parent, f".{path.name}.", f".tmp{path.suffix}"))
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        yield list(temporaries)
        for tmp, path in zip(temporaries, paths):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise


def is_temporary(path: str | os.PathLike) -> bool:
    """True for a temporary file :func:`atomic_path` creates (left behind only by a killed writer)."""
    return bool(_TEMPORARY.match(Path(path).name))


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files killed writers left in ``folder``; return what was removed.

    Call only when no other writer works in ``folder`` (e.g. when a run starts):
    a live writer's temporary file would be removed under it.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if is_temporary(path) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _create_temporary(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new, empty file ``<prefix><8 random characters><suffix>`` in ``folder``.

    Unlike ``tempfile.mkstemp`` (mode 0600), the file is created with mode 0666 and
    the process umask applied by the kernel, so the renamed artifact gets the usual
    permissions without reading (and briefly changing) the process-wide umask.
    """
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{folder}: could not create a temporary file {prefix}XXXXXXXX{suffix}")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` at ``path`` atomically and reproducibly.

    Unlike ``np.savez``, which stamps each member with the current time, every zip
    entry gets a fixed timestamp, so equal arrays give byte-identical files (and an
    equal sha256). The file reads back with ``np.load(path, allow_pickle=False)``.
    """
    with atomic_path(path, suffix=".npz") as tmp:
        write_npz_file(tmp, **arrays)


def write_npz_file(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """The body of :func:`write_npz`, writing straight to ``path`` (a temporary file of the caller's)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
