"""Calibration digits that no member saw (issue 31, item 2): ``--holdout shared``.

The split (known answers, no training), the config's rules (an old config.json, a plan group,
``--val-size 0``), and ONE tiny real run (``train --holdout shared``, 2 members, 1 epoch on 600
digits) whose calibration files are checked against the data and the members, then tampered with.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import tiny_args
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.training import TrainingPool, load_pool, shared_holdout, split_for_member
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.plan import PlanError, read_plan
from ensemble_cnn.seeding import HOLDOUT_STREAM, member_seed, run_rng
from ensemble_cnn.storage.calibration import CALIBRATION_NAME, LABELS_NAME, read_calibration
from ensemble_cnn.storage.hashing import sha256_arrays
from ensemble_cnn.storage.run_folder import RunFolder

N_ORIGINALS = 100


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    assert text in errors[0], result.output


def pool_with_variants() -> TrainingPool:
    """100 originals, each followed by one distorted copy: row 2i is original i, row 2i + 1 its variant."""
    source = np.repeat(np.arange(N_ORIGINALS), 2)
    variant = np.tile([0, 1], N_ORIGINALS).astype(np.int16)
    return TrainingPool(None, source, variant, N_ORIGINALS)


def sha256_rows(rows: np.ndarray) -> str:
    return hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest()


# --------------------------------------------------------------------------- the split
def test_a_shared_holdout_is_the_same_for_every_member_and_outside_all_their_training_rows():
    pool = pool_with_variants()
    # Known answer: the originals drawn from the root seed's own stream, as rows (original i is row 2i).
    drawn = np.sort(run_rng(9, HOLDOUT_STREAM).choice(N_ORIGINALS, size=8, replace=False))
    expected_rows = 2 * drawn
    splits = [split_for_member(pool, val_size=8, seed=member_seed(9, i), bootstrap=bootstrap, holdout="shared",
                               root_seed=9) for i in range(4) for bootstrap in (False, True)]
    for split in splits:
        np.testing.assert_array_equal(split.val_rows, expected_rows)
        # neither a held-out original nor its distorted copy is trained on, by any member
        assert not np.isin(pool.source_index[split.train_rows], drawn).any()
    plain = [s for s, bootstrap in zip(splits, [False, True] * 4) if not bootstrap]
    for split in plain:  # without bagging every other row is trained on
        assert len(split.train_rows) == 2 * N_ORIGINALS - 16
    np.testing.assert_array_equal(shared_holdout(pool, val_size=8, root_seed=9), expected_rows)
    # another root seed draws other digits; members' own hold-outs differ from member to member
    assert not np.array_equal(shared_holdout(pool, val_size=8, root_seed=10), expected_rows)
    own = [split_for_member(pool, val_size=8, seed=member_seed(9, i)).val_rows for i in range(2)]
    assert not np.array_equal(own[0], own[1])
    # capped at a tenth of the originals, like a member's own
    assert len(shared_holdout(pool, val_size=5000, root_seed=9)) == N_ORIGINALS // 10
    with pytest.raises(ValueError, match="root_seed"):
        split_for_member(pool, val_size=8, seed=3, holdout="shared")


@pytest.mark.parametrize("seed, bootstrap, val_rows, train_sha256", [
    # computed with the code before --holdout existed (commit ef51a02): today's runs must split the same way
    (3, False, [24, 50, 72, 100, 116, 122, 176, 196],
     "044c344d273ff2b54bbf6af4d504cb692d28ce435969e5f75d9dd7b7a14f77e4"),
    (3, True, [24, 50, 72, 100, 116, 122, 176, 196],
     "b828420cb1012802d7acf7aa4afe93ec367aca98d57ebf9f18a3b61585d690dd"),
    (11, False, [44, 108, 128, 130, 134, 136, 160, 166],
     "cba09604736739ea4b67b31b7d477c22c9a17e00283fef18b14ff8688f2fa4da"),
])
def test_a_member_holdout_splits_exactly_as_before(seed, bootstrap, val_rows, train_sha256):
    split = split_for_member(pool_with_variants(), val_size=8, seed=seed, bootstrap=bootstrap)
    assert split.val_rows.tolist() == val_rows and sha256_rows(split.train_rows) == train_sha256
    again = split_for_member(pool_with_variants(), val_size=8, seed=seed, bootstrap=bootstrap, holdout="member",
                             root_seed=12345)  # the root seed plays no part in a member's own hold-out
    assert again.val_rows.tolist() == val_rows and sha256_rows(again.train_rows) == train_sha256


# --------------------------------------------------------------------------- the config
def test_an_old_config_json_loads_as_member_even_if_the_default_changes(tiny_config, tmp_path):
    old = tiny_config().to_dict()
    del old["holdout"]  # a run folder written before --holdout existed
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    loaded = TrainConfig.load(path)
    assert loaded.holdout == "member" and loaded.identity() == tiny_config(holdout="member").identity()

    @dataclass(frozen=True)
    class SharedByDefault(TrainConfig):  # the default changed one day: old folders must still read as trained
        holdout: str = "shared"

    assert SharedByDefault().holdout == "shared"
    assert SharedByDefault.from_dict(old).holdout == "member"
    assert SharedByDefault.from_dict({**old, "holdout": "shared"}).holdout == "shared"


def test_holdout_is_checked_and_part_of_the_run_identity(tiny_config):
    with pytest.raises(ValueError, match="holdout must be one of auto, member, shared, got 'all'"):
        tiny_config(holdout="all")
    with pytest.raises(ValueError, match="val_size must be an integer >= 1 with holdout shared"):
        tiny_config(holdout="shared", val_size=0, checkpoint="last")
    differences = tiny_config(holdout="shared").identity_differences(tiny_config(holdout="member"))
    assert differences == ["--holdout ('member' in the folder, 'shared' asked)"]


def test_auto_holdout_shares_the_held_out_digits_whenever_there_are_some(tiny_config):
    assert TrainConfig().holdout == "shared"  # the default: every run keeps calibration digits
    assert tiny_config().holdout == "shared" and tiny_config().to_dict()["holdout"] == "shared"  # stored resolved
    assert tiny_config(val_size=0, checkpoint="last").holdout == "member"  # nothing held out, nothing to share
    assert tiny_config(members=2, plan=[{"count": 1}, {"count": 1, "val_size": 30}]).holdout == "member"
    assert tiny_config(members=2, plan=[{"count": 1}, {"count": 1, "arch": "keras"}]).holdout == "shared"
    assert tiny_config(holdout="member").holdout == "member"  # asked for, kept


def test_holdout_in_a_plan_group_is_refused_in_one_line(tiny_config, small_mnist_npz, tmp_path):
    with pytest.raises(PlanError, match=r"^plan group 2: holdout is a setting of the whole run, not of a group "
                                        r"\(every member holds out the same digits; give it as --holdout\)$"):
        tiny_config(members=2, plan=[{"count": 1}, {"count": 1, "holdout": "shared"}])
    plan = tmp_path / "plan.toml"
    plan.write_text('[[members]]\ncount = 1\nholdout = "shared"\n')
    with pytest.raises(PlanError, match="plan group 1: holdout is a setting of the whole run"):
        read_plan(plan)
    result = cli("train", "--data", small_mnist_npz, *tiny_args(drop=("--members",)), "--plan", plan,
                 "--out", tmp_path / "never")
    assert_one_line_error(result, 2, "plan group 1: holdout is a setting of the whole run")
    # every member holds out the same digits: no group may hold out another number of them
    with pytest.raises(PlanError, match=r"plan group 2: val_size must be the run's \(50\) with holdout shared"):
        tiny_config(members=2, holdout="shared", plan=[{"count": 1}, {"count": 1, "val_size": 60}])
    assert tiny_config(members=2, holdout="shared", plan=[{"count": 1}, {"count": 1, "width": 0.5}]).members == 2
    result = cli("train", "--data", small_mnist_npz, *tiny_args(val_size="0"), "--holdout", "shared",
                 "--out", tmp_path / "never")
    assert_one_line_error(result, 2, "--val-size must be an integer >= 1 with --holdout shared")
    assert not (tmp_path / "never").exists()


def test_a_run_without_calibration_digits_has_none(tiny_config, tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.claim(tiny_config(holdout="member"))
    assert read_calibration(folder, []) is None
    assert not (folder.path / CALIBRATION_NAME).exists()


# --------------------------------------------------------------------------- one tiny shared-holdout run
SHARED_ARGS = tiny_args(members="2", limit="600", val_size="60", holdout="shared")


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, small_mnist_npz):
    run_dir = tmp_path_factory.mktemp("calibration") / "run"
    result = cli("train", "--data", small_mnist_npz, *SHARED_ARGS, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def test_the_run_folder_records_the_calibration_digits(shared_run, small_mnist_npz):
    import keras

    folder = RunFolder(shared_run)
    config = folder.require_config()
    assert config.holdout == "shared"
    pool = load_pool(data=str(small_mnist_npz), expanded=None, limit=600)
    rows = shared_holdout(pool, val_size=60, root_seed=config.seed)  # the digits every member held out
    labels = pool.data.y_train[rows]
    record = json.loads((shared_run / CALIBRATION_NAME).read_text())
    assert record["count"] == 60 and record["indices_sha256"] == sha256_arrays(rows.astype(np.int64))
    assert record["labels_sha256"] == sha256_arrays(labels.astype(np.uint8))
    assert record["data_fingerprint"] == config.data_fingerprint and record["labels"] == LABELS_NAME
    stored = np.load(shared_run / LABELS_NAME)
    assert stored.dtype == np.uint8 and stored.tolist() == labels.tolist()
    assert hashlib.sha256((shared_run / LABELS_NAME).read_bytes()).hexdigest() == record["labels_file_sha256"]

    records = folder.records(2)
    calibration = read_calibration(folder, records)
    np.testing.assert_array_equal(calibration.labels, labels)
    assert calibration.probabilities.shape == (2, 60, 10) and calibration.probabilities.dtype == np.float32
    for index, member in enumerate(records):
        files = folder.files(index)
        assert member["val_size"] == 60 and member["train_size"] == 540
        assert member["calibration"] == files.calibration.name == f"member_{index:02d}_calibration_proba.npy"
        assert hashlib.sha256(files.calibration.read_bytes()).hexdigest() == member["calibration_sha256"]
        # the member's own probabilities on the very digits held out (undistorted)
        expected = keras.saving.load_model(files.model).predict(pool.data.x_train[rows], verbose=0)
        np.testing.assert_allclose(calibration.probabilities[index], expected, atol=1e-5)
    assert not np.array_equal(calibration.probabilities[0], calibration.probabilities[1])
    # the training rows of every member: none of the calibration digits
    for index in range(2):
        split = split_for_member(pool, val_size=60, seed=member_seed(config.seed, index), holdout="shared",
                                 root_seed=config.seed)
        np.testing.assert_array_equal(split.val_rows, rows)
        assert not np.isin(split.train_rows, rows).any()


def test_a_resumed_run_keeps_its_calibration_digits_and_refuses_changed_ones(shared_run, small_mnist_npz, tmp_path):
    run_dir = shutil.copytree(shared_run, tmp_path / "run")
    before = {name: (run_dir / name).read_bytes() for name in (CALIBRATION_NAME, LABELS_NAME)}
    result = cli("train", "--data", small_mnist_npz, *SHARED_ARGS, "--out", run_dir)
    assert result.exit_code == 0, result.output
    assert "(trained 0, kept 2)" in result.output
    assert {name: (run_dir / name).read_bytes() for name in before} == before

    record = json.loads(before[CALIBRATION_NAME])
    (run_dir / CALIBRATION_NAME).write_text(json.dumps({**record, "indices_sha256": "0" * 64}))
    result = cli("train", "--data", small_mnist_npz, *SHARED_ARGS, "--out", run_dir)
    assert_one_line_error(result, 1, f"{CALIBRATION_NAME}: describes other calibration digits than this run holds "
                                     "out (it differs in indices_sha256)")

    (run_dir / CALIBRATION_NAME).write_bytes(before[CALIBRATION_NAME])
    labels = np.load(run_dir / LABELS_NAME)
    np.save(run_dir / LABELS_NAME, (labels + 1) % 10)
    result = cli("train", "--data", small_mnist_npz, *SHARED_ARGS, "--out", run_dir)
    assert_one_line_error(result, 1, f"{LABELS_NAME}: sha256 differs from the one in {CALIBRATION_NAME}")
    # a member run cannot grow into a shared one, nor the other way round
    result = cli("train", "--data", small_mnist_npz,
                 *tiny_args(members="3", limit="600", val_size="60", holdout="member"), "--out", run_dir)
    assert_one_line_error(result, 1, "--holdout ('shared' in the folder, 'member' asked)")


@pytest.mark.parametrize("damage, message", [
    ("labels", f"{LABELS_NAME}: sha256 differs from the one in {CALIBRATION_NAME}"),
    ("fifo", f"{LABELS_NAME}: is a FIFO, expected a regular calibration labels file"),
    ("member", "member_01_calibration_proba.npy: sha256 differs from the one in member_01.json"),
    ("record", "member_01.json: no calibration probabilities"),
    ("missing", f"{CALIBRATION_NAME}: missing"),
    ("other seed", f"{CALIBRATION_NAME}: not this run's calibration digits (seed differs from config.json)"),
])
def test_read_calibration_refuses_a_tampered_file_in_one_line(shared_run, tmp_path, damage, message):
    run_dir = shutil.copytree(shared_run, tmp_path / "run")
    folder = RunFolder(run_dir)
    records = folder.records(2)
    if damage == "labels":
        np.save(run_dir / LABELS_NAME, np.zeros(60, dtype=np.uint8))
    elif damage == "fifo":  # refused, never waited on
        (run_dir / LABELS_NAME).unlink()
        os.mkfifo(run_dir / LABELS_NAME)
    elif damage == "member":
        probabilities = np.load(folder.files(1).calibration)
        np.save(folder.files(1).calibration, probabilities[::-1].copy())
    elif damage == "record":
        records[1] = {k: v for k, v in records[1].items() if not k.startswith("calibration")}
    elif damage == "missing":
        (run_dir / CALIBRATION_NAME).unlink()
    else:
        config = dataclasses.replace(folder.require_config(), seed=1)
        folder.claim(config)
    with pytest.raises(RunFolderError) as caught:
        read_calibration(folder, records)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    if damage == "member":  # the folder itself also sees the member as incomplete (its hashed file differs)
        assert not folder.status(1).complete and "sha256 differs" in folder.status(1).problem
