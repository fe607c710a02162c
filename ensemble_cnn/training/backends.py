"""Where worker tasks run: joblib's loky processes, a dask.distributed cluster or a ray cluster.

:func:`workers` connects joblib to the chosen engine for the duration of a block,
starting a local cluster when no address is given and closing what it started.
Inside the block a plain ``joblib.Parallel(...)`` runs on that engine. The tasks
write their members into the run folder, so it must lie on storage every worker
sees (a shared file system), and so must the data files.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ensemble_cnn.config import BACKENDS
from ensemble_cnn.errors import BackendError, first_line

# How long to wait for a dask scheduler or ray cluster to answer, in seconds.
CONNECT_TIMEOUT_S = 10.0
# How long joblib waits for a dask cluster without workers to get one.
WAIT_FOR_WORKERS_S = 60.0


def check_installed(backend: str) -> None:
    """Raise :class:`BackendError` (one line, with the pip command) when ``backend`` is not installed."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    try:
        if backend == "dask":
            import distributed  # noqa: F401
        elif backend == "ray":
            import ray  # noqa: F401
    except ImportError:
        raise BackendError(
            f"backend {backend} is not installed: pip install 'ensemble-cnn[{backend}]'"
        ) from None


@contextmanager
def workers(backend: str, *, scheduler: str | None = None, jobs: int = 1) -> Iterator[str]:
    """Run the block's ``joblib.Parallel`` calls on ``backend``.

    Parameters
    ----------
    backend : {"loky", "dask", "ray"}
        ``loky``: local worker processes. ``dask``: a ``dask.distributed.Client``
        connected to ``scheduler``, or to a ``LocalCluster`` of ``jobs``
        single-threaded worker processes started here (and closed afterwards).
        ``ray``: ``ray.init(address=scheduler)`` (or the ``RAY_ADDRESS`` cluster), else
        a local ``ray.init`` with ``jobs`` CPUs, shut down afterwards; an already
        initialised ray session is used as it is.
    scheduler : str, optional
        Address of the dask scheduler or ray cluster; ``None``: start a local one.
    jobs : int
        Local workers to start (``LocalCluster``, local ray) when no address is given.

    Yields
    ------
    str
        Where the tasks run, in words (for progress lines).

    Raises
    ------
    BackendError
        The engine is not installed, or its cluster cannot be reached or started.
    """
    from joblib import parallel_config

    check_installed(backend)
    if backend == "loky":
        with parallel_config(backend="loky"):
            yield "local loky worker processes"
    elif backend == "dask":
        with _dask_client(scheduler, jobs) as (client, where):
            with parallel_config(backend="dask", client=client, wait_for_workers_timeout=WAIT_FOR_WORKERS_S):
                yield where
    else:
        with _ray_session(scheduler, jobs) as where:
            with parallel_config(backend="ray"):
                yield where


@contextmanager
def _dask_client(scheduler: str | None, jobs: int):
    from distributed import Client, LocalCluster

    cluster = client = None
    try:
        if scheduler:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            where = f"the dask cluster at {scheduler}"
        else:
            cluster = LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0,
            )
            client = Client(cluster, set_as_default=False)
            where = f"a local dask cluster of {jobs} worker processes ({cluster.scheduler_address})"
    except Exception as exc:  # noqa: BLE001 - any failure here means "no cluster"
        _close(client, cluster)
        target = f"the dask scheduler at {scheduler}" if scheduler else "a local dask cluster"
        raise BackendError(f"cannot reach {target} ({first_line(exc)})") from None
    try:
        yield client, where
    finally:
        _close(client, cluster)


def _close(*things) -> None:
    for thing in things:
        if thing is not None:
            try:
                thing.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's own outcome
                pass


@contextmanager
def _ray_session(scheduler: str | None, jobs: int):
    import ray
    from ray.util.joblib import register_ray

    register_ray()
    started = False
    if ray.is_initialized():
        where = "the running ray session"
    else:
        try:
            if scheduler or os.environ.get("RAY_ADDRESS"):
                address = scheduler or os.environ["RAY_ADDRESS"]
                ray.init(address=address, log_to_driver=True)
                where = f"the ray cluster at {address}"
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=True)
                where = f"a local ray cluster of {jobs} CPUs"
        except Exception as exc:  # noqa: BLE001 - any failure here means "no cluster"
            target = f"the ray cluster at {scheduler}" if scheduler else "a local ray cluster"
            raise BackendError(f"cannot reach {target} ({first_line(exc)})") from None
        started = True
    try:
        yield where
    finally:
        if started:
            ray.shutdown()
