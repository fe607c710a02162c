"""The run-folder lock: one writer at a time, even when several start in the same millisecond.

The lock is two kernel ``flock``: on the run folder (deleting the lock file cannot free it) and
on ``.ensemble-cnn.lock``. These tests start real
processes (``multiprocessing`` with ``spawn``: nothing inherited but what is passed) that
wait at a barrier and then take the lock together, as two ``train`` commands started by
a script or a batch system would.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ensemble_cnn.errors import RunFolderBusy
from ensemble_cnn.storage.run_folder import LOCK_NAME, RunFolder

TRIALS = 20
STALE_TRIALS = 200  # the old lock let two of four in at once in one trial in 6 to 40: 200 trials catch it
CONTENDERS = 4


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def stale_lock(run_dir: Path, pid: int) -> None:
    """The lock file a writer killed long ago left: a JSON naming ``pid``, a process that no longer runs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "started": "yesterday", "token": "stale"}))


# --------------------------------------------------------------------------- the contenders (in spawned processes)
def _contend(root: str, trials: int, hold: float, barrier, results, tried) -> None:
    """Take the lock of ``root/<trial>`` together with the other contenders; report each hold's interval (``tried``:
    unused: holders may follow one another here)."""
    for trial in range(trials):
        barrier.wait()
        try:
            with RunFolder(Path(root) / str(trial)).lock():
                start = time.monotonic()
                time.sleep(hold)
                end = time.monotonic()
            results.put((trial, os.getpid(), start, end, None))
        except RunFolderBusy as exc:
            results.put((trial, os.getpid(), None, None, str(exc)))


def _train_like(root: str, trials: int, hold: float, barrier, results, tried) -> None:
    """What ``train`` does to a folder, stripped of the training: lock, read, claim, write two members' records.

    A writer that got the lock keeps it until every contender has tried (the ``tried`` barrier), however late
    the scheduler lets the others run: a writer that got in is never told apart from one that came after it
    by timing. ``hold`` seconds of "training" after each member."""
    from ensemble_cnn.config import TrainConfig

    config = TrainConfig(members=2, augmentation="none")
    for trial in range(trials):
        folder = RunFolder(Path(root) / str(trial))
        barrier.wait()
        try:
            with folder.lock():
                folder.check_compatible(config)
                statuses = folder.scan(range(config.members))
                folder.claim(config)
                for index, status in statuses.items():
                    if not status.complete:
                        folder.write_member(index, save_model=lambda path: path.write_bytes(b"weights"),
                                            probabilities=np.full((4, 10), 0.1), history={"loss": [1.0]},
                                            details={"pid": os.getpid()})
                        time.sleep(hold / config.members)  # "training"
                tried.wait()
            results.put((trial, os.getpid(), None))
        except RunFolderBusy as exc:
            tried.wait()
            results.put((trial, os.getpid(), str(exc)))


def _race(target, root: Path, *, processes: int, trials: int, hold: float) -> list[tuple]:
    """Run ``target`` in ``processes`` spawned processes; every trial starts them together at a barrier."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    tried = context.Barrier(processes, timeout=60)  # a writer blocked on the lock instead of refused: broken
    workers = [context.Process(target=target, args=(str(root), trials, hold, barrier, results, tried))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(processes * trials)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert all(worker.exitcode == 0 for worker in workers), [worker.exitcode for worker in workers]
    return outcomes


# --------------------------------------------------------------------------- tests
def test_one_holder_at_a_time_when_four_take_a_stale_lock_together(tmp_path):
    gone = dead_pid()
    for trial in range(STALE_TRIALS):
        stale_lock(tmp_path / str(trial), gone)
    outcomes = _race(_contend, tmp_path, processes=CONTENDERS, trials=STALE_TRIALS, hold=0.005)
    for trial in range(STALE_TRIALS):
        holds = sorted((start, end) for t, _, start, end, _ in outcomes if t == trial and start is not None)
        assert holds, f"trial {trial}: nobody took the stale lock"
        for (_, end), (start, _) in zip(holds, holds[1:]):
            assert start >= end, f"trial {trial}: two processes held the lock at once: {holds}"
        for t, _, start, _, message in outcomes:
            if t == trial and start is None:
                assert "in use by another train/run" in message and "\n" not in message, message


def test_two_writers_started_together_one_proceeds_the_other_stops_in_one_line(tmp_path):
    outcomes = _race(_train_like, tmp_path, processes=2, trials=TRIALS, hold=0.05)
    for trial in range(TRIALS):
        run_dir = tmp_path / str(trial)
        proceeded = [pid for t, pid, error in outcomes if t == trial and error is None]
        refused = [(pid, error) for t, pid, error in outcomes if t == trial and error is not None]
        assert len(proceeded) == 1 and len(refused) == 1, f"trial {trial}: {outcomes}"
        (winner,), ((_, message),) = proceeded, refused
        assert "\n" not in message
        assert f"in use by another train/run (pid {winner} on this machine" in message, message
        assert str(run_dir / LOCK_NAME) in message, message
        records = RunFolder(run_dir).records(2)
        assert [r["index"] for r in records] == [0, 1], f"trial {trial}: a member record is missing or broken"
        assert {r["pid"] for r in records} == {winner}, f"trial {trial}: the refused writer wrote a member"


def start_lock_holder(run_dir: Path) -> subprocess.Popen:
    """A process that has taken ``run_dir``'s lock (it sleeps holding it; kill it when done)."""
    code = ("import sys, time; from ensemble_cnn.storage.run_folder import RunFolder\n"
            "with RunFolder(sys.argv[1]).lock():\n"
            "    print('locked', flush=True); time.sleep(120)\n")
    import ensemble_cnn

    source = str(Path(ensemble_cnn.__file__).resolve().parent.parent)  # the code under test, wherever it is
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": source})
    assert holder.stdout.readline().strip() == "locked"
    holder.stdout.close()
    return holder


def test_a_lock_whose_holder_was_killed_is_free_at_once(tmp_path):
    run_dir = tmp_path / "run"
    holder = start_lock_holder(run_dir)
    folder = RunFolder(run_dir)
    try:
        info = folder.holder()
        assert info is not None and info["pid"] == holder.pid
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid} on this machine") as busy:
            with folder.lock():
                pass
        assert str(run_dir / LOCK_NAME) in str(busy.value), "the message names the lock file"
        holder.send_signal(signal.SIGKILL)
        os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: its pid still exists
        assert folder.holder() is None, "a killed holder's lock file is not held by anyone"
        started = time.monotonic()
        with folder.lock():
            assert time.monotonic() - started < 0.2, "the lock of a killed process is free at once"
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path):
    from ensemble_cnn.errors import RunFolderError

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    for name, make in (("symlink", lambda lock: lock.symlink_to(precious)), ("hard link", lambda lock: lock.hardlink_to(precious))):
        run_dir = tmp_path / name
        run_dir.mkdir()
        make(run_dir / LOCK_NAME)
        with pytest.raises(RunFolderError, match=f"{LOCK_NAME}: not a lock file .*; remove it$"):
            with RunFolder(run_dir).lock():
                pass
        assert RunFolder(run_dir).holder() is None
        assert precious.read_text() == "keep me"


def test_a_holder_on_another_host_is_named_with_the_lock_file_and_how_to_tell(tmp_path, monkeypatch):
    from ensemble_cnn.storage import run_folder
    run_dir = tmp_path / "run"
    holder = start_lock_holder(run_dir)
    try:
        host = socket.gethostname()
        monkeypatch.setattr(run_folder.socket, "gethostname", lambda: "elsewhere")  # we are another machine
        with pytest.raises(RunFolderBusy) as busy:
            with RunFolder(run_dir).lock():
                pass
        message = str(busy.value)
        assert f"in use by another train/run (pid {holder.pid} on host {host}, since " in message
        assert f"{run_dir / LOCK_NAME}" in message and f"`ps -p {holder.pid}` on {host}" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- deleting the lock file frees nothing
def _hold_while_the_test_tries(root: str, trials: int, locked, tried) -> None:
    """Hold the lock of ``root/<trial>`` from the ``locked`` barrier until the test has tried to take it (``tried``)."""
    for trial in range(trials):
        with RunFolder(Path(root) / str(trial)).lock():
            locked.wait()
            tried.wait()


def test_deleting_the_lock_file_of_a_held_folder_does_not_let_a_second_writer_in(tmp_path):
    context = multiprocessing.get_context("spawn")
    locked, tried = context.Barrier(2, timeout=60), context.Barrier(2, timeout=60)
    holder = context.Process(target=_hold_while_the_test_tries, args=(str(tmp_path), TRIALS, locked, tried))
    holder.start()
    try:
        for trial in range(TRIALS):
            run_dir = tmp_path / str(trial)
            locked.wait()
            try:
                (run_dir / LOCK_NAME).unlink()  # a user tidying hidden files while the folder is held
                with pytest.raises(RunFolderBusy) as busy:
                    with RunFolder(run_dir).lock():
                        pass
                message = str(busy.value)
                assert message.startswith(f"{run_dir}: in use by another train/run") and "\n" not in message, message
                assert not (run_dir / LOCK_NAME).exists(), f"trial {trial}: the refused writer made a lock file"
                assert RunFolder(run_dir).holder() is not None, f"trial {trial}: evaluate would call it free"
            except BaseException:
                locked.abort()  # the holder stops at once instead of waiting for the next trial
                raise
            finally:
                tried.wait()
    finally:
        holder.join(timeout=60)
        if holder.is_alive():
            holder.kill()
    assert holder.exitcode == 0


def test_a_held_folder_whose_lock_file_was_deleted_stays_held_until_its_holder_ends(tmp_path):
    run_dir = tmp_path / "run"
    holder = start_lock_holder(run_dir)
    folder = RunFolder(run_dir)
    try:
        (run_dir / LOCK_NAME).unlink()
        for _ in range(3):  # not once by luck
            with pytest.raises(RunFolderBusy) as busy:
                with folder.lock():
                    pass
        assert str(busy.value) == (f"{run_dir}: in use by another train/run (it holds the lock on the folder; "
                                   f"{run_dir / LOCK_NAME}, which names it, was deleted); wait for it to finish")
        assert folder.holder() == {"pid": None, "host": None, "started": None}
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert folder.holder() is None
        with folder.lock():
            assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid(), "the next writer is named"
    finally:
        holder.kill()
        holder.wait()
