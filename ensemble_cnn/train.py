"""Training an ensemble: K members, in turn or in parallel workers (local or a cluster), resumable."""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ensemble_cnn import _atomic
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn import member
from ensemble_cnn.member import member_files, read_record
from ensemble_cnn.training_data import data_fingerprint, load_pool

CONFIG_NAME = "config.json"

__all__ = [
    "CONFIG_NAME", "RunFolderError", "TrainResult", "available_cores", "data_fingerprint", "load_records",
    "plan_groups", "prepare_run", "train_ensemble",
]


@dataclass
class TrainResult:
    """What :func:`train_ensemble` did.

    Attributes
    ----------
    run_dir : Path
    records : list of dict
        One record per finished, verified member, by index.
    reused : list of int
        Members found complete in the run folder and kept.
    trained : list of int
        Members trained by this call.
    failures : dict of int to str
        Members whose training raised, whose worker was lost, or whose files failed
        verification, with the one-line reason.
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
    seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failures and len(self.records) > 0


def available_cores() -> int:
    import joblib

    return max(1, joblib.cpu_count(only_physical_cores=False))


def check_run(config: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """Validate the data, fingerprint it, and check ``run_dir`` may hold this run; write nothing.

    Returns the config with ``data_fingerprint`` filled in. Raises
    :class:`RunFolderError` when ``run_dir`` is not a folder or holds a different
    run's config, and :class:`ensemble_cnn.data.DataError` for bad data.
    """
    run_dir = Path(run_dir)
    pool = load_pool(data=config.data, expanded=config.expanded, limit=config.limit)
    config = replace(config, data_fingerprint=data_fingerprint(pool))
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: exists and is not a folder")
    config_path = run_dir / CONFIG_NAME
    if config_path.exists():
        existing = _load_config(config_path)
        differing = sorted(
            key for key, value in config.computation().items() if existing.computation().get(key) != value
        )
        if differing:
            raise RunFolderError(
                f"{run_dir}: holds a different run (config differs in {', '.join(differing)}); "
                "choose another --out or delete the folder"
            )
    return config


def claim_run(config: TrainConfig, run_dir: str | Path) -> None:
    """Create ``run_dir``, write the config, and remove temporary files killed writers left there."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _atomic.remove_temporaries(run_dir)
        _atomic.write_json(run_dir / CONFIG_NAME, config.to_dict())
    except OSError as exc:
        raise RunFolderError(f"{run_dir}: cannot write the run folder ({exc.strerror or exc})") from None


def prepare_run(config: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """:func:`check_run`, then :func:`claim_run`: validate and claim (or re-open) the run folder.

    Returns the config with ``data_fingerprint`` filled in.
    """
    config = check_run(config, run_dir)
    claim_run(config, run_dir)
    return config


def train_ensemble(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train (or resume) the ensemble described by ``config`` into ``run_dir``.

    Members already complete in ``run_dir`` (record present, files matching their
    sha256) are kept; the others are trained, in turn (``mode="sequential"``, all
    cores for each) or as ``config.jobs`` parallel worker tasks on the joblib
    backend ``config.backend`` (local loky processes, or a dask or ray cluster,
    which must see ``run_dir`` and the data at the same paths). A member that
    raises, or whose worker is lost, does not stop the others; its reason is in
    :attr:`TrainResult.failures`. Finally every member is verified in this process
    (:func:`ensemble_cnn.verify.verify_members`: sha256 against its record, a Keras
    ``safe_mode`` load); one that fails is reported and its record removed, so
    the next call trains it again.

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
    ensemble_cnn.data.DataError, RunFolderError, ensemble_cnn.errors.BackendError
        Bad data, an unusable run folder, an engine that is missing or unreachable.
    """
    from ensemble_cnn import backends
    from ensemble_cnn.verify import verify_members

    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = check_run(config, run_dir)
    result = TrainResult(run_dir=run_dir)
    say = log or (lambda line: None)

    records: dict[int, dict[str, Any]] = {}
    pending = []
    for index in range(config.members):
        record = read_record(run_dir, index)
        if record is None:
            pending.append(index)
        else:
            records[index] = record
            result.reused.append(index)

    remote, local = plan_groups(config, pending)
    jobs = max(1, min(config.jobs, len(remote)))
    if remote:
        backends.check_installed(config.backend)
        engine = backends.workers(config.backend, scheduler=config.scheduler, jobs=jobs)
    else:
        engine = nullcontext("this process")
    with engine as where:
        claim_run(config, run_dir)
        if result.reused:
            say(f"resuming: members {', '.join(f'{i:02d}' for i in result.reused)} already trained, kept")
        cores = available_cores()
        outcomes = _in_workers(config, remote, run_dir, jobs, cores, log, where) if remote else iter(())
        for outcome in _chain(outcomes, _in_process(config, local, run_dir, cores, log)):
            _collect(outcome, records, result)
            say(_overall(len(records) + len(result.failures), config.members))

    verify_started = time.perf_counter()
    for index, reason in verify_members(run_dir, [records[i] for i in sorted(records)]).items():
        result.failures[index] = f"failed verification: {reason}"
        records.pop(index, None)
        for kept in (result.reused, result.trained):
            if index in kept:
                kept.remove(index)
        member_files(run_dir, index)["record"].unlink(missing_ok=True)  # the next call trains it again
    result.verify_seconds = time.perf_counter() - verify_started
    result.records = [records[i] for i in sorted(records)]
    result.seconds = time.perf_counter() - started
    return result


def plan_groups(config: TrainConfig, pending: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    """Split the pending members into worker tasks and work for this process.

    ``sequential`` (or one job with loky): everything here, one member after another
    with all cores (``fused``: one fused model). ``processes`` with loky: one task per
    member in ``jobs`` worker processes; a single member left over after full rounds
    trains here with all cores instead of leaving cores idle. ``fused`` with ``jobs >
    1``: ``jobs`` groups, each one fused model in a worker. With ``dask`` or ``ray``
    every member goes to the cluster (one task per member, or ``jobs`` fused groups).

    Returns
    -------
    remote : list of list of int
        Member groups to run as worker tasks.
    local : list of list of int
        Member groups to train in this process, in order.
    """
    if not pending:
        return [], []
    jobs = min(config.jobs, len(pending))
    fused = config.mode == "fused"
    if config.backend == "loky" and (config.mode == "sequential" or jobs == 1):
        return [], ([list(pending)] if fused else [[index] for index in pending])
    if fused:
        return [[int(i) for i in group] for group in np.array_split(pending, jobs)], []
    if config.backend != "loky":
        return [[index] for index in pending], []
    leftover = len(pending) % jobs if len(pending) > jobs else 0
    if leftover == 1:
        return [[index] for index in pending[:-1]], [pending[-1:]]
    return [[index] for index in pending], []


def _chain(*iterators: Iterator) -> Iterator:
    for iterator in iterators:
        yield from iterator


def _task(config: TrainConfig):
    return _guarded_train_fused if config.mode == "fused" else _guarded_train


def _in_process(config: TrainConfig, groups: list[list[int]], run_dir: Path, cores: int, log):
    """Train the groups in this process, all cores each; yield outcomes as members finish."""
    settings = config.to_dict()
    for group in groups:
        yield from _task(config)(settings, group, str(run_dir), cores, log)


def worker_settings(config: TrainConfig) -> dict[str, Any]:
    """The config as plain data for a worker, with data paths made absolute (a worker's cwd may differ)."""
    settings = config.to_dict()
    for key in ("data", "expanded"):
        if settings[key] is not None:
            settings[key] = str(Path(settings[key]).resolve())
    return settings


def _in_workers(config: TrainConfig, groups: list[list[int]], run_dir: Path, jobs: int, cores: int, log, where: str):
    """Run one worker task per group on the current joblib backend; yield outcomes as they finish.

    (ray's joblib backend returns all results at the end.) A lost worker (killed
    process, a cluster giving up on a task) does not lose the members whose files
    are complete in the run folder; the others fail with the reason.
    """
    from joblib import Parallel, delayed

    threads = max(1, cores // jobs)
    n_members = sum(len(g) for g in groups)
    if log is not None:
        log(f"training {n_members} members on {where}, {jobs} at a time x {threads} TensorFlow threads "
            f"({config.mode})")
    worker_log = print if log is not None else None  # a worker cannot call back into this process
    task, settings, folder = _task(config), worker_settings(config), str(run_dir.resolve())
    calls = (delayed(task)(settings, group, folder, threads, worker_log) for group in groups)
    return_as = "list" if config.backend == "ray" else "generator_unordered"
    waiting = {index for group in groups for index in group}
    try:
        for outcomes in Parallel(n_jobs=jobs, batch_size=1, return_as=return_as)(calls):
            for outcome in outcomes:
                waiting.discard(outcome["index"])
                yield outcome
    except Exception as exc:  # noqa: BLE001 - a lost worker must not lose the finished members
        for index in sorted(waiting):
            record = read_record(run_dir, index)
            if record is not None:
                yield {"index": index, "record": record}
            else:
                yield {"index": index, "error": f"worker lost: {_reason(exc)}"}


def _guarded_train_fused(config: dict, indices: list[int], run_dir: str, threads: int, log) -> list[dict[str, Any]]:
    """Run :func:`train_fused` on a group, turning an exception into failure records."""
    from ensemble_cnn.fused import train_fused

    try:
        records = train_fused(config, indices, run_dir, threads=threads, log=log)
        return [{"index": r["index"], "record": r} for r in records]
    except Exception as exc:  # noqa: BLE001 - one group's failure must not lose the others
        return [{"index": i, "error": _reason(exc)} for i in indices]


def _guarded_train(config: dict, indices: list[int], run_dir: str, threads: int, log) -> list[dict[str, Any]]:
    """Run :func:`train_member` on each member, turning an exception into a failure record."""
    outcomes = []
    for index in indices:
        try:
            record = member.train_member(config, index, run_dir, threads=threads, log=log)
            outcomes.append({"index": index, "record": record})
        except Exception as exc:  # noqa: BLE001 - one member's failure must not lose the others
            outcomes.append({"index": index, "error": _reason(exc)})
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
    filled = int(round(width * done / total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} members done"


def load_records(run_dir: str | Path) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """The run's config and the records of its complete, verified members."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_NAME
    if not config_path.is_file():
        raise RunFolderError(f"{run_dir}: no {CONFIG_NAME} (not a run folder written by ensemble-cnn train)")
    config = _load_config(config_path)
    records = [r for r in (read_record(run_dir, i) for i in range(config.members)) if r is not None]
    return config, records


def _load_config(path: Path) -> TrainConfig:
    try:
        return TrainConfig.load(path)
    except ValueError as exc:
        raise RunFolderError(str(exc).splitlines()[0]) from None


