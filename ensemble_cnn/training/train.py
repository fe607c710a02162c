"""Training an ensemble: K members, in turn or in parallel workers (local or a cluster), resumable and growable."""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ensemble_cnn.training import member
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.training.member import WorkerSettings, members_of, run_cost, run_of
from ensemble_cnn.training.orphans import stop_with_driver
from ensemble_cnn.training.recipes import get_recipe
from ensemble_cnn.training.teacher import check_teacher, write_teacher_targets
from ensemble_cnn.inference.features import ink_area
from ensemble_cnn.storage.calibration import write_calibration_set
from ensemble_cnn.storage.outputs import check_run_folder_target
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.models import load_member
from ensemble_cnn.training.execution import Execution, resolve_execution
from ensemble_cnn.data.training import TrainingPool, data_fingerprint, load_pool, shared_holdout

__all__ = ["RunFolderError", "TrainResult", "check_run", "plan_groups", "prepare_run", "train_ensemble"]

# One unit of work for a worker: training runs, each with the member indices to save from it.
Group = list[tuple[int, list[int]]]


@dataclass
class TrainResult:
    """What :func:`train_ensemble` did.

    Attributes
    ----------
    run_dir : Path
    records : list of dict
        One record per finished, verified member among the first ``config.members``, by index.
    reused : list of int
        Members found complete in the run folder and kept.
    trained : list of int
        Members trained by this call.
    failures : dict of int to str
        Members whose training raised, whose worker was lost, or whose files failed
        verification, with the one-line reason.
    execution : Execution or None
        How the members were scheduled (``None`` when nothing was trained).
    seconds : float
        Wall time of this call.
    verify_seconds : float
        Part of it spent verifying the members (sha256 and a ``safe_mode`` load).
    """

    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    execution: Execution | None = None
    seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failures and len(self.records) > 0


def check_run(config: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """Validate the data, fingerprint it, and check ``run_dir`` may hold this run; write nothing.

    Returns the config with ``data_fingerprint`` filled in and the data paths
    resolved (``evaluate`` then works from any folder). Raises
    :class:`RunFolderError` when ``run_dir`` is not a folder or holds a run whose
    identity differs (naming the fields), :class:`ensemble_cnn.errors.OutputPathError`
    (first) when ``run_dir`` is, holds or lies inside the data or the teacher run, and
    :class:`ensemble_cnn.data.mnist.DataError` for bad data.
    """
    return _checked(config, run_dir)[0]


def _checked(config: TrainConfig, run_dir: str | Path) -> tuple[TrainConfig, TrainingPool]:
    """:func:`check_run`, also returning the training pool it read (a teacher labels it)."""
    check_run_folder_target(run_dir, inputs=[p for p in (config.data, config.expanded, config.teacher) if p])
    pool = load_pool(data=config.data, expanded=config.expanded, limit=config.limit)
    config = replace(config, data_fingerprint=data_fingerprint(pool), **{
        key: str(Path(value).resolve())  # stored resolved: evaluate works from any folder
        for key, value in (("data", config.data), ("expanded", config.expanded)) if value is not None
    })
    config = check_teacher(config, run_dir)
    RunFolder(run_dir).check_compatible(config)
    return config, pool


def prepare_run(config: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """:func:`check_run`, then claim (or re-open) the run folder; returns the config written."""
    config = check_run(config, run_dir)
    return RunFolder(run_dir).claim(config)


def train_ensemble(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train (or resume, or grow) the ensemble described by ``config`` into ``run_dir``.

    Members ``0 .. config.members - 1`` already complete in ``run_dir`` (record
    present, files matching their sha256, each hashed once) are kept; the others are
    trained, in turn (``mode="sequential"``, all cores for each) or as parallel worker
    tasks on the joblib backend ``config.backend`` (local loky processes, or a dask
    or ray cluster, which must see ``run_dir`` and the data at the same paths). A run
    grows: the same command with a larger ``members`` keeps the members it has and
    trains the rest (member ``i`` never depends on the member count). A member that
    raises, or whose worker is lost, does not stop the others; its reason is in
    :attr:`TrainResult.failures`. Finally every member is verified in this process
    (new ones: sha256 against what the worker returned; all: a Keras ``safe_mode``
    load); one that fails is reported and its record removed, so the next call
    trains it again. With ``holdout="shared"`` the run's calibration digits are written
    (or, in a resumed or grown run, checked) before any member trains
    (:func:`ensemble_cnn.storage.calibration.write_calibration_set`).

    Parameters
    ----------
    config : TrainConfig
    run_dir : path-like
        The run folder (created if needed).
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    TrainResult

    Raises
    ------
    ensemble_cnn.data.mnist.DataError, RunFolderError, ensemble_cnn.errors.BackendError
        Bad data, an unusable run folder, an engine that is missing or unreachable.
    """
    from ensemble_cnn.training import backends
    started = time.perf_counter()
    folder = RunFolder(run_dir)
    config, pool = _checked(config, folder.path)
    teacher_digits = pool.data.x_train if config.teacher else None  # the digits a teacher labels, read once
    calibration = _calibration_digits(config, pool)
    del pool  # nor is the rest of it held here while the workers train
    result = TrainResult(run_dir=folder.path)
    say = log or (lambda line: None)
    recipe = get_recipe(config.recipe)

    with ExitStack() as held:
        # An existing folder is locked before its members are read; a new one only once
        # the cluster (if any) answered, so a run that cannot start leaves no folder.
        locked = folder.path.is_dir()
        if locked:
            held.enter_context(folder.lock())
            folder.check_compatible(config)
        records: dict[int, dict[str, Any]] = {}
        pending: dict[int, list[int]] = {}
        for index, status in folder.scan(range(config.members)).items():
            if status.complete:
                records[index] = status.record
                result.reused.append(index)
            else:
                pending.setdefault(run_of(index, recipe), []).append(index)
        # Longest first (epochs x multiply-adds), so that no worker idles at the end while a long member
        # trains alone; equal runs in index order.
        runs = sorted(pending.items(), key=lambda item: (-run_cost(config, item[0]), item[0]))

        execution = None
        remote: list[Group] = []
        local: list[Group] = []
        if runs:
            execution = resolve_execution(config.mode, config.jobs, config.precision, backend=config.backend,
                                          members=len(runs))
            remote, local = plan_groups(runs, mode=execution.mode, jobs=execution.jobs, backend=config.backend,
                                        group_of=lambda run: config.group_of(members_of(run, recipe)[0]))
            result.execution = execution
        jobs = max(1, min(execution.jobs if execution else 1, len(remote)))
        if remote:
            backends.check_installed(config.backend)
            where = held.enter_context(backends.workers(config.backend, scheduler=config.scheduler, jobs=jobs))
        else:
            where = "this process"
        if not locked:
            held.enter_context(folder.lock())
            folder.check_compatible(config)
        folder.claim(config)
        if calibration is not None:  # before any member trains; a resumed or grown run's checked against it
            write_calibration_set(folder, config, rows=calibration[0], labels=calibration[1],
                                  ink_area=calibration[2])
        if runs and config.teacher:
            from ensemble_cnn import runtime

            runtime.configure_tensorflow(execution.cores, max(1, min(2, execution.cores)))  # as in-process training
            write_teacher_targets(config, folder, teacher_digits, log=log)
        teacher_digits = None  # labelled (or already were): not held while the workers train
        if result.reused:
            say(f"resuming: members {', '.join(f'{i:02d}' for i in result.reused)} already trained, kept")
        if runs:
            say(f"training {sum(len(m) for _, m in runs)} member(s) on {where}: {execution.describe()}")
            rounds = _rounds(remote, local, jobs, execution.mode)
            settings = WorkerSettings(precision=execution.precision, threads=execution.threads,
                                      started=time.time(), rounds=rounds, driver_pid=os.getpid())
            mode = execution.mode
            outcomes = _in_workers(config, remote, folder.path, jobs, settings, log, mode=mode) if remote else iter(())
            here = _in_process(config, local, folder.path, replace(settings, threads=execution.cores), log,
                               mode=mode, first_round=_first_local_round(remote, jobs, mode))
            for outcome in _chain(outcomes, here):
                _collect(outcome, records, result)
                say(_overall(len(records) + len(result.failures), config.members))
        _verify(folder, records, result)
    result.records = [records[i] for i in sorted(records) if i < config.members]
    result.trained.sort()
    result.seconds = time.perf_counter() - started
    return result


def _calibration_digits(config: TrainConfig, pool: TrainingPool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The pool rows (int64 (M,)), labels (uint8 (M,)) and ink areas (float64 (M,)) all members hold out with
    ``holdout="shared"``, else None."""
    if config.holdout != "shared":
        return None
    rows = shared_holdout(pool, val_size=config.val_size, root_seed=config.seed)
    return rows, pool.data.y_train[rows].astype(np.uint8), ink_area(pool.data.x_train[rows])


def _verify(folder: RunFolder, records: dict[int, dict[str, Any]], result: TrainResult) -> None:
    """Verify every member (new ones hashed, all loaded with safe_mode); forget the ones that fail."""
    verify_started = time.perf_counter()
    failed = folder.verify_all([records[i] for i in sorted(records)], hashed=result.reused, load=load_member)
    for index, reason in failed.items():
        result.failures[index] = f"failed verification: {reason}"
        records.pop(index, None)
        for kept in (result.reused, result.trained):
            if index in kept:
                kept.remove(index)
        folder.forget(index)  # the next call trains it again
    result.verify_seconds = time.perf_counter() - verify_started


def plan_groups(
    runs: list[tuple[int, list[int]]], *, mode: str, jobs: int, backend: str = "loky",
    group_of: Callable[[int], Any] | None = None,
) -> tuple[list[Group], list[Group]]:
    """Split the pending training runs into worker tasks and work for this process.

    ``sequential`` (or one job with loky): everything here, one run after another
    with all cores (``fused``: one fused model). ``processes`` with loky: one task per
    run in ``jobs`` worker processes; a single run left over after full rounds trains
    here with all cores instead of leaving cores idle. ``fused`` with ``jobs > 1``:
    ``jobs`` groups, each one fused model in a worker. With ``dask`` or ``ray`` every
    run goes to the cluster (one task per run, or ``jobs`` fused groups).

    Parameters
    ----------
    runs : list of (int, list of int)
        Pending training runs and the member indices each must save.
    mode, jobs, backend : resolved execution settings
    group_of : callable, optional
        A training run's member-plan group: a fused model holds runs of one group only
        (its members share one optimizer and one batch stream shape). Default: one group.

    Returns
    -------
    remote : list of Group
        Groups to run as worker tasks.
    local : list of Group
        Groups to train in this process, in order.
    """
    if not runs:
        return [], []
    jobs = min(jobs, len(runs))
    fused = mode == "fused"
    parts: dict[Any, list] = {}
    for run in runs:
        parts.setdefault(group_of(run[0]) if group_of else None, []).append(run)
    if backend == "loky" and (mode == "sequential" or jobs == 1):
        return [], (list(parts.values()) if fused else [[run] for run in runs])
    if fused:
        return [[part[int(i)] for i in chunk] for part in parts.values()
                for chunk in np.array_split(np.arange(len(part)), min(jobs, len(part)))], []
    if backend != "loky":
        return [[run] for run in runs], []
    leftover = len(runs) % jobs if len(runs) > jobs else 0
    if leftover == 1:
        return [[run] for run in runs[:-1]], [runs[-1:]]
    return [[run] for run in runs], []


def _rounds(remote: list[Group], local: list[Group], jobs: int, mode: str) -> int:
    """Rounds of training the plan takes (for the finish estimate)."""
    if mode == "fused":
        return max(1, len(local)) if not remote else -(-len(remote) // jobs)
    return -(-len(remote) // jobs) + len(local) if remote else len(local)


def _first_local_round(remote: list[Group], jobs: int, mode: str) -> int:
    return 0 if mode == "fused" or not remote else -(-len(remote) // jobs)


def _chain(*iterators: Iterator) -> Iterator:
    for iterator in iterators:
        yield from iterator


def _task(mode: str):
    return _guarded_train_fused if mode == "fused" else _guarded_train


def _in_process(config: TrainConfig, groups: list[Group], run_dir: Path, settings: WorkerSettings, log, *,
                mode: str, first_round: int):
    """Train the groups in this process, all cores each; yield outcomes as members finish."""
    plain, task = config.to_dict(), _task(mode)
    for position, group in enumerate(groups):
        yield from task(plain, group, str(run_dir), settings, log, first_round + position)


def worker_config(config: TrainConfig) -> dict[str, Any]:
    """The config as plain data for a worker, with data paths made absolute (a worker's cwd may differ)."""
    settings = config.to_dict()
    for key in ("data", "expanded"):
        if settings[key] is not None:
            settings[key] = str(Path(settings[key]).resolve())
    return settings


def _in_workers(config: TrainConfig, groups: list[Group], run_dir: Path, jobs: int, settings: WorkerSettings, log,
                *, mode: str):
    """Run one worker task per group on the current joblib backend; yield outcomes as they finish.

    (ray's joblib backend returns all results at the end.) A lost worker (killed
    process, a cluster giving up on a task) does not lose the members whose files
    are complete in the run folder; the others fail with the reason.
    """
    from joblib import Parallel, delayed

    # A worker cannot call back into this process: it prints its own lines (a module function, so that
    # every engine can send it, even where a test or tool replaced builtins.print).
    worker_log = member.print_line if log is not None else None
    task, plain, folder = _task(mode), worker_config(config), str(run_dir.resolve())
    # Round = position // jobs; the first task alone announces the finish estimate.
    calls = (delayed(task)(plain, group, folder, settings, worker_log, position // jobs, position == 0)
             for position, group in enumerate(groups))
    return_as = "list" if config.backend == "ray" else "generator_unordered"
    waiting = {index for group in groups for _, indices in group for index in indices}
    try:
        for outcomes in Parallel(n_jobs=jobs, batch_size=1, return_as=return_as)(calls):
            for outcome in outcomes:
                waiting.discard(outcome["index"])
                yield outcome
    except Exception as exc:  # noqa: BLE001 - a lost worker must not lose the finished members
        rescued = RunFolder(run_dir).scan(sorted(waiting))
        for index, status in rescued.items():
            if status.complete:
                yield {"index": index, "record": status.record}
            else:
                yield {"index": index, "error": f"worker lost: {_reason(exc)}"}


def _guarded_train_fused(config: dict, group: Group, run_dir: str, settings: WorkerSettings, log,
                         round_index: int = 0, announce: bool = True) -> list[dict[str, Any]]:
    """Run :func:`ensemble_cnn.training.fused.train_fused` on a group, turning an exception into failure records."""
    from ensemble_cnn.training.fused import train_fused

    stop_with_driver(settings.driver_pid)
    try:
        records = train_fused(config, group, run_dir, settings=settings, log=log, round_index=round_index,
                              announce=announce)
        return [{"index": r["index"], "record": r} for r in records]
    except Exception as exc:  # noqa: BLE001 - one group's failure must not lose the others
        return [{"index": i, "error": _reason(exc)} for _, indices in group for i in indices]


def _guarded_train(config: dict, group: Group, run_dir: str, settings: WorkerSettings, log,
                   round_index: int = 0, announce: bool = True) -> list[dict[str, Any]]:
    """Run :func:`ensemble_cnn.training.member.train_runs` on each run, turning an exception into failure records."""
    stop_with_driver(settings.driver_pid)
    outcomes = []
    for position, run in enumerate(group):
        try:
            records = member.train_runs(config, [run], run_dir, settings=settings, log=log,
                                        round_index=round_index + position, announce=announce and position == 0)
            outcomes += [{"index": r["index"], "record": r} for r in records]
        except Exception as exc:  # noqa: BLE001 - one run's failure must not lose the others
            outcomes += [{"index": i, "error": _reason(exc)} for i in run[1]]
    return outcomes


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _collect(outcome: dict[str, Any], records: dict[int, dict], result: TrainResult) -> None:
    index = outcome["index"]
    if "error" in outcome:
        result.failures[index] = outcome["error"]
    else:
        records[index] = outcome["record"]
        result.trained.append(index)


def _overall(done: int, total: int) -> str:
    width = 30
    filled = int(round(width * min(done, total) / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} members done"

