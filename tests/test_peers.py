"""benchmarks/peers.py and peers_torch.py: the budget arithmetic, the paired comparison, the never-overwriting write.

Fast and training-free; the one torch check runs in ``.venv-peers`` and is skipped without it."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = REPO_ROOT / ".venv-peers" / "bin" / "python"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peers():
    return _load("peers")


@pytest.fixture(scope="module")
def peers_torch():
    return _load("peers_torch")  # imports torch only inside its functions


def test_preset_for_budget_known_answers(peers):
    assert peers.preset_for_budget(10) == "quick"
    assert peers.preset_for_budget(47.9) == "quick"
    assert peers.preset_for_budget(48) == "default"
    assert peers.preset_for_budget(200) == "default"
    assert peers.preset_for_budget(1) == "quick"  # below every preset: the shortest


def test_keras_members_stop_before_overrunning(peers):
    # Members of 100 s each in a 250 s budget: the third would end at 300 s, so it never starts.
    budget, member, elapsed, members = 250.0, 100.0, 0.0, []
    while peers.next_member_fits(elapsed, members, budget):
        elapsed += member
        members.append(member)
    assert len(members) == 2 and elapsed == 200.0
    # The slowest member so far decides; a first member always starts, even past the budget.
    assert not peers.next_member_fits(100, [40, 100], 199)
    assert peers.next_member_fits(100, [40, 99], 199)
    assert peers.next_member_fits(0, [], 0.001)


def test_plan_voting_known_answers(peers_torch):
    plan = peers_torch.plan_voting
    assert plan(600, 10, 1) == (3, 19)  # 151 s per 15-epoch estimator; the 147 s left go to 4 more epochs each
    assert plan(302, 10, 1) == (2, 15)  # exactly two 15-epoch estimators
    assert plan(301.9, 10, 1) == (1, 30)
    assert plan(100, 10, 1) == (1, 9)  # not one 15-epoch estimator: the epochs that fit
    assert plan(5, 10, 1) == (1, 1)  # nothing fits: one epoch (the run overruns and says so)
    assert plan(-20, 10, 1) == (1, 1)
    with pytest.raises(ValueError, match="epoch_s"):
        plan(600, 0, 1)


def test_plan_voting_fits_and_is_greedy(peers_torch):
    rng = np.random.default_rng(0)
    for _ in range(2000):
        remaining, epoch, predict = rng.uniform(1, 5000), rng.uniform(0.5, 200), rng.uniform(0, 30)
        n, epochs = peers_torch.plan_voting(remaining, epoch, predict)
        if remaining >= 15 * epoch + predict:
            assert epochs >= 15
            assert n * (epochs * epoch + predict) <= remaining + 1e-9  # it fits
            assert (n + 1) * (15 * epoch + predict) > remaining  # one more estimator would not
            assert n * ((epochs + 1) * epoch + predict) > remaining  # nor one more epoch for all
        else:
            assert n == 1 and epochs == max(1, int((remaining - predict) // epoch))


def test_compare_known_answer(peers):
    # The stats module's own example: the peer right on 10 digits the project gets wrong, the project on 2.
    y = np.zeros(12, dtype=np.int64)
    labels = {"project": np.array([1] * 10 + [0] * 2), "keras": np.array([0] * 10 + [1] * 2)}
    entries = [{"name": "project", "majority_accuracy": 2 / 12, "wall_seconds": 600.0},
               {"name": "keras", "majority_accuracy": 10 / 12, "wall_seconds": 450.0}]
    peers.compare(entries, labels, y)
    versus = entries[1]["vs_project"]
    assert versus["only_peer"] == 10 and versus["only_project"] == 2
    assert versus["p_value"] == pytest.approx(0.03857421875, rel=1e-12)
    assert versus["accuracy_difference"] == pytest.approx(8 / 12)
    assert versus["wall_ratio"] == pytest.approx(0.75)
    assert "vs_project" not in entries[0]


def test_write_new_json_never_overwrites(peers, tmp_path):
    out = tmp_path / "sub" / "peers.json"
    peers.write_new_json(out, {"a": 1})
    assert json.loads(out.read_text()) == {"a": 1}
    with pytest.raises(SystemExit, match="exists"):
        peers.write_new_json(out, {"a": 2})
    assert json.loads(out.read_text()) == {"a": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == ["peers.json"]  # no temporary left behind


@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason=".venv-peers (torch) is not set up")
def test_torch_convnet_is_keras_mnist_convnet():
    # Keras' mnist_convnet has 34,826 parameters (320 + 18,496 + 16,010) and gives 10 outputs per digit.
    code = ("import sys, torch; sys.path.insert(0, 'benchmarks'); import peers_torch as p; "
            "m = p.mnist_convnet()(); print(sum(t.numel() for t in m.parameters()), "
            "tuple(m(torch.zeros(3, 1, 28, 28)).shape))")
    done = subprocess.run([str(PEERS_PYTHON), "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=1) == ["34826", "(3, 10)\n"]
