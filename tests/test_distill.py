"""Distillation (``train --teacher RUN``): soft targets from a finished run's committee, through the real paths.

ONE tiny teacher run (2 members) and ONE student run taught by it are trained through the
command line (module fixtures) and reused: the teacher file the driver wrote equals the
teacher's committee on the student's training digits, the targets the workers train on are
the blend of label and teacher, the loss really sees them (a student differs from the plain
run of the same seed), the teacher is left untouched, and the run's identity holds the
teacher. The blend itself is checked on arrays with known answers, the fused path against a
member trained alone, and every bad ``--teacher`` is refused in one line before anything is
written.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import tiny_args
from ensemble_cnn.data.training import load_pool, split_for_member
from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.seeding import member_seed
from ensemble_cnn.storage.run_folder import TEACHER_NAME, RunFolder
from ensemble_cnn.training.member import plan_run
from ensemble_cnn.training.teacher import soft_targets

WEIGHT = 0.3


def train(*args: str) -> object:
    return CliRunner().invoke(main, ["train", *args], catch_exceptions=False)


def folder_hashes(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_mnist_npz):
    """(teacher, student, plain, teacher's file hashes before the student trained): 2 tiny members each."""
    root = tmp_path_factory.mktemp("distill")
    data = ["--data", str(small_mnist_npz)]
    teacher, student, plain = root / "teacher", root / "student", root / "plain"
    epochs = tiny_args(members="2", epochs="2")
    assert train(*epochs, *data, "--out", str(teacher)).exit_code == 0
    before = folder_hashes(teacher)
    result = train(*epochs, *data, "--out", str(student), "--teacher", str(teacher), "--teacher-weight", str(WEIGHT))
    assert result.exit_code == 0, result.output
    assert "teacher: 2 members" in result.output
    assert train(*epochs, *data, "--out", str(plain)).exit_code == 0
    return teacher, student, plain, before


# ---------------------------------------------------------------------- the blend, known answers
def test_soft_targets_blend_label_and_teacher():
    labels = np.array([0, 2])
    teacher = np.array([[0.5, 0.5] + [0.0] * 8, [0.0] * 9 + [1.0]], dtype=np.float32)
    got = soft_targets(labels, teacher, weight=0.25)
    want = np.zeros((2, 10), dtype=np.float32)
    want[0, :2] = [0.75 + 0.125, 0.125]
    want[1, 2], want[1, 9] = 0.75, 0.25
    np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    # a teacher sure of a wrong class still leaves the label on top (what accuracy counts)
    assert (soft_targets(labels, teacher, weight=0.49).argmax(axis=1) == labels).all()


@pytest.mark.parametrize("weight", [0.0, 0.5, -0.1, float("nan")])
def test_soft_targets_refuse_a_weight_outside_the_open_interval(weight):
    with pytest.raises(ValueError, match="teacher_weight must be in"):
        soft_targets(np.array([1]), np.full((1, 10), 0.1, dtype=np.float32), weight=weight)


def test_soft_targets_refuse_probabilities_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(2, 10\)"):
        soft_targets(np.array([1, 2]), np.full((2, 9), 0.1, dtype=np.float32), weight=0.3)


# ---------------------------------------------------------------------- the real run
def test_driver_writes_the_teachers_committee_on_the_training_digits(runs, small_mnist_npz):
    teacher, student, _, _ = runs
    config = RunFolder(student).require_config()
    pool = load_pool(data=config.data, expanded=None, limit=config.limit)
    written = np.load(student / TEACHER_NAME)
    assert written.shape == (len(pool.data.x_train), 10) and written.dtype == np.float32
    want = Ensemble.load(teacher).member_probabilities(pool.data.x_train).mean(axis=0)
    np.testing.assert_allclose(written, want, atol=1e-5)


def test_config_names_the_teacher_resolved_with_its_members_fingerprint(runs):
    teacher, student, _, _ = runs
    saved = json.loads((student / "config.json").read_text())
    assert saved["teacher"] == str(teacher.resolve())
    assert saved["teacher_weight"] == WEIGHT
    records = [json.loads((teacher / f"member_0{i}.json").read_text()) for i in range(2)]
    digest = hashlib.sha256("".join(f"{r['index']}:{r['model_sha256']}\n" for r in records).encode()).hexdigest()
    assert saved["teacher_fingerprint"] == digest


def test_workers_train_on_the_blend_of_label_and_teacher(runs):
    _, student, _, _ = runs
    config = RunFolder(student).require_config()
    pool = load_pool(data=config.data, expanded=None, limit=config.limit)
    probabilities = np.load(student / TEACHER_NAME)
    plain, taught = plan_run(config, 1, pool), plan_run(config, 1, pool, teacher=probabilities)
    np.testing.assert_array_equal(taught.x_train, plain.x_train)
    rows = split_for_member(pool, val_size=config.val_size, seed=member_seed(config.seed, 1), holdout=config.holdout,
                            root_seed=config.seed).train_rows
    np.testing.assert_allclose(taught.y_train, soft_targets(pool.data.y_train[rows], probabilities[rows],
                                                            weight=WEIGHT), atol=1e-7)
    np.testing.assert_array_equal(taught.y_val.argmax(axis=1), plain.y_val)
    x, y = next(taught.stream(config))
    assert y.shape == (len(x), 10) and y.dtype == np.float32


def test_the_loss_sees_the_teacher(runs):
    """Same seeds, batches and initial weights: only the targets differ, so the members must."""
    _, student, plain, _ = runs
    for i in range(2):
        taught = np.load(student / f"member_0{i}_test_proba.npy")
        alone = np.load(plain / f"member_0{i}_test_proba.npy")
        assert np.abs(taught - alone).max() > 1e-3


def test_the_teacher_is_left_untouched(runs):
    teacher, _, _, before = runs
    assert folder_hashes(teacher) == before


def test_growing_the_student_reuses_its_teacher_file(runs, tmp_path, small_mnist_npz):
    teacher, student, _, _ = runs
    grown = tmp_path / "grown"
    shutil.copytree(student, grown)
    stamp = (grown / TEACHER_NAME).stat().st_mtime_ns
    result = train(*tiny_args(members="3", epochs="2"), "--data", str(small_mnist_npz), "--out", str(grown),
                   "--teacher", str(teacher), "--teacher-weight", str(WEIGHT))
    assert result.exit_code == 0, result.output
    assert (grown / TEACHER_NAME).stat().st_mtime_ns == stamp
    assert "teacher:" not in result.output
    assert RunFolder(grown).records(3)[2]["index"] == 2


def test_another_weight_or_a_changed_teacher_is_another_run(runs, tmp_path, small_mnist_npz):
    teacher, student, _, _ = runs
    args = [*tiny_args(members="2", epochs="2"), "--data", str(small_mnist_npz), "--out", str(student)]
    result = train(*args, "--teacher", str(teacher), "--teacher-weight", "0.2")
    assert result.exit_code == 1 and "--teacher-weight (0.3 in the folder, 0.2 asked)" in result.output
    changed = tmp_path / "changed"
    shutil.copytree(teacher, changed)
    grown = train(*tiny_args(members="3", epochs="2"), "--data", str(small_mnist_npz), "--out", str(changed))
    assert grown.exit_code == 0, grown.output
    result = train(*args, "--teacher", str(changed), "--teacher-weight", str(WEIGHT))
    assert result.exit_code == 1 and "the teacher's members (their sha256)" in result.output


# ---------------------------------------------------------------------- fused
def test_fused_member_with_a_teacher_matches_the_member_trained_alone(tiny_config):
    import keras

    from ensemble_cnn.training.fused import build_fused
    from ensemble_cnn.training.member import build_member, compile_members

    cfg = tiny_config(members=2, batch_size=16, teacher="taught", teacher_weight=0.4)
    pool = load_pool(data=cfg.data, expanded=None, limit=cfg.limit)
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10), size=len(pool.data.x_train)).astype(np.float32)
    plans = [plan_run(cfg, i, pool, teacher=probabilities) for i in range(2)]
    batches = [next(plan.stream(cfg)) for plan in plans]
    fused, members = build_fused(cfg, plans)
    compile_members(fused, cfg, steps_per_epoch=10)
    for _ in range(3):
        fused.train_on_batch(tuple(b[0] for b in batches), tuple(b[1] for b in batches))
    for position, (plan, batch) in enumerate(zip(plans, batches)):
        keras.utils.set_random_seed(plan.seed)
        alone = build_member(cfg, name=f"nielsen_{position}")
        compile_members(alone, cfg, steps_per_epoch=10)
        for _ in range(3):
            alone.train_on_batch(batch[0], batch[1])
        for got, want in zip(members[position].get_weights(), alone.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- refused, nothing written
def bad_teacher_cases(runs, tmp_path, small_mnist_npz):
    teacher = runs[0]
    broken = tmp_path / "broken"
    shutil.copytree(teacher, broken)
    (broken / "member_01.keras").write_bytes(b"not a model")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "not a run": (empty, [], "--teacher", "no config.json"),
        "other digits": (teacher, ["--limit", "400"], "--teacher", "trained on other digits"),
        "a member broken": (broken, [], "--teacher", "1 of 2 members not complete: member_01"),
    }


@pytest.mark.parametrize("case", ["not a run", "other digits", "a member broken"])  # itself: test_output_containment
def test_a_bad_teacher_is_refused_in_one_line_before_anything_is_written(runs, tmp_path, small_mnist_npz, case):
    out = tmp_path / "out"
    teacher, extra, option, message = bad_teacher_cases(runs, tmp_path, small_mnist_npz)[case]
    result = train(*tiny_args(members="2"), "--data", str(small_mnist_npz), *extra, "--out", str(out),
                   "--teacher", str(teacher))
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: {option}") and message in line
    assert sum(text.startswith("Error") for text in result.output.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--teacher-weight", "0.3"], "--teacher-weight"),
    (["--teacher", "TEACHER", "--teacher-weight", "0.5"], "--teacher-weight"),
    (["--teacher", "no/such/folder"], "--teacher"),
])
def test_bad_teacher_options_exit_2(runs, tmp_path, small_mnist_npz, args, message):
    args = [str(runs[0]) if a == "TEACHER" else a for a in args]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["train", *tiny_args(), "--data", str(small_mnist_npz), "--out", str(out),
                                       *args])
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()
