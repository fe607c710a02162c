"""A worker process stops when the command that started it dies.

``ensemble-cnn train`` runs members in local worker processes (loky), children of the
command's process. Ctrl-C reaches them with the terminal's SIGINT; but when the command
alone is killed (``kill PID``, a batch system's time limit, an out-of-memory kill) its
workers would go on training for minutes and write member files into a folder whose lock
has been released. Each worker therefore watches its parent and exits at once when the
command is gone.
"""
from __future__ import annotations

import os
import threading
import time

__all__ = ["EXIT_ORPHANED", "stop_with_driver"]

#: Exit status of a worker that stopped because its driver died.
EXIT_ORPHANED = 70

_watching = False
_lock = threading.Lock()


def stop_with_driver(driver_pid: int, *, interval: float = 0.5) -> bool:
    """Exit this process as soon as its parent, the driver ``driver_pid``, is gone.

    Only in a direct child of the driver (a local worker process); elsewhere (the driver
    itself, a dask or ray worker under its own nanny/raylet, a worker on another
    machine) nothing is watched. One watcher thread per process, however many calls.

    Parameters
    ----------
    driver_pid : int
        The driver's process id (0: unknown, nothing watched).
    interval : float, default 0.5
        Seconds between checks of the parent.

    Returns
    -------
    bool
        Whether this process is (now) watching its driver.
    """
    global _watching
    with _lock:
        if _watching:
            return True
        if driver_pid <= 0 or driver_pid == os.getpid() or os.getppid() != driver_pid:
            return False

        def watch() -> None:
            while os.getppid() == driver_pid:
                time.sleep(interval)
            os._exit(EXIT_ORPHANED)  # no cleanup: the half-written member is a temp file, never renamed

        threading.Thread(target=watch, name="ensemble-cnn-driver-watch", daemon=True).start()
        _watching = True
        return True
