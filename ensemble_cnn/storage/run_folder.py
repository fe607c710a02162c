"""The run folder: its layout, its config, its members' records and files, resume and verification.

Everything that reads or writes a run folder goes through :class:`RunFolder`:

```
config.json               the run's settings (TrainConfig); its identity decides who may write here
.ensemble-cnn.lock        the writers' lock file: a train/run holds a flock on it and on the folder (its pid,
                          host and start in it)
member_XX.keras           member XX (plain keras.saving.load_model)
member_XX_test_proba.npy  its test-set probabilities, float32 (N, 10)
member_XX_history.json    its per-epoch curves
member_XX_calibration_proba.npy  its probabilities on the run's calibration digits, float32 (M, 10)
                          (only in a run with holdout shared; see ensemble_cnn.storage.calibration)
member_XX_gaussian.npz    its class-conditional Gaussian of its penultimate features (means, precision;
                          runs trained since the scores past the softmax; ensemble_cnn.inference.features)
member_XX_calibration_scores.npy  its scores past the softmax on the calibration digits, float32 (M, 3)
member_XX.json            its record, written LAST: present and matching its files' sha256 = complete
calibration.json, calibration_labels.npy   the calibration digits (holdout shared; ensemble_cnn.storage.calibration)
```

A member is *complete* when its record is a JSON object for that index naming the
member's own files with their sha256, and the files match. :meth:`RunFolder.scan`
hashes each member's files once; :meth:`RunFolder.verify` checks what a worker
returned (sha256, then a Keras ``safe_mode`` load) before anyone trusts it.
Which members a folder holds is read from one listing of it (its ``member_XX.json``
records), never by looking for every index that could exist.

One ``train``/``run`` writes a folder at a time: it holds an exclusive ``flock`` on the
folder itself (a read-only descriptor of it) and one on ``.ensemble-cnn.lock`` (the kernel
frees both when the process ends, however it ends), and writes its pid, host and start
time into the file for the "in use by" message of the next writer and for ``evaluate``.
The folder's lock is what deleting the lock file cannot free (a new writer would lock a
new file); the file's lock is what holds across machines on NFS, whose clients lock
folders only locally. The file is never removed (removing it as the lock is let go would
let a waiting writer and a new one lock two different files).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.config import MAX_MEMBERS, TrainConfig
from ensemble_cnn.data.reader import RUN_FILES, read_json
from ensemble_cnn.errors import RunFolderBusy, RunFolderError
from ensemble_cnn.storage.hashing import sha256_file
from ensemble_cnn.storage.outputs import check_run_folder_target, shown

__all__ = ["CONFIG_NAME", "LOCK_NAME", "TEACHER_NAME", "MemberFiles", "MemberStatus", "RunFolder", "member_stem"]

CONFIG_NAME = "config.json"
# A distilled run's targets (ensemble_cnn.training.teacher): its teacher's probabilities on the training digits.
TEACHER_NAME = "teacher_train_proba.npy"
LOCK_NAME = ".ensemble-cnn.lock"  # held by the one train/run writing the folder
_HELD: dict[Path, int] = {}  # run folders this process holds the lock of (nested holds are counted)
# A writer that finds the lock taken looks again for this long before calling the folder busy: an
# ``evaluate`` testing the lock holds it (shared) for an instant, and must not turn a writer away.
BUSY_GRACE_SECONDS = 0.25
RECORD_NAME = re.compile(r"member_(\d+)\.json")
# The files a member owns; their sha256 are in the record.
HASHED_FILES = ("model", "probabilities", "calibration", "gaussian", "calibration_scores")
# The hashed files a member has only in some runs (calibration, calibration_scores: holdout shared; gaussian: runs
# trained since the scores past the softmax); a record without them is complete.
OPTIONAL_HASHED_FILES = ("calibration", "gaussian", "calibration_scores")


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

    @property
    def calibration(self) -> Path:
        """Its probabilities on the run's calibration digits, float32 (M, 10) (a run with holdout shared only)."""
        return self.record.with_name(f"{self.record.stem}_calibration_proba.npy")

    @property
    def gaussian(self) -> Path:
        """Its class-conditional Gaussian of its penultimate features: an .npz of float32 ``means`` (10, D),
        ``precision`` (D, D), ``background_mean`` (D,), ``background_precision`` (D, D)
        (see :mod:`ensemble_cnn.inference.features`)."""
        return self.record.with_name(f"{self.record.stem}_gaussian.npz")

    @property
    def calibration_scores(self) -> Path:
        """Its scores past the softmax on the run's calibration digits, float32 (M, 3): mahalanobis,
        relative_mahalanobis, energy (a run with holdout shared only)."""
        return self.record.with_name(f"{self.record.stem}_calibration_scores.npy")

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

    @property
    def teacher_path(self) -> Path:
        """Where a distilled run keeps its teacher's probabilities on its training digits (float32 (N, 10))."""
        return self.path / TEACHER_NAME

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
        """Who else holds the folder's lock (``pid``, ``host``, ``started``); ``None`` when nobody, or we, do.

        Tests the kernel locks themselves (a shared, non-blocking ``flock`` on the folder,
        then on the lock file, each let go at once): the lock file a killed writer left is
        free, and a held folder whose lock file was deleted is still held (``pid`` ``None``).
        """
        if _HELD.get(self.path.resolve()):
            return None  # (never open our own lock file: where flock is emulated by POSIX locks, closing drops them)
        try:
            folder_fd = _open_folder(self.path)
        except OSError:
            return None  # no folder: nobody holds it
        try:
            if _held_by_another(folder_fd):
                return self._holder_note()
        finally:
            os.close(folder_fd)
        try:  # the lock file's lock: what a writer on another machine holds on a shared file system
            fd = _open_lock(self.lock_path, os.O_RDONLY)
        except (OSError, RunFolderError):
            return None
        try:
            return _lock_info(fd) if _held_by_another(fd) else None
        finally:
            os.close(fd)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one writer (a ``train``/``run``) for the block; create the folder if needed.

        The lock is two exclusive kernel locks (``flock``): one on the folder itself, which
        deleting :data:`LOCK_NAME` cannot free, and one on :data:`LOCK_NAME`, which holds
        across machines on a shared file system (where a folder's lock is only local). A
        second writer stops at once with a one-line :class:`RunFolderBusy` naming the holder
        (pid, host, start time, from the lock file) and the lock file; the locks of a process
        that died, however it died, are free. Re-entrant within a process (``run`` holds it
        around training and evaluation; training takes it again).

        Raises
        ------
        RunFolderBusy
            Another process holds the lock.
        RunFolderError
            The folder or its lock file cannot be created, or the file system refuses locks.
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
        folder_fd, fd = self._acquire()
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            _release(fd, folder_fd)

    def _acquire(self) -> tuple[int | None, int]:
        """Take the folder's lock, then the lock file's, and write who holds them; return the two locked descriptors.

        The folder's descriptor is ``None`` on a file system that locks no folders (the
        lock file's lock alone then keeps a second writer out).
        """
        deadline = time.monotonic() + BUSY_GRACE_SECONDS
        for _ in range(1000):  # each turn waits 10 ms, or finds the folder or its lock file replaced
            try:
                folder_fd = _open_folder(self.path)
            except OSError as exc:
                raise RunFolderError(f"{shown(self.path)}: cannot open the run folder "
                                     f"({exc.strerror or exc})") from None
            try:
                taken = _take(folder_fd, self.path)
            except OSError:
                taken, folder_fd = True, None  # a file system that locks no folders: the lock file's lock alone
            if not taken:
                if taken is False:
                    self._wait_or_busy(deadline)
                continue  # (None: the folder was replaced after we opened it: lock the one now at the path)
            try:
                fd = _open_lock(self.lock_path, os.O_RDWR | os.O_CREAT)
            except OSError as exc:
                _release(None, folder_fd)
                raise RunFolderError(f"{shown(self.lock_path)}: cannot create the run folder's lock "
                                     f"({exc.strerror or exc})") from None
            except RunFolderError:
                _release(None, folder_fd)
                raise
            try:
                taken = _take(fd, self.lock_path)
            except OSError as exc:
                _release(None, folder_fd)
                raise RunFolderError(f"{shown(self.lock_path)}: cannot lock the run folder ({exc.strerror or exc}; "
                                     "a file system without file locks?)") from None
            if not taken:
                _release(None, folder_fd)
                if taken is False:
                    self._wait_or_busy(deadline)
                continue  # (None: someone deleted the file after we opened it: lock the one now at the path)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
            except OSError:
                pass  # the lock holds without its note; a second writer is told less about us
            return folder_fd, fd
        raise RunFolderBusy(f"{shown(self.path)}: could not take the run folder's lock "
                            f"(it or {shown(self.lock_path)} keeps changing); try again")

    def _wait_or_busy(self, deadline: float) -> None:
        """Another process holds a lock: wait 10 ms before the next try, or, past ``deadline``, raise RunFolderBusy."""
        if time.monotonic() >= deadline:
            raise RunFolderBusy(self._busy_message(self._holder_note()))
        time.sleep(0.01)

    def _holder_note(self) -> dict[str, Any]:
        """What the holder wrote into the lock file (``pid`` ``None`` when it is empty, missing or not a lock file)."""
        try:
            fd = _open_lock(self.lock_path, os.O_RDONLY)
        except (OSError, RunFolderError):
            return {"pid": None, "host": None, "started": None}
        try:
            return _lock_info(fd)
        finally:
            os.close(fd)

    def _busy_message(self, info: dict[str, Any]) -> str:
        """The one line a second writer gets: who holds the lock, and how to tell whether it still runs."""
        pid, host = info.get("pid"), info.get("host")
        lock_file = shown(self.lock_path)
        if pid is None and not os.path.lexists(self.lock_path):
            return (f"{shown(self.path)}: in use by another train/run (it holds the lock on the folder; {lock_file}, "
                    "which names it, was deleted); wait for it to finish")
        if pid is None:
            return (f"{shown(self.path)}: in use by another train/run that has just started (it holds "
                    f"{lock_file}); wait for it to finish")
        if host == socket.gethostname():
            return (f"{shown(self.path)}: in use by another train/run (pid {pid} on this machine, since "
                    f"{info.get('started')}); wait for it to finish (it holds the lock on {lock_file})")
        return (f"{shown(self.path)}: in use by another train/run (pid {pid} on host {host}, since "
                f"{info.get('started')}); wait for it to finish (it holds the lock on {lock_file}; "
                f"`ps -p {pid}` on {host} tells whether it still runs)")

    def claim(self, config: TrainConfig) -> TrainConfig:
        """Create the folder, remove temporaries of killed writers, write the config; return what was written.

        A run that grows keeps the larger member count: the folder's ``members`` (and
        member plan) is the most ever asked for (the members beyond a smaller request
        stay and are kept). Call :meth:`check_compatible` first.
        """
        existing = self.read_config()
        if existing is not None and (existing.members > config.members
                                     or (existing.members == config.members and config.plan is None)):
            from dataclasses import replace

            config = replace(config, members=existing.members, plan=existing.plan)
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
        if not files.record.exists():
            return MemberStatus(index, None)
        try:  # the one guarded read: a FIFO, a device, a huge or deeply nested file is a problem, never a hang
            record = read_json(files.record, what="member record", voice=RUN_FILES)
        except RunFolderError as exc:
            return MemberStatus(index, None, str(exc))
        if not isinstance(record, dict) or record.get("index") != index:
            return MemberStatus(index, None, f"{files.record}: not the record of member {index}")
        problem = self._check_files(record, files, hash_files=True)
        return MemberStatus(index, None if problem else record, problem)

    def recorded(self) -> set[int] | None:
        """The member indices whose record (``member_XX.json``) the folder holds, from one listing of it.

        An empty set when the folder does not exist; ``None`` when it cannot be listed
        (then each member's record must be looked for by its name).
        """
        try:
            names = os.listdir(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return set()
        except OSError:
            return None
        indices = set()
        for name in names:
            match = RECORD_NAME.fullmatch(name)
            if match and name == self.files(int(match[1])).record.name:  # member_07.json, not member_007.json
                indices.add(int(match[1]))
        return indices

    def scan(self, indices: Iterable[int]) -> dict[int, MemberStatus]:
        """:meth:`status` of every index; an index without a record is incomplete without a look at the disk."""
        return self._scan(indices, self.recorded())

    def records(self, count: int) -> list[dict[str, Any]]:
        """The records of the complete members among indices ``0 .. count - 1``, by index."""
        present = self.recorded()
        indices = range(min(count, MAX_MEMBERS)) if present is None else sorted(i for i in present if i < count)
        return [s.record for s in self._scan(indices, present).values() if s.record is not None]

    def _scan(self, indices: Iterable[int], present: set[int] | None) -> dict[int, MemberStatus]:
        """:meth:`status` of the indices in ``present`` (all when ``None``); the others are never written."""
        return {index: self.status(index) if present is None or index in present else MemberStatus(index, None)
                for index in indices}

    def write_member(
        self,
        index: int,
        *,
        save_model: Callable[[Path], None],
        probabilities: np.ndarray,
        history: dict[str, list[float]],
        details: dict[str, Any],
        calibration: np.ndarray | None = None,
        gaussian: dict[str, np.ndarray] | None = None,
        calibration_scores: np.ndarray | None = None,
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
        calibration : ndarray of float32, shape (M, 10), optional
            The member's probabilities on the run's calibration digits (a run with holdout
            shared): written to :attr:`MemberFiles.calibration`, its sha256 in the record.
        gaussian : dict of str to ndarray, optional
            The member's class-conditional Gaussian (float32 arrays by name,
            :func:`ensemble_cnn.inference.features.gaussian_arrays`): written to
            :attr:`MemberFiles.gaussian` (an uncompressed .npz), its sha256 in the record.
        calibration_scores : ndarray of float32, shape (M, 3), optional
            The member's scores past the softmax (mahalanobis, relative_mahalanobis, energy) on the run's calibration
            digits: written to :attr:`MemberFiles.calibration_scores`, its sha256 in the record.
        """
        files = self.files(index)
        with _atomic.atomic_path(files.model, suffix=".keras") as tmp:
            save_model(tmp)
        with _atomic.atomic_path(files.probabilities, suffix=".npy") as tmp:
            np.save(tmp, np.asarray(probabilities, dtype=np.float32))
        optional = {}  # the optional hashed files' names and sha256
        if calibration is not None:
            with _atomic.atomic_path(files.calibration, suffix=".npy") as tmp:
                np.save(tmp, np.asarray(calibration, dtype=np.float32))
            optional = {"calibration": files.calibration.name, "calibration_sha256": sha256_file(
                files.calibration, what="member calibration probabilities", voice=RUN_FILES)}
        if gaussian is not None:
            with _atomic.atomic_path(files.gaussian, suffix=".npz") as tmp:
                with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a path
                    np.savez(fh, **{key: np.asarray(value, dtype=np.float32) for key, value in gaussian.items()})
            optional["gaussian"] = files.gaussian.name
            optional["gaussian_sha256"] = sha256_file(files.gaussian, what="member Gaussian", voice=RUN_FILES)
        if calibration_scores is not None:
            with _atomic.atomic_path(files.calibration_scores, suffix=".npy") as tmp:
                np.save(tmp, np.asarray(calibration_scores, dtype=np.float32))
            optional["calibration_scores"] = files.calibration_scores.name
            optional["calibration_scores_sha256"] = sha256_file(
                files.calibration_scores, what="member calibration scores", voice=RUN_FILES)
        _atomic.write_json(files.history, {key: [float(v) for v in values] for key, values in history.items()})
        record = {
            "index": index,
            "model": files.model.name,
            "model_sha256": sha256_file(files.model, what="member model", voice=RUN_FILES),
            "probabilities": files.probabilities.name,
            "probabilities_sha256": sha256_file(files.probabilities, what="member probabilities", voice=RUN_FILES),
            "history": files.history.name,
            **optional,
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
            if key in OPTIONAL_HASHED_FILES and name is None and digest is None:
                continue  # a member without this file (a run with holdout member; read_calibration asks for it)
            if not isinstance(name, str) or not isinstance(digest, str):
                return f"{files.record}: malformed member record (no {key} or {key}_sha256)"
            path = self.resolve(name, source=files.record)
            if path != files.of(key).resolve():
                return f"{files.record}: names {name!r}, expected {files.of(key).name!r}"
            if not path.is_file():
                return f"{path}: missing"
            if hash_files:
                try:
                    if sha256_file(path, what=f"member {key}", voice=RUN_FILES) != digest:
                        return f"{path}: sha256 differs from its record (corrupt or overwritten)"
                except RunFolderError as exc:
                    return str(exc)
                except OSError as exc:
                    return f"{path}: unreadable ({exc.strerror or exc})"
        return None


def _lock_info(fd: int) -> dict[str, Any]:
    """What the lock's holder wrote into the lock file (pid, host, started); ``pid`` ``None`` when not yet written."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        info = None
    return info if isinstance(info, dict) else {"pid": None, "host": None, "started": None}


def _open_lock(path: Path, flags: int) -> int:
    """Open the lock file: never through a symbolic link, never a special file or a file with other names.

    Raises
    ------
    RunFolderError
        Something else has the lock file's name (the lock file is truncated: it must be ours alone).
    OSError
        It cannot be opened.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        fd = None
    if fd is not None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return fd
        os.close(fd)
    raise RunFolderError(f"{shown(path)}: not a lock file (a symbolic link, a special file or a file with other "
                         "names); remove it")


def _open_folder(path: Path) -> int:
    """A read-only descriptor of the folder ``path``, to lock (raises OSError when it cannot be opened)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _take(fd: int, path: Path) -> bool | None:
    """Lock ``fd`` exclusively without waiting: True when locked and ``path`` still names it.

    False when another process holds the lock, ``None`` when ``path`` now names another
    file (deleted or replaced since it was opened); ``fd`` is then closed.

    Raises
    ------
    OSError
        The file system refuses the lock (``fd`` is closed).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError:
        os.close(fd)
        raise
    if not _names(path, fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return None
    return True


def _held_by_another(fd: int) -> bool:
    """True when another process holds an exclusive lock on ``fd`` (tested with a shared lock, let go at once)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system without locks: nobody can be told apart
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _names(path: Path, fd: int) -> bool:
    """True when ``path`` is the file or folder open as ``fd`` (same device and inode)."""
    try:
        on_disk, opened = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _release(lock_file_fd: int | None, folder_fd: int | None) -> None:
    """Empty the lock file, let go of its lock, then of the folder's (explicitly: a forked child sharing a
    descriptor must not keep them); either descriptor may be ``None``."""
    if lock_file_fd is not None:
        try:
            os.ftruncate(lock_file_fd, 0)  # nobody named in a lock file nobody holds
        except OSError:
            pass
        try:
            fcntl.flock(lock_file_fd, fcntl.LOCK_UN)
        finally:
            os.close(lock_file_fd)
    if folder_fd is not None:
        try:
            fcntl.flock(folder_fd, fcntl.LOCK_UN)
        finally:
            os.close(folder_fd)
