"""Scale-out on real cluster engines: dask.distributed (local cluster, a scheduler address, a worker killed) and ray."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_args

from ensemble_cnn.evaluation.evaluate import evaluate_run
from ensemble_cnn.models import load_member
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import train_ensemble

REPO_ROOT = Path(__file__).resolve().parent.parent
# 62 steps per member: clearly past chance (about 0.65 on the 1,000 test digits), whatever the CPU's kernels.
ON_A_CLUSTER = dict(members=2, mode="processes", jobs=2, limit=1000, epochs=2)


def assert_run_complete(run_dir: Path, members: int = 2) -> None:
    """Every member present, its files matching its record, loadable with safe_mode; the vote scores."""
    records = RunFolder(run_dir).records(members)
    assert [r["index"] for r in records] == list(range(members))
    assert RunFolder(run_dir).verify_all(records, load=load_member) == {}
    report = evaluate_run(run_dir, reload=True, plots=False, log=None)
    assert len(report["members"]) == members
    assert report["ensemble"]["majority"]["test_accuracy"] > 0.3, "the members learned something"
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]


def test_dask_local_cluster_started_for_the_run(tmp_path, tiny_config):
    pytest.importorskip("distributed")
    lines = []
    result = train_ensemble(tiny_config(**ON_A_CLUSTER, backend="dask"), tmp_path / "run", log=lines.append)
    assert result.complete and sorted(result.trained) == [0, 1], result.failures
    assert any("a local dask cluster of 2 worker processes" in line for line in lines), lines
    assert_run_complete(tmp_path / "run")


def test_dask_scheduler_address_survives_a_killed_worker(tmp_path, small_mnist_npz):
    """`ensemble-cnn train --backend dask --scheduler ADDRESS`; one worker is SIGKILLed while it trains.

    The nanny restarts the worker and the scheduler reruns its task; the rerun writes
    the same fixed file names atomically, so the run completes with sound members.
    """
    distributed = pytest.importorskip("distributed")

    run_dir = tmp_path / "run"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit=0) as cluster, distributed.Client(cluster) as client:
        tiny = tiny_args(drop=("--mode",), **{key: str(value) for key, value in ON_A_CLUSTER.items() if key != "mode"})
        command = [sys.executable, "-m", "cli", "train", "--data", str(small_mnist_npz), *tiny,
                   "--backend", "dask", "--scheduler", cluster.scheduler_address, "--out", str(run_dir)]
        with open(tmp_path / "train.log", "wb") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, start_new_session=True)
            try:
                victim = _busy_worker(client, process, seconds=120)
                _wait_until_training(client, victim, process, seconds=120)
                assert client.processing()[victim], "the victim must still be training"
                pid = client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)
                process.wait(timeout=400)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        output = (tmp_path / "train.log").read_text()
        assert process.returncode == 0, output[-3000:]
        assert victim not in client.scheduler_info()["workers"], "the killed worker was replaced"
    assert f"on the dask cluster at {cluster.scheduler_address}" in output
    assert "(trained 2, kept 0)" in output
    assert_run_complete(run_dir)


def _tensorflow_started() -> bool:
    return "keras" in sys.modules


def _wait_until_training(client, worker: str, process, *, seconds: float) -> None:
    """Wait until ``worker`` has started TensorFlow and Keras for its task (it is training, not unpickling)."""
    deadline = time.monotonic() + seconds
    while not client.run(_tensorflow_started, workers=[worker]).get(worker):
        assert process.poll() is None, "the run ended before a worker could be killed"
        assert time.monotonic() < deadline, "the worker never started TensorFlow"
        time.sleep(0.05)


def _busy_worker(client, process, *, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before a worker could be killed"
        busy = sorted(worker for worker, keys in client.processing().items() if keys)
        if busy:
            return busy[0]
        time.sleep(0.1)
    raise AssertionError("no worker ever got a task")


def test_ray_local_session(tmp_path, tiny_config, monkeypatch):
    """`--backend ray` without an address: the library's own local ray.init(num_cpus=jobs), shut down after."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    lines = []
    try:
        result = train_ensemble(tiny_config(**ON_A_CLUSTER, backend="ray"), tmp_path / "run", log=lines.append)
    finally:
        if ray.is_initialized():
            ray.shutdown()
            pytest.fail("the local ray session was left running")
    assert any("a local ray cluster of 2 CPUs" in line for line in lines), lines
    assert result.complete and sorted(result.trained) == [0, 1], result.failures
    assert_run_complete(tmp_path / "run")


@pytest.mark.parametrize(
    "mode, backend, jobs, remote, local",
    [
        ("sequential", "loky", 2, [], [[0], [1], [2]]),
        ("processes", "loky", 1, [], [[0], [1], [2]]),
        ("processes", "loky", 2, [[0], [1]], [[2]]),  # the one left over trains here with all cores
        ("processes", "loky", 3, [[0], [1], [2]], []),
        ("fused", "loky", 1, [], [[0, 1, 2]]),
        ("fused", "loky", 2, [[0, 1], [2]], []),
        ("processes", "dask", 1, [[0], [1], [2]], []),  # a cluster gets every member, whatever --jobs
        ("processes", "ray", 2, [[0], [1], [2]], []),
        ("fused", "dask", 1, [[0, 1, 2]], []),
    ],
)
def test_plan_groups_sends_every_member_to_a_cluster(mode, backend, jobs, remote, local):
    from ensemble_cnn.training.train import plan_groups

    runs = [(run, [run]) for run in range(3)]

    def of(groups):
        return [[runs[r] for r in group] for group in groups]

    assert plan_groups(runs, mode=mode, jobs=jobs, backend=backend) == (of(remote), of(local))
    assert plan_groups([], mode=mode, jobs=jobs, backend=backend) == ([], [])
