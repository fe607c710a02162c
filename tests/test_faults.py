"""Faults during training: a killed run resumes, a failing member loses nothing else, stray temp files are harmless."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import ensemble_cnn.training.member
from cli.main import main
from conftest import TINY_ARGS as TINY
from ensemble_cnn.models import load_member
from ensemble_cnn.storage.run_folder import RunFolder

REPO_ROOT = Path(__file__).resolve().parent.parent
STRAY = ".member_00.keras.k1lled00.tmp.keras"  # what a writer killed inside _atomic.atomic_path leaves


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if ".tmp" in p.name)


def test_sigkill_mid_run_then_resume(tmp_path, small_mnist_npz):
    """SIGKILL the whole process group once member 00 is saved; the same command then finishes the run."""
    import keras

    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "cli", "train", "--data", str(small_mnist_npz), *TINY, "--members", "3",
               "--out", str(run_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(tmp_path / "killed.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        deadline = time.monotonic() + 300
        try:
            while not (run_dir / "member_00.json").exists():
                assert process.poll() is None, f"exited early: {(tmp_path / 'killed.log').read_text()[-2000:]}"
                assert time.monotonic() < deadline, "member 00 never appeared"
                time.sleep(0.05)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "member_02.json").exists(), "the run was killed before its end"
    kept = sha256(run_dir / "member_00.keras")
    (run_dir / STRAY).write_bytes(b"half a zip")  # as if killed while writing

    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming: members 00 already trained, kept" in done.stdout
    assert "(trained 2, kept 1)" in done.stdout
    assert sha256(run_dir / "member_00.keras") == kept
    for index in range(3):
        model = keras.saving.load_model(run_dir / f"member_{index:02d}.keras", safe_mode=True)
        assert model.output_shape == (None, 10)
    report = json.loads((run_dir / "report.json").read_text())
    assert [m["name"] for m in report["members"]] == ["member_00", "member_01", "member_02"]
    assert not temporaries(run_dir), "the resumed run removes what the killed one left"

    # a stray temporary file in a finished run folder does not disturb evaluate either
    (run_dir / STRAY).write_bytes(b"half a zip")
    evaluated = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir)])
    assert evaluated.exit_code == 0, evaluated.output
    assert len(json.loads((run_dir / "report.json").read_text())["members"]) == 3


def test_failing_member_does_not_lose_the_others(tmp_path, small_mnist_npz, monkeypatch, fake_training):
    """(The members that do not fail are saved untrained by ``fake_training``: the property is what a failure
    leaves, not the training; a real run killed mid-way is tested above.)"""
    real = ensemble_cnn.training.member.train_runs

    def member_1_fails(config, runs, run_dir, **kwargs):
        if any(run == 1 for run, _ in runs):
            raise RuntimeError("simulated failure of member 1\nwith a second line nobody should see")
        return real(config, runs, run_dir, **kwargs)

    monkeypatch.setattr(ensemble_cnn.training.member, "train_runs", member_1_fails)
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(small_mnist_npz), *TINY, "--members", "3", "--out", str(run_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert "member 01 failed: RuntimeError: simulated failure of member 1" in result.output
    assert "second line" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: 1 of 3 members failed; the others are saved in {run_dir} "
                      "(run the same command again to retry)"]
    records = RunFolder(run_dir).records(3)
    assert [r["index"] for r in records] == [0, 2]
    assert RunFolder(run_dir).verify_all(records, load=load_member) == {}
    report = json.loads((run_dir / "report.json").read_text())
    assert len(report["members"]) == 2 and report["missing_members"] == [1]

    monkeypatch.setattr(ensemble_cnn.training.member, "train_runs", real)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "members 00, 02 already trained, kept" in again.output and "(trained 1, kept 2)" in again.output


def test_stray_temporaries_do_not_break_resume(tmp_path, make_run):
    """Temp files a killed attempt (or a retried cluster task) left are ignored by resume and then removed."""
    from ensemble_cnn.training.train import train_ensemble

    run_dir = tmp_path / "run"
    config = make_run(run_dir, members=2)
    before = {name: sha256(run_dir / name) for name in ("member_00.keras", "member_01.keras")}
    strays = [STRAY, ".member_01_test_proba.npy.x9Y_z0ab.tmp.npy", ".member_01.json.abcdefgh.tmp.json"]
    for name in strays:
        (run_dir / name).write_bytes(b"\x00garbage")
    result = train_ensemble(config, run_dir, log=None)
    assert result.complete and result.reused == [0, 1] and not result.trained
    assert {name: sha256(run_dir / name) for name in before} == before
    assert not temporaries(run_dir)
    (run_dir / "notes.tmp.txt").write_text("not ours: kept")  # only the atomic writer's own pattern is removed
    train_ensemble(config, run_dir, log=None)
    assert (run_dir / "notes.tmp.txt").exists()


def _member_1_worker_dies(config, group, folder, settings, log, round_index=0, announce=True):
    """Worker task: member 0 trains for real; member 1's worker process dies (no exception, no retry).

    Member 1 waits for member 0's record first, so the pool breaks only after member 0
    is complete on disk: whichever way the race between its result and the crash goes,
    member 0 must be kept.
    """
    from ensemble_cnn.training import train
    if any(run == 1 for run, _ in group):
        deadline = time.monotonic() + 300
        while not (Path(folder) / "member_00.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(3)  # as a worker killed by the OS: loky sees a terminated worker
    return train._guarded_train(config, group, folder, settings, log, round_index, announce)


def test_lost_worker_without_retry_keeps_finished_members(tmp_path, tiny_config, monkeypatch):
    """A loky worker that dies mid-run: the finished member is kept, the lost one fails with the reason."""
    from ensemble_cnn.training import train
    monkeypatch.setattr(train, "_task", lambda mode: _member_1_worker_dies)
    config = tiny_config(members=2, mode="processes", jobs=2)
    runs = [(0, [0]), (1, [1])]
    assert train.plan_groups(runs, mode="processes", jobs=2) == ([[(0, [0])], [(1, [1])]], []), \
        "both members go to worker processes"
    run_dir = tmp_path / "run"
    result = train.train_ensemble(config, run_dir, log=None)

    assert [r["index"] for r in result.records] == [0] and result.trained == [0]
    assert list(result.failures) == [1]
    assert result.failures[1].startswith("worker lost: TerminatedWorkerError"), result.failures[1]
    assert "\n" not in result.failures[1]
    assert not result.complete
    assert RunFolder(run_dir).verify_all(result.records, load=load_member) == {}
    assert not (run_dir / "member_01.json").exists()
    assert [r["index"] for r in RunFolder(run_dir).records(2)] == [0]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_stop_when_the_command_alone_is_killed(tmp_path, small_mnist_npz):
    """SIGKILL the driver only (as `kill -9 PID` or an out-of-memory kill would): its worker processes, busy
    training, exit within seconds instead of training on into a folder nobody holds."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    run_dir = tmp_path / "run"
    args = [a for a in TINY if a not in ("--mode", "sequential", "--jobs", "1")]
    command = [sys.executable, "-m", "cli", "train", "--data", str(small_mnist_npz), *args, "--members", "2",
               "--epochs", "30", "--mode", "processes", "--jobs", "2", "--out", str(run_dir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers: list[int] = []
    with open(tmp_path / "train.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while "epoch   1/30" not in (tmp_path / "train.log").read_text():
                assert process.poll() is None, (tmp_path / "train.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "no worker ever trained"
                time.sleep(0.1)
            workers = [pid for pid in _children(process.pid)
                       if "popen_loky_posix" in Path(f"/proc/{pid}/cmdline").read_text()]
            assert workers, "the members train in worker processes"
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            deadline = time.monotonic() + 20
            while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not any(_alive(pid) for pid in workers), "the workers went on training without their command"
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            for pid in workers:  # never leave a stray worker behind, whatever failed
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    assert not (run_dir / "member_00.json").exists() and not (run_dir / "member_01.json").exists()
