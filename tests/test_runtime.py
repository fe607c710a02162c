"""A quiet, fast start: no TensorFlow/absl/CUDA start-up lines unless asked for, in the workers too; oneDNN on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_ARGS
from ensemble_cnn import runtime
from ensemble_cnn.training.execution import Execution

REPO_ROOT = Path(__file__).resolve().parent.parent
# What TensorFlow prints at start-up on a CPU-only machine when nobody hides it.
START_UP_LINES = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN custom operations", "cpu_feature_guard")


def run_cli(args: list[str], *, env_extra: dict[str, str], drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in (runtime.VERBOSE_ENV, runtime.LOG_LEVEL_ENV, runtime.ONEDNN_ENV, *drop)}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**env, **env_extra}, timeout=600)


@pytest.fixture(scope="module")
def quiet_and_verbose_runs(small_mnist_npz, tmp_path_factory):
    """The same 2-member, 2-epoch run in 2 worker processes, quiet (default) and --verbose (in subprocesses, so
    that the workers' own output is in their stdout: loky may reuse workers started by earlier tests, whose
    output pytest's fd capture would not attribute to a test)."""
    root = tmp_path_factory.mktemp("runtime")
    parallel = [arg for arg in TINY_ARGS if arg not in ("--mode", "sequential", "--jobs", "1")]
    common = ["--data", str(small_mnist_npz), *parallel, "--members", "2", "--epochs", "2", "--mode", "processes",
              "--jobs", "2"]
    quiet = run_cli(["train", *common, "--out", str(root / "quiet")], env_extra={})
    verbose = run_cli(["--verbose", "train", *common, "--out", str(root / "verbose")], env_extra={})
    return quiet, verbose


def test_default_start_is_quiet_in_driver_and_workers(quiet_and_verbose_runs):
    quiet, _ = quiet_and_verbose_runs
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "2 worker processes x 1 TensorFlow threads" in quiet.stdout, "the members did train in workers"
    output = quiet.stdout + quiet.stderr
    for line in START_UP_LINES:
        assert line not in output, f"start-up line {line!r} shown:\n{output[:3000]}"


def test_verbose_shows_tensorflow_start_up_lines(quiet_and_verbose_runs):
    _, verbose = quiet_and_verbose_runs
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    output = verbose.stdout + verbose.stderr
    assert "oneDNN custom operations are on" in output, "oneDNN is switched on, and said so when verbose"
    assert output.count("oneDNN custom operations are on") >= 2, "the workers are verbose too"


def test_quiet_import_still_shows_python_errors(tmp_path):
    """Hiding TensorFlow's start-up lines must not hide a real error of the command."""
    result = run_cli(["evaluate", "--run", str(tmp_path)], env_extra={})
    assert result.returncode == 1 and "no config.json" in result.stderr


def test_prepare_environment_never_overrides_the_user(monkeypatch):
    monkeypatch.setenv(runtime.ONEDNN_ENV, "0")
    monkeypatch.setenv(runtime.LOG_LEVEL_ENV, "1")
    monkeypatch.delenv(runtime.VERBOSE_ENV, raising=False)
    runtime.prepare_environment()
    assert os.environ[runtime.ONEDNN_ENV] == "0" and os.environ[runtime.LOG_LEVEL_ENV] == "1"


def test_prepare_environment_defaults(monkeypatch):
    for name in (runtime.ONEDNN_ENV, runtime.LOG_LEVEL_ENV, runtime.VERBOSE_ENV):
        monkeypatch.delenv(name, raising=False)
    runtime.prepare_environment()
    assert os.environ[runtime.ONEDNN_ENV] == "1" and os.environ[runtime.LOG_LEVEL_ENV] == "3"
    monkeypatch.delenv(runtime.LOG_LEVEL_ENV)
    runtime.prepare_environment(verbose=True)
    assert runtime.LOG_LEVEL_ENV not in os.environ and os.environ[runtime.VERBOSE_ENV] == "1"
    assert runtime.is_verbose()


@pytest.mark.parametrize("mode, jobs, members, concurrent, threads",
                         [("processes", 2, 5, 2, 1), ("processes", 2, 1, 1, 1), ("sequential", 1, 3, 1, 2),
                          ("fused", 1, 5, 5, 2)])
def test_execution_concurrency_and_threads(mode, jobs, members, concurrent, threads):
    execution = Execution(mode=mode, jobs=jobs, precision="float32", cores=2)
    assert execution.concurrent(members) == concurrent and execution.threads == threads


def test_finish_estimate_counts_the_rounds_left(monkeypatch):
    """Round 0 of 3 rounds, 10 epochs of 30 s: the run ends 3 x 10 x 30 s after this member started."""
    import time

    from ensemble_cnn.training.callbacks import FinishEstimate

    monkeypatch.setattr(time, "time", lambda: 1000.0)
    estimate = FinishEstimate(started=900.0, rounds=3, round_index=0)
    assert estimate.finish_time(30.0, 10) == pytest.approx(1000.0 - 30.0 + 3 * 10 * 30.0)
    assert FinishEstimate(started=900.0, rounds=3, round_index=2).finish_time(30.0, 10) == pytest.approx(1270.0)


def test_train_prints_an_estimated_finish_after_the_first_epoch(tiny_config, tmp_path):
    from ensemble_cnn.training.train import train_ensemble

    lines = []
    train_ensemble(tiny_config(epochs=2), tmp_path / "run", log=lines.append)
    estimates = [line for line in lines if line.startswith("estimated finish")]
    assert len(estimates) == 1 and "min, from this first epoch" in estimates[0]
    first_epoch = next(i for i, line in enumerate(lines) if "epoch   1/2" in line)
    assert lines.index(estimates[0]) == first_epoch + 1


def test_two_workers_print_the_finish_estimate_once(quiet_and_verbose_runs):
    """Both workers train in the first round; only one of them announces the run's finish time."""
    result, _ = quiet_and_verbose_runs
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert sum("epoch   1/2" in line for line in lines) == 2, result.stdout
    assert sum(line.startswith("estimated finish") for line in lines) == 1, result.stdout


RETRACE = """
from ensemble_cnn import runtime
tf = runtime.import_tensorflow()
for n in range(1, 8):  # a new tf.function each time: TensorFlow warns about retracing from the 5th on
    tf.function(lambda x: x + 1)(tf.zeros((n,)))
print("done")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflow_python_warnings_are_hidden_unless_verbose(verbose):
    env = {k: v for k, v in os.environ.items() if k not in (runtime.VERBOSE_ENV, runtime.LOG_LEVEL_ENV)}
    if verbose:
        env[runtime.VERBOSE_ENV] = "1"
    result = subprocess.run([sys.executable, "-c", RETRACE], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]
    assert ("triggered tf.function retracing" in result.stderr) == verbose, result.stderr[-2000:]
