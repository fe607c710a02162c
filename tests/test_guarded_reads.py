"""Every file the package reads goes through one guarded open (docs/guarantees.md).

Regular files only (a FIFO is refused, never waited on; a device is refused, never read
without end), a size bound on what is read from the open descriptor, deep nesting refused
in one line (never a ``RecursionError``), and the teacher's targets checked against the
sha256 recorded when they were written, their ``.npy`` header before anything is allocated.

The cases that would hang or eat memory on a broken build run the command line in a fresh
process, killed after a timeout (a hang fails the test, it never blocks the suite) and with
its address space capped (a read without end fails, not the machine). The run folders are
untrained (``make_run``; the student's training is the ``fake_training`` fixture's): the
property is which files are read and how, not what the members learned.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from click.testing import CliRunner

import ensemble_cnn
from cli.main import main
from conftest import TINY_ARGS, tiny_args, write_fake_member
from test_bad_inputs import assert_one_line_error, invoke
from test_guarantees import finishes_within

# the tree under test (PYTHONPATH first): the fresh processes import the same package
TREE = Path(ensemble_cnn.__file__).resolve().parent.parent
DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_PLAN = "[[members]]\ncount = " + "[" * 5000 + "1" + "]" * 5000 + "\n"
NESTED = "nested more than 100 levels deep"
CAPPED_MEMORY = 2 << 30  # far more than any refusal needs; /dev/zero read into memory passes it in seconds
WEIGHT = "0.3"


def run_cli(args: list, cwd: Path, *, timeout: float = 120, memory: int | None = None) -> subprocess.CompletedProcess:
    """``ensemble-cnn ARGS`` in a fresh process in ``cwd``; the test fails if it has not ended after ``timeout``."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(TREE)}, timeout=timeout,
                              preexec_fn=cap_memory if memory else None)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ensemble-cnn {args[0]} still running after {timeout} s: it waits on a file it should refuse")


def assert_refused(result: subprocess.CompletedProcess, code: int, text: str, *, listed: str = "") -> None:
    """Exit ``code`` with one final one-line error holding ``text``, no traceback; ``listed``: a line above it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("Error") and sum(line.startswith("Error") for line in lines) == 1, lines
    assert text in lines[-1], lines[-1]
    assert not listed or any(listed in line for line in lines[:-1]), lines


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@contextmanager
def fifo_at(path: Path) -> Iterator[Path]:
    """``path`` replaced by a FIFO; on leaving, its writing end is opened once: a reader left waiting on it goes on."""
    replace_with_fifo(path)
    try:
        yield path
    finally:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            pass  # nobody waits on it
        else:
            os.close(fd)


def replace_with_link(path: Path, target: str) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(target)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, make_run) -> Path:
    """A run of 2 untrained members, each with a record matching its files; a digit to predict beside it."""
    run = tmp_path_factory.mktemp("guarded") / "run"
    make_run(run, members=2)
    np.save(run.parent / "digits.npy", np.full((1, 28, 28), 0, np.uint8) + np.eye(28, dtype=np.uint8) * 255)
    return run


@pytest.fixture()
def run(base_run, tmp_path) -> Path:
    """A copy of ``base_run`` to spoil (``tmp_path / "run"``; its digit at ``tmp_path / "digits.npy"``)."""
    shutil.copy(base_run.parent / "digits.npy", tmp_path / "digits.npy")
    return Path(shutil.copytree(base_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def taught(tmp_path_factory, make_run, tiny_config) -> tuple[Path, Path]:
    """(teacher, student): a 1-member run taught by an untrained 1-member run, its teacher file written by train."""
    from ensemble_cnn.data.training import load_pool
    from ensemble_cnn.storage.run_folder import RunFolder
    from ensemble_cnn.training.member import build_member
    from ensemble_cnn.training.teacher import write_teacher_targets
    from ensemble_cnn.training.train import prepare_run

    root = tmp_path_factory.mktemp("taught")
    teacher, student = root / "teacher", root / "student"
    make_run(teacher, members=1)
    config = prepare_run(tiny_config(members=1, teacher=str(teacher), teacher_weight=float(WEIGHT)), student)
    pool = load_pool(data=config.data, expanded=None, limit=config.limit)
    write_teacher_targets(config, RunFolder(student), pool.data.x_train)
    write_fake_member(student, 0, build_member(config), n_test=1000)
    return teacher, student


def grow_args(teacher: Path, student: Path, data: Path) -> list[str]:
    """``train`` growing the student from 1 to 2 members, same teacher and weight."""
    return ["train", "--data", str(data), *tiny_args(members="2"), "--teacher", str(teacher),
            "--teacher-weight", WEIGHT, "--out", str(student)]


# ---------------------------------------------------------------------- 2. special files in a run folder
def test_a_fifo_config_is_refused_not_waited_on(run, tmp_path):
    replace_with_fifo(run / "config.json")
    assert_refused(run_cli(["predict", "--run", run, "digits.npy"], tmp_path), 1,
                   "run/config.json: not a valid run config (it is a FIFO, not a regular file)")


def test_a_fifo_member_record_is_refused_not_waited_on(run, tmp_path):
    with fifo_at(run / "member_01.json"):  # in this process (the member's model loads fast here): a hang fails
        result = finishes_within(60, lambda: CliRunner().invoke(main, ["predict", "--run", str(run),
                                                                       str(tmp_path / "digits.npy")]))
    assert_one_line_error(result, 1, "1 of 2 members left out")
    assert f"member 01 left out: {run}/member_01.json: is a FIFO, expected a regular member record file" \
        in result.output


def test_a_config_linked_to_dev_zero_is_refused_unread(run, tmp_path):
    replace_with_link(run / "config.json", "/dev/zero")
    assert_refused(run_cli(["predict", "--run", run, "digits.npy"], tmp_path, memory=CAPPED_MEMORY), 1,
                   "run/config.json: not a valid run config (it is a character device, not a regular file)")


def test_a_fifo_teacher_file_is_refused_not_waited_on(taught, tmp_path, small_mnist_npz, fake_training):
    teacher, student = taught
    grown = Path(shutil.copytree(student, tmp_path / "grown"))
    with fifo_at(grown / "teacher_train_proba.npy"):  # in this process (TensorFlow started here already)
        result = finishes_within(60, lambda: CliRunner().invoke(main, grow_args(teacher, grown, small_mnist_npz)))
    assert_one_line_error(result, 1, "grown/teacher_train_proba.npy: is a FIFO, expected a regular teacher "
                                     "probabilities file")
    assert fake_training == [], "nothing trained"


# ---------------------------------------------------------------------- 3. a special file as --plan
@pytest.mark.parametrize("kind, words", [("fifo", "it is a FIFO"), ("/dev/zero", "it is a character device")])
def test_a_plan_that_is_not_a_regular_file_is_refused_unread(kind, words, tmp_path, small_mnist_npz):
    plan = tmp_path / "plan.toml"
    if kind == "fifo":
        os.mkfifo(plan)
    else:
        plan.symlink_to("/dev/zero")
    args = ["train", "--data", small_mnist_npz, *tiny_args(drop=("--members",)), "--plan", plan,
            "--out", tmp_path / "run"]
    result = run_cli(args, tmp_path, memory=CAPPED_MEMORY)
    assert_refused(result, 2, f"--plan: {plan}: not a plan file ({words}, not a regular file)")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- 4. deep nesting
def test_a_deeply_nested_config_is_refused_in_one_line(run, tmp_path, small_mnist_npz):
    from ensemble_cnn.errors import RunFolderError
    from ensemble_cnn.inference.ensemble import Ensemble

    (run / "config.json").write_text(DEEP_JSON)
    message = f"run/config.json: not a valid run config ({NESTED})"
    for args in (["predict", "--run", run, tmp_path / "digits.npy"],
                 ["evaluate", "--run", run],
                 ["train", "--data", small_mnist_npz, *TINY_ARGS, "--out", run],
                 ["compare", run, run],
                 ["export", "--run", run, "--out", tmp_path / "out.keras"]):
        assert_one_line_error(invoke(list(map(str, args)), tmp_path), 1, message)
    with pytest.raises(RunFolderError, match=NESTED):
        Ensemble.load(run)


def test_a_deeply_nested_member_record_is_refused_in_one_line(run, tmp_path, small_mnist_npz, fake_training):
    from ensemble_cnn.errors import MissingMembersError
    from ensemble_cnn.inference.ensemble import Ensemble

    (run / "member_01.json").write_text(DEEP_JSON)
    reason = f"member_01.json: {NESTED}"
    for args in (["predict", "--run", run, tmp_path / "digits.npy"],
                 ["compare", run, run],
                 ["export", "--run", run, "--out", tmp_path / "out.keras"]):  # (exports the other member, exit 1)
        result = CliRunner().invoke(main, list(map(str, args)))
        assert_one_line_error(result, 1, "left out (missing or unusable, listed above)")
        assert f"left out: {run}/{reason}" in result.output
    with pytest.raises(MissingMembersError, match=reason):
        Ensemble.load(run)
    evaluated = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--allow-missing"])
    assert evaluated.exit_code == 0 and reason in evaluated.output, evaluated.output
    trained = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *tiny_args(members="2"),
                                        "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    assert fake_training == [1], "the unreadable record's member is trained again, the other kept"


def test_a_deeply_nested_plan_is_refused_in_one_line(tmp_path, small_mnist_npz):
    from ensemble_cnn.plan import PlanError, read_plan

    plan = tmp_path / "plan.toml"
    plan.write_text(DEEP_PLAN)
    args = ["train", "--data", str(small_mnist_npz), *tiny_args(drop=("--members",)), "--plan", str(plan),
            "--out", str(tmp_path / "run")]
    assert_one_line_error(invoke(args, tmp_path), 2, f"plan.toml: not a plan file ({NESTED})")
    with pytest.raises(PlanError, match=NESTED):
        read_plan(plan)


# ---------------------------------------------------------------------- 12. the teacher file's integrity
def test_a_forged_teacher_file_is_refused_when_the_run_grows(taught, tmp_path, small_mnist_npz, fake_training):
    teacher, student = taught
    genuine = Path(shutil.copytree(student, tmp_path / "genuine"))
    stamp = (genuine / "teacher_train_proba.npy").stat().st_mtime_ns
    result = CliRunner().invoke(main, grow_args(teacher, genuine, small_mnist_npz))
    assert result.exit_code == 0 and fake_training == [1], result.output
    assert (genuine / "teacher_train_proba.npy").stat().st_mtime_ns == stamp, "the genuine file is reused, unwritten"

    forged = Path(shutil.copytree(student, tmp_path / "forged"))
    targets = np.load(forged / "teacher_train_proba.npy")
    np.save(forged / "teacher_train_proba.npy", targets[:, ::-1].copy())  # finite probabilities, every row sums to 1
    result = CliRunner().invoke(main, grow_args(teacher, forged, small_mnist_npz))
    assert_one_line_error(result, 1, "forged/teacher_train_proba.npy: sha256 differs from the one in "
                                     "teacher_train_proba.json")
    assert fake_training == [1], "nothing trained on the forged targets"


def test_a_teacher_file_with_a_huge_header_is_refused_naming_it(taught, tmp_path, small_mnist_npz, fake_training):
    teacher, student = taught
    grown = Path(shutil.copytree(student, tmp_path / "grown"))
    path = grown / "teacher_train_proba.npy"
    with open(path, "wb") as fh:  # 4e11 bytes promised, 40 held; its record made to match it
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**10, 10)})
        fh.write(bytes(40))
    (grown / "teacher_train_proba.json").write_text(json.dumps({  # the record forged to match: only the header lies
        "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "shape": [10**10, 10],
        "dtype": "float32"}))
    result = CliRunner().invoke(main, grow_args(teacher, grown, small_mnist_npz))
    assert_one_line_error(result, 1, "grown/teacher_train_proba.npy: header gives float32 (10000000000, 10), "
                                     "expected float32 (500, 10)")
    assert fake_training == []
