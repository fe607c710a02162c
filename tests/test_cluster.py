"""Scale-out on real cluster engines: dask.distributed (local cluster, a scheduler address, a worker killed) and ray."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.evaluate import evaluate_run
from ensemble_cnn.train import load_records, train_ensemble
from ensemble_cnn.verify import verify_members

REPO_ROOT = Path(__file__).resolve().parent.parent


def tiny(data, **overrides) -> TrainConfig:
    settings = dict(arch="nielsen", width=0.25, members=2, epochs=1, limit=500, val_size=50, batch_size=32,
                    augmentation="none", distortion={}, precision="float32", mode="processes", jobs=2,
                    data=str(data))
    return TrainConfig(**{**settings, **overrides})


def assert_run_complete(run_dir: Path, members: int = 2) -> None:
    """Every member present, its files matching its record, loadable with safe_mode; the vote scores."""
    _, records = load_records(run_dir)
    assert [r["index"] for r in records] == list(range(members))
    assert verify_members(run_dir, records) == {}
    report = evaluate_run(run_dir, reload=True, plots=False, log=None)
    assert len(report["members"]) == members
    assert report["ensemble"]["majority"]["test_accuracy"] > 0.3, "the members learned something"
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]


def test_dask_local_cluster_started_for_the_run(tmp_path, small_mnist_npz):
    pytest.importorskip("distributed")
    lines = []
    result = train_ensemble(tiny(small_mnist_npz, backend="dask"), tmp_path / "run", log=lines.append)
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
        command = [sys.executable, "-m", "cli", "train", "--data", str(small_mnist_npz), "--arch", "nielsen",
                   "--width", "0.25", "--members", "2", "--epochs", "2", "--limit", "500", "--val-size", "50",
                   "--batch-size", "32", "--augment", "none", "--precision", "float32", "--jobs", "2",
                   "--backend", "dask", "--scheduler", cluster.scheduler_address, "--out", str(run_dir)]
        with open(tmp_path / "train.log", "wb") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, start_new_session=True)
            try:
                victim = _busy_worker(client, process, seconds=120)
                time.sleep(1.0)  # let it get into TensorFlow
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


def _busy_worker(client, process, *, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before a worker could be killed"
        busy = sorted(worker for worker, keys in client.processing().items() if keys)
        if busy:
            return busy[0]
        time.sleep(0.1)
    raise AssertionError("no worker ever got a task")


def test_ray_local_session(tmp_path, small_mnist_npz, monkeypatch):
    """`--backend ray` without an address: the library's own local ray.init(num_cpus=jobs), shut down after."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    lines = []
    try:
        result = train_ensemble(tiny(small_mnist_npz, backend="ray"), tmp_path / "run", log=lines.append)
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
        ("fused", "loky", 1, [], [[0, 1, 2]]),
        ("fused", "loky", 2, [[0, 1], [2]], []),
        ("processes", "dask", 1, [[0], [1], [2]], []),  # a cluster gets every member, whatever --jobs
        ("processes", "ray", 2, [[0], [1], [2]], []),
        ("fused", "dask", 1, [[0, 1, 2]], []),
    ],
)
def test_plan_groups_sends_every_member_to_a_cluster(mode, backend, jobs, remote, local):
    from ensemble_cnn.train import plan_groups

    config = TrainConfig(members=3, mode=mode, backend=backend, jobs=jobs)
    assert plan_groups(config, [0, 1, 2]) == (remote, local)
    assert plan_groups(config, []) == ([], [])
