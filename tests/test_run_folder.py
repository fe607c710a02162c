"""The run folder module: one read of each member's files per resume, member status, claims, atomic files, previews."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import augment
from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.storage import run_folder
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import train_ensemble


def test_resume_hashes_each_member_file_once(tmp_path, make_run, monkeypatch):
    run_dir = tmp_path / "run"
    config = make_run(run_dir, members=2)
    calls = Counter()
    real = run_folder.sha256_file

    def counting(path, **options):
        calls[Path(path).name] += 1
        return real(path, **options)

    monkeypatch.setattr(run_folder, "sha256_file", counting)
    result = train_ensemble(config, run_dir, log=None)
    assert result.reused == [0, 1] and result.complete
    assert calls == {"member_00.keras": 1, "member_00_test_proba.npy": 1,
                     "member_01.keras": 1, "member_01_test_proba.npy": 1}


def test_status_says_why_a_member_is_not_complete(tmp_path, make_run):
    run_dir = tmp_path / "run"
    make_run(run_dir, members=3)
    folder = RunFolder(run_dir)
    folder.files(0).probabilities.write_bytes(b"tampered")
    folder.files(1).model.unlink()
    folder.files(2).record.write_text("{not json")
    statuses = folder.scan(range(4))
    assert "member_00_test_proba.npy: sha256 differs from its record" in statuses[0].problem
    assert statuses[1].problem.endswith("member_01.keras: missing")
    assert statuses[2].problem.endswith("member_02.json: not valid JSON")
    assert statuses[3].record is None and statuses[3].problem is None, "never written: no problem, just absent"
    assert not any(s.complete for s in statuses.values())


def test_claim_keeps_the_larger_member_count(tmp_path, tiny_config):
    folder = RunFolder(tmp_path / "run")
    assert folder.claim(tiny_config(members=5)).members == 5
    assert folder.claim(tiny_config(members=2)).members == 5
    assert folder.claim(tiny_config(members=7)).members == 7
    assert json.loads(folder.config_path.read_text())["members"] == 7


def test_require_config_refuses_a_plain_folder(tmp_path):
    with pytest.raises(RunFolderError, match="no config.json"):
        RunFolder(tmp_path).require_config()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_the_umask_without_it_being_changed(tmp_path, monkeypatch, mask, mode):
    old = os.umask(mask)
    try:
        def no_umask_change(*args):
            raise AssertionError("os.umask must not be called: it is process-wide, not thread-safe")

        monkeypatch.setattr(os, "umask", no_umask_change)
        _atomic.write_text(tmp_path / "a.txt", "hello")
        monkeypatch.undo()
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
        assert (tmp_path / "a.txt").read_text() == "hello"
        assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    finally:
        os.umask(old)


def test_one_per_class_and_expanded_preview(tmp_path, synthetic_digits):
    from ensemble_cnn.evaluation.preview import one_per_class, write_preview

    labels = np.array([3, 1, 3, 0, 9, 1, 2, 5, 4, 6, 7, 8, 0])
    assert one_per_class(labels).tolist() == [3, 1, 6, 0, 8, 7, 9, 10, 11, 4]
    images, y = augment.expand(synthetic_digits[:13], labels, copies=2, seed=0)
    write_preview(images, y, 13, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_distorted_views_are_the_batches_the_stream_yields(synthetic_digits):
    """The run preview shows what the member really trained on: rebuilt views equal the streamed batches."""
    from ensemble_cnn.data.training import batch_stream, distorted_views, epoch_order

    images = synthetic_digits[:100]
    labels = np.arange(100) % 10
    distortion = augment.Distortion()
    batch_size, epochs, seed = 16, 3, 1234
    stream = list(batch_stream(images, labels, batch_size=batch_size, epochs=epochs, seed=seed,
                               distortion=distortion))
    per_epoch = -(-100 // batch_size)
    rows = np.array([5, 42, 99])
    views = distorted_views(images, rows, batch_size=batch_size, epochs=epochs, seed=seed, distortion=distortion)
    assert views.shape == (3, epochs, 28, 28)
    for epoch in range(epochs):
        order = epoch_order(100, seed=seed, epoch=epoch)
        for r, row in enumerate(rows):
            position = int(np.flatnonzero(order == row)[0])
            batch_index = position // batch_size
            batch_rows = np.sort(order[batch_index * batch_size:(batch_index + 1) * batch_size])
            streamed = stream[epoch * per_epoch + batch_index][0][int(np.flatnonzero(batch_rows == row)[0])]
            np.testing.assert_array_equal(views[r, epoch], streamed)
    assert not np.array_equal(views[0, 0], views[0, 1]), "fresh distortions every epoch"


def test_run_preview_is_member_zeros_training_digits(tmp_path, tiny_config):
    from ensemble_cnn.evaluation.preview import write_training_preview

    config = tiny_config(augmentation="distort", epochs=3)
    path = write_training_preview(config, tmp_path / "preview.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- member counts are bounded
BILLION = 10**9


def test_scan_asks_the_disk_only_about_the_members_the_folder_holds(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from conftest import write_fake_member
    from test_guarantees import finishes_within

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    untrained = SimpleNamespace(save=lambda path: Path(path).write_bytes(b"weights"))
    for index in (0, 1):
        write_fake_member(folder.path, index, untrained, n_test=5)
    folder.files(5).record.write_text("{not json")
    (folder.path / "member_007.json").write_text("{}")  # not a member's name (member_07.json is)
    looked_at = Counter()
    status = RunFolder.status
    monkeypatch.setattr(RunFolder, "status", lambda self, index: looked_at.update([index]) or status(self, index))
    statuses = folder.scan(range(1000))
    assert sorted(statuses) == list(range(1000))
    assert [i for i, s in statuses.items() if s.complete] == [0, 1]
    assert statuses[5].problem.endswith("member_05.json: not valid JSON")
    assert all(s.record is None and s.problem is None for i, s in statuses.items() if i not in (0, 1, 5))
    assert sorted(looked_at) == [0, 1, 5], "only the members with a record are read"
    records = finishes_within(5, lambda: folder.records(BILLION))
    assert [r["index"] for r in records] == [0, 1]


def test_a_config_with_a_billion_members_is_refused_in_one_line(tmp_path, tiny_config, small_mnist_npz):
    from conftest import tiny_args
    from ensemble_cnn.config import TrainConfig
    from test_bad_inputs import assert_one_line_error, invoke
    from test_guarantees import finishes_within

    run_dir = tmp_path / "run"
    RunFolder(run_dir).claim(tiny_config(members=2))
    config = json.loads((run_dir / "config.json").read_text())
    for members in (BILLION, 1001, 0, True, "5", 2.0):
        with pytest.raises(ValueError, match=f"members must be an integer from 1 to 1000, got {members!r}"):
            TrainConfig.from_dict({**config, "members": members})
    (run_dir / "config.json").write_text(json.dumps({**config, "members": BILLION}))
    expected = f"config.json: not a valid run config (members must be an integer from 1 to 1000, got {BILLION})"
    for args in (["evaluate", "--run", str(run_dir)],
                 ["train", "--data", str(small_mnist_npz), *tiny_args(members="3"), "--out", str(run_dir)]):
        result = finishes_within(30, lambda: invoke(args, tmp_path))
        assert_one_line_error(result, 1, expected)


@pytest.mark.parametrize("command", ["train", "run", "evaluate", "predict", "export", "serve"])
def test_a_billion_members_asked_on_the_command_line_is_a_usage_error(tmp_path, tiny_config, small_mnist_npz,
                                                                      command):
    from conftest import tiny_args
    from test_bad_inputs import assert_one_line_error, invoke
    from test_guarantees import finishes_within

    run_dir = tmp_path / "run"
    RunFolder(run_dir).claim(tiny_config(members=2))
    training = ["--data", str(small_mnist_npz), *tiny_args(members=str(BILLION)), "--out", str(tmp_path / "new")]
    members = ["--members", str(BILLION)]
    args = {
        "train": ["train", *training],
        "run": ["run", *training],
        "evaluate": ["evaluate", "--run", str(run_dir), *members],
        "predict": ["predict", "--run", str(run_dir), *members, str(small_mnist_npz)],
        "export": ["export", "--run", str(run_dir), *members, "--out", str(tmp_path / "e.keras")],
        "serve": ["serve", "--run", str(run_dir), *members, "--port", "0"],
    }[command]
    result = finishes_within(30, lambda: invoke(args, tmp_path))
    assert_one_line_error(result, 2, f"{BILLION} is not in the range 1<=x<=1000")
