"""Training an ensemble: K members, in turn or in parallel worker processes, resumable."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ensemble_cnn import _atomic
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.hashing import sha256_arrays
from ensemble_cnn.member import read_record, train_member
from ensemble_cnn.training_data import TrainingPool, load_pool

CONFIG_NAME = "config.json"


class RunFolderError(ValueError):
    """The run folder cannot be used for this run (e.g. it holds a different run)."""


@dataclass
class TrainResult:
    """What :func:`train_ensemble` did.

    Attributes
    ----------
    run_dir : Path
    records : list of dict
        One record per finished member, by index.
    reused : list of int
        Members found complete in the run folder and kept.
    trained : list of int
        Members trained by this call.
    failures : dict of int to str
        Members whose training raised, with the one-line reason.
    seconds : float
        Wall time of this call.
    """

    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failures and len(self.records) > 0


def data_fingerprint(pool: TrainingPool) -> str:
    """sha256 of the training and test arrays a run uses."""
    return sha256_arrays(pool.data.x_train, pool.data.y_train, pool.data.x_test, pool.data.y_test)


def available_cores() -> int:
    import joblib

    return max(1, joblib.cpu_count(only_physical_cores=False))


def prepare_run(config: TrainConfig, run_dir: str | Path) -> TrainConfig:
    """Validate the data, fingerprint it, and claim (or re-open) the run folder.

    Returns the config with ``data_fingerprint`` filled in. Raises
    :class:`RunFolderError` when ``run_dir`` holds a different run's config, and
    :class:`ensemble_cnn.data.DataError` for bad data.
    """
    run_dir = Path(run_dir)
    pool = load_pool(data=config.data, expanded=config.expanded, limit=config.limit)
    config = replace(config, data_fingerprint=data_fingerprint(pool))
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: exists and is not a folder")
    config_path = run_dir / CONFIG_NAME
    if config_path.exists():
        existing = TrainConfig.load(config_path)
        differing = sorted(
            key for key, value in config.computation().items() if existing.computation().get(key) != value
        )
        if differing:
            raise RunFolderError(
                f"{run_dir}: holds a different run (config differs in {', '.join(differing)}); "
                "choose another --out or delete the folder"
            )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _atomic.write_json(config_path, config.to_dict())
    except OSError as exc:
        raise RunFolderError(f"{run_dir}: cannot write the run folder ({exc.strerror or exc})") from None
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
    cores for each) or as ``config.jobs`` joblib/loky worker processes
    (``mode="processes"``, cores split between them). A member that raises does
    not stop the others; its reason is in :attr:`TrainResult.failures`.

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
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = prepare_run(config, run_dir)
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
    if result.reused:
        say(f"resuming: members {', '.join(f'{i:02d}' for i in result.reused)} already trained, kept")

    cores = available_cores()
    for outcome in _schedule(config, pending, run_dir, cores, log):
        _collect(outcome, records, result)
        say(_overall(len(records) + len(result.failures), config.members))

    result.records = [records[i] for i in sorted(records)]
    result.seconds = time.perf_counter() - started
    return result


def _schedule(config: TrainConfig, pending: list[int], run_dir: Path, cores: int, log) -> Iterator[dict[str, Any]]:
    """Train the pending members as the config's mode says; yield outcomes as members finish.

    ``sequential``: one after another in this process, all cores each. ``processes``:
    full rounds of ``jobs`` loky worker processes (cores split between them); a
    single member left over after the full rounds trains in this process with all
    cores instead of leaving cores idle. ``fused``: the members split into ``jobs``
    groups, each group one fused model (in this process when ``jobs == 1``).
    """
    if not pending:
        return
    settings = config.to_dict()
    jobs = min(config.jobs, len(pending))
    if config.mode == "sequential" or jobs == 1:
        task = _guarded_train_fused if config.mode == "fused" else _guarded_train
        groups = [pending] if config.mode == "fused" else [[index] for index in pending]
        for group in groups:
            yield from task(settings, group, str(run_dir), cores, log)
        return
    if config.mode == "fused":
        groups = [[int(i) for i in g] for g in np.array_split(pending, jobs)]
        yield from _in_workers(_guarded_train_fused, settings, groups, run_dir, jobs, cores, log, config.mode)
        return
    leftover = len(pending) % jobs if len(pending) > jobs else 0
    parallel = pending[: len(pending) - leftover] if leftover == 1 else pending
    yield from _in_workers(_guarded_train, settings, [[i] for i in parallel], run_dir, jobs, cores, log, config.mode)
    if leftover == 1:
        yield from _guarded_train(settings, pending[-1:], str(run_dir), cores, log)


def _in_workers(task, settings: dict, groups: list[list[int]], run_dir: Path, jobs: int, cores: int, log, mode: str):
    """Run ``task`` on each group in ``jobs`` loky worker processes; yield outcomes as they finish."""
    from joblib import Parallel, delayed

    threads = max(1, cores // jobs)
    n_members = sum(len(g) for g in groups)
    if log is not None:
        log(f"training {n_members} members in {jobs} worker processes x {threads} TensorFlow threads ({mode})")
    worker_log = print if log is not None else None  # a worker cannot call back into this process
    calls = (delayed(task)(settings, group, str(run_dir), threads, worker_log) for group in groups)
    for outcomes in Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(calls):
        yield from outcomes


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
            outcomes.append({"index": index, "record": train_member(config, index, run_dir, threads=threads, log=log)})
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
    config = TrainConfig.load(config_path)
    records = [r for r in (read_record(run_dir, i) for i in range(config.members)) if r is not None]
    return config, records


