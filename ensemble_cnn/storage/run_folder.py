"""The run folder: its layout, its config, its members' records and files, resume and verification.

Everything that reads or writes a run folder goes through :class:`RunFolder`:

```
config.json               the run's settings (TrainConfig); its identity decides who may write here
.ensemble-cnn.lock        present while a train/run writes the folder (pid, host, start)
member_XX.keras           member XX (plain keras.saving.load_model)
member_XX_test_proba.npy  its test-set probabilities, float32 (N, 10)
member_XX_history.json    its per-epoch curves
member_XX.json            its record, written LAST: present and matching its files' sha256 = complete
```

A member is *complete* when its record is a JSON object for that index naming the
member's own files with their sha256, and the files match. :meth:`RunFolder.scan`
hashes each member's files once; :meth:`RunFolder.verify` checks what a worker
returned (sha256, then a Keras ``safe_mode`` load) before anyone trusts it.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.errors import RunFolderBusy, RunFolderError
from ensemble_cnn.storage.hashing import sha256_file
from ensemble_cnn.storage.outputs import check_run_folder_target, shown

__all__ = ["CONFIG_NAME", "LOCK_NAME", "MemberFiles", "MemberStatus", "RunFolder", "member_stem"]

CONFIG_NAME = "config.json"
LOCK_NAME = ".ensemble-cnn.lock"  # held by the one train/run writing the folder
_HELD: dict[Path, int] = {}  # run folders this process holds the lock of (nested holds are counted)
# The files a member owns; their sha256 are in the record.
HASHED_FILES = ("model", "probabilities")


def member_stem(index: int) -> str:
    """``member_07`` for index 7."""
    return f"member_{index:02d}"


@dataclass(frozen=True)
class MemberFiles:
    """The paths of one member's files in the run folder."""

    model: Path
    probabilities: Path
    history: Path
    record: Path

    def of(self, key: str) -> Path:
        return getattr(self, key)


@dataclass(frozen=True)
class MemberStatus:
    """What the folder holds for one member index.

    Attributes
    ----------
    index : int
    record : dict or None
        The record, when the member is complete (files present and matching).
    problem : str or None
        Why a member that has a record is not complete (a file missing, a sha256
        that differs, a malformed record); ``None`` when complete or never written.
    """

    index: int
    record: dict[str, Any] | None
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.record is not None


class RunFolder:
    """One run folder on disk.

    Parameters
    ----------
    path : path-like
        The folder (it need not exist yet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    def files(self, index: int) -> MemberFiles:
        """The files member ``index`` owns."""
        stem = member_stem(index)
        return MemberFiles(
            model=self.path / f"{stem}.keras",
            probabilities=self.path / f"{stem}_test_proba.npy",
            history=self.path / f"{stem}_history.json",
            record=self.path / f"{stem}.json",
        )

    def resolve(self, name: str, *, source: str | Path | None = None) -> Path:
        """Resolve a file name read from the run's JSON, refusing anything outside the folder.

        ``name`` must resolve (symbolic links followed) to a file directly in the
        folder; ``source`` names the JSON file it came from, for the error message.
        """
        root = self.path.resolve()
        path = (root / name).resolve()
        if path.parent != root:
            where = source if source is not None else self.path
            raise RunFolderError(f"{where}: member file {name!r} points outside the run folder; refused")
        return path

    # ------------------------------------------------------------------ config
    def read_config(self) -> TrainConfig | None:
        """The folder's config, ``None`` when it has none; :class:`RunFolderError` when it is unreadable."""
        if not self.config_path.exists():
            return None
        try:
            return TrainConfig.load(self.config_path)
        except ValueError as exc:
            raise RunFolderError(str(exc).splitlines()[0]) from None

    def require_config(self) -> TrainConfig:
        """The folder's config; :class:`RunFolderError` when this is not a run folder."""
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path}: not a folder")
        config = self.read_config()
        if config is None:
            raise RunFolderError(f"{self.path}: no {CONFIG_NAME} (not a run folder written by ensemble-cnn train)")
        return config

    def check_compatible(self, config: TrainConfig) -> TrainConfig | None:
        """Check the folder may hold ``config``'s run; write nothing. Returns the folder's config (or ``None``).

        Raises
        ------
        RunFolderError
            The path is a file, or the folder holds a run whose identity differs
            (the message names every field that differs).
        """
        is_run = self.path.is_dir() and self.config_path.exists()
        check_run_folder_target(self.path, foreign=() if is_run or not self.path.is_dir() else self._foreign_files())
        existing = self.read_config()
        if existing is not None:
            differences = config.identity_differences(existing)
            if differences:
                raise RunFolderError(
                    f"{self.path}: holds a different run (it differs in {'; '.join(differences)}); "
                    "choose another --out or delete the folder"
                )
        return existing

    def _foreign_files(self) -> list[str]:
        """Files in the folder that are neither the lock nor a killed writer's temporary file."""
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK_NAME and not _atomic.is_temporary(p))

    # ------------------------------------------------------------------ lock
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def holder(self) -> dict[str, Any] | None:
        """Who else holds the folder's lock (``pid``, ``host``, ``started``); ``None`` when nobody alive, or we, do."""
        if _HELD.get(self.path.resolve()):
            return None
        info = _read_lock(self.lock_path)
        if info is None or not _alive(info):
            return None
        return info

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one writer (a ``train``/``run``) for the block; create the folder if needed.

        A second writer stops at once with :class:`RunFolderBusy` naming the holder
        (pid, host, start time). The lock of a process that died (same host, pid
        gone) is taken over. Re-entrant within a process (``run`` holds it around
        training and evaluation; training takes it again).
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{shown(self.path)}: cannot write the run folder ({exc.strerror or exc})") from None
        key = self.path.resolve()
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        token = secrets.token_hex(8)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "token": token}
        for _ in range(5):
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_lock(self.lock_path)
                if holder is not None and _alive(holder):
                    where = "this machine" if holder.get("host") == socket.gethostname() else f"host {holder.get('host')}"
                    raise RunFolderBusy(
                        f"{shown(self.path)}: in use by another train/run (pid {holder.get('pid')} on {where}, "
                        f"since {holder.get('started')}); wait for it to finish"
                        + ("" if where == "this machine" else f", or delete {LOCK_NAME} if it is gone")
                    ) from None
                _take_over(self.lock_path, token)  # the holder died: its lock is stale
                continue
            except OSError as exc:
                raise RunFolderError(f"{shown(self.path)}: cannot lock the run folder ({exc.strerror or exc})") from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(info, fh)
            break
        else:
            raise RunFolderBusy(f"{shown(self.path)}: could not take the run folder's lock; try again")
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            if (_read_lock(self.lock_path) or {}).get("token") == token:
                self.lock_path.unlink(missing_ok=True)

    def claim(self, config: TrainConfig) -> TrainConfig:
        """Create the folder, remove temporaries of killed writers, write the config; return what was written.

        A run that grows keeps the larger member count: the folder's ``members`` is
        the most ever asked for (the members beyond a smaller request stay and are
        kept). Call :meth:`check_compatible` first.
        """
        existing = self.read_config()
        if existing is not None and existing.members > config.members:
            from dataclasses import replace

            config = replace(config, members=existing.members)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic.remove_temporaries(self.path)
            _atomic.write_json(self.config_path, config.to_dict())
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot write the run folder ({exc.strerror or exc})") from None
        return config

    # ------------------------------------------------------------------ members
    def status(self, index: int) -> MemberStatus:
        """Read member ``index``'s record and check its files' sha256 (each file hashed once).

        Stray temporary files of a killed writer are never looked at.

        Raises
        ------
        RunFolderError
            The record names a file outside the run folder (a tampered run folder).
        """
        files = self.files(index)
        try:
            text = files.record.read_text(encoding="utf-8")
        except FileNotFoundError:
            return MemberStatus(index, None)
        except OSError as exc:
            return MemberStatus(index, None, f"{files.record}: unreadable ({exc.strerror or exc})")
        try:
            record = json.loads(text)
        except ValueError:
            return MemberStatus(index, None, f"{files.record}: not valid JSON")
        if not isinstance(record, dict) or record.get("index") != index:
            return MemberStatus(index, None, f"{files.record}: not the record of member {index}")
        problem = self._check_files(record, files, hash_files=True)
        return MemberStatus(index, None if problem else record, problem)

    def scan(self, indices: Iterable[int]) -> dict[int, MemberStatus]:
        """:meth:`status` of every index."""
        return {index: self.status(index) for index in indices}

    def records(self, count: int) -> list[dict[str, Any]]:
        """The records of the complete members among indices ``0 .. count - 1``, by index."""
        return [s.record for s in self.scan(range(count)).values() if s.record is not None]

    def write_member(
        self,
        index: int,
        *,
        save_model: Callable[[Path], None],
        probabilities: np.ndarray,
        history: dict[str, list[float]],
        details: dict[str, Any],
    ) -> dict[str, Any]:
        """Write member ``index``'s files atomically, its record last; return the record.

        Parameters
        ----------
        save_model : callable
            Writes the Keras model to the path it is given (a temporary ``.keras``).
        probabilities : ndarray of float32, shape (N, 10)
            The member's test-set probabilities.
        history : dict of str to list of float
            Per-epoch curves.
        details : dict
            Further record fields (seed, epochs, accuracies, timings, ...).
        """
        files = self.files(index)
        with _atomic.atomic_path(files.model, suffix=".keras") as tmp:
            save_model(tmp)
        with _atomic.atomic_path(files.probabilities, suffix=".npy") as tmp:
            np.save(tmp, np.asarray(probabilities, dtype=np.float32))
        _atomic.write_json(files.history, {key: [float(v) for v in values] for key, values in history.items()})
        record = {
            "index": index,
            "model": files.model.name,
            "model_sha256": sha256_file(files.model),
            "probabilities": files.probabilities.name,
            "probabilities_sha256": sha256_file(files.probabilities),
            "history": files.history.name,
            **details,
        }
        _atomic.write_json(files.record, record)
        return record

    def forget(self, index: int) -> None:
        """Remove member ``index``'s record, so the next run trains it again (its files are overwritten then)."""
        self.files(index).record.unlink(missing_ok=True)

    # ------------------------------------------------------------------ verification
    def verify(self, record: dict[str, Any], *, hash_files: bool = True,
               load: Callable[[Path], Any] | None = None) -> None:
        """Check one member against a record (e.g. what a worker returned); raise :class:`RunFolderError`.

        Parameters
        ----------
        record : dict
            The member's record.
        hash_files : bool, default True
            Compare the files' sha256 with the record (skip it for a record
            :meth:`status` has just checked).
        load : callable, optional
            Also load the model with it (e.g. :func:`ensemble_cnn.models.load_member`,
            Keras ``safe_mode``); it raises :class:`RunFolderError` for a bad file.
            Storage itself never imports TensorFlow.
        """
        try:
            index = int(record["index"])
        except (KeyError, TypeError, ValueError):
            raise RunFolderError(f"{self.path}: malformed member record (no index)") from None
        files = self.files(index)
        problem = self._check_files(record, files, hash_files=hash_files)
        if problem:
            raise RunFolderError(problem)
        if load is not None:
            load(files.model)

    def verify_all(
        self, records: Iterable[dict[str, Any]], *, hashed: Iterable[int] = (),
        load: Callable[[Path], Any] | None = None,
    ) -> dict[int, str]:
        """:meth:`verify` every record; the indices in ``hashed`` are not hashed again. Returns the failures."""
        hashed = set(hashed)
        failures = {}
        for record in records:
            index = int(record.get("index", -1))
            try:
                self.verify(record, hash_files=index not in hashed, load=load)
            except RunFolderError as exc:
                failures[index] = str(exc)
        return failures

    def _check_files(self, record: dict[str, Any], files: MemberFiles, *, hash_files: bool) -> str | None:
        """Why the record does not describe the member's own, intact files (``None`` when it does)."""
        for key in HASHED_FILES:
            name, digest = record.get(key), record.get(f"{key}_sha256")
            if not isinstance(name, str) or not isinstance(digest, str):
                return f"{files.record}: malformed member record (no {key} or {key}_sha256)"
            path = self.resolve(name, source=files.record)
            if path != files.of(key).resolve():
                return f"{files.record}: names {name!r}, expected {files.of(key).name!r}"
            if not path.is_file():
                return f"{path}: missing"
            if hash_files:
                try:
                    if sha256_file(path) != digest:
                        return f"{path}: sha256 differs from its record (corrupt or overwritten)"
                except OSError as exc:
                    return f"{path}: unreadable ({exc.strerror or exc})"
        return None


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's JSON, ``None`` when there is none; a lock being written (empty) counts as held just now."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {"pid": None, "host": None, "started": "unknown"}
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        # Written by the open+write of another process this very moment, or garbage: young = held.
        try:
            young = time.time() - path.stat().st_mtime < 10
        except OSError:
            return None
        return {"pid": None, "host": None, "started": "just now", "young": young}
    return info


def _alive(info: dict[str, Any]) -> bool:
    """True unless the lock's process is known to be gone (same host, no such pid; or an old unreadable lock)."""
    if "young" in info:
        return bool(info["young"])
    if info.get("host") != socket.gethostname():
        return True  # another machine: cannot tell
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _take_over(path: Path, token: str) -> None:
    """Remove a stale lock so that exactly one contender can create a new one (rename is atomic)."""
    stale = path.with_name(f"{path.name}.stale-{token}")
    try:
        os.rename(path, stale)
    except FileNotFoundError:
        return  # another contender took it over first
    stale.unlink(missing_ok=True)
