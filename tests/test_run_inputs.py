"""Data safety, round 2: a run folder is an input, left-out members are always named, outputs checked first.

* no output of ``predict``/``export`` lands in the run folder they read (symbolic or hard links
  included), and every output's folder is checked before any model is loaded;
* ``export`` replaces an existing target only with ``--overwrite`` (both formats);
* a member missing or failing its sha256 is named by ``predict``, ``export``, ``serve`` and
  ``compare`` (terminal, output, model metadata, ``/api/info``), exit 1 unless ``--allow-missing``;
  more members asked than the run has is an error everywhere;
* config.json fields of the wrong JSON type, absurd seeds and bad Python-API arguments give one line.

The run folders hold fake untrained members (``make_run``): none of this depends on accuracy.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from test_bad_inputs import assert_one_line_error, snapshot


@pytest.fixture(scope="module")
def base(tmp_path_factory, make_run, small_mnist_npz):
    """A 3-member run and a 28x28 digit array to predict, made once (tests copy the run to damage it)."""
    root = tmp_path_factory.mktemp("inputs")
    make_run(root / "run", members=3)
    with np.load(small_mnist_npz) as npz:
        np.save(root / "digits.npy", npz["x_test"][:4])
    return root


@pytest.fixture
def run(base, tmp_path):
    """A fresh copy of the 3-member run (in ``tmp_path/run``); ``tmp_path/digits.npy`` to predict."""
    import shutil

    shutil.copytree(base / "run", tmp_path / "run")
    shutil.copy(base / "digits.npy", tmp_path / "digits.npy")
    return tmp_path / "run"


def damaged(run_dir: Path) -> Path:
    """``run_dir`` with member 01's probabilities corrupt (sha256 differs) and member 02's record gone."""
    (run_dir / "member_01_test_proba.npy").write_bytes(b"corrupt")
    (run_dir / "member_02.json").unlink()
    return run_dir


def cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- 1. the run folder is an input
INSIDE_CASES = {
    "predict --out config.json": ("predict", lambda r: ["--out", r / "config.json"], "--out"),
    "predict --out member_01.json as json": ("predict", lambda r: ["--out", r / "member_01.json", "--format", "json"],
                                             "--out"),
    "predict --preview member_00.keras": ("predict", lambda r: ["--preview", r / "member_00.keras"], "--preview"),
    "predict --out a new file in the run": ("predict", lambda r: ["--out", r / "new.csv"], "--out"),
    "predict --out through a link to the run": ("predict", lambda r: ["--out", r.parent / "link" / "config.json"],
                                                "--out"),
    "predict --out a hard link to config.json": ("predict", lambda r: ["--out", r.parent / "hard.csv"], "--out"),
    "export --out a new file in the run": ("export", lambda r: ["--out", r / "model.keras"], "--out"),
    "export --out through a link to the run": ("export", lambda r: ["--out", r.parent / "link" / "m.keras"], "--out"),
}


@pytest.mark.parametrize("case", list(INSIDE_CASES))
def test_no_output_lands_in_the_run_folder_being_read(case, run):
    command, options, option = INSIDE_CASES[case]
    (run.parent / "link").symlink_to(run)
    os.link(run / "config.json", run.parent / "hard.csv")
    before = snapshot(run.parent)
    args = [command, "--run", run, *options(run)] + ([run.parent / "digits.npy"] if command == "predict" else [])
    result = cli(*args)
    assert_one_line_error(result, 2, option)
    assert "an input of this command" in result.output
    assert snapshot(run.parent) == before, "nothing written"


# --------------------------------------------------------------------------- 9. output folders checked first
def test_every_output_folder_is_checked_before_anything_is_written_or_loaded(run, monkeypatch):
    from ensemble_cnn.inference.ensemble import Ensemble

    def no_loading(*args, **kwargs):
        raise AssertionError("models loaded before the outputs were checked")

    monkeypatch.setattr(Ensemble, "load", no_loading)
    monkeypatch.chdir(run.parent)
    before = snapshot(run.parent)
    cases = [
        (["predict", "--run", run, "--out", "ok.csv", "--preview", "missing/p.png", "digits.npy"], "--preview"),
        (["predict", "--run", run, "--out", "missing/dir/o.csv", "digits.npy"], "--out"),
        (["export", "--run", run, "--out", "missing/m.keras"], "--out"),
        (["export", "--run", run, "--format", "saved_model", "--out", "missing/sm"], "missing/sm: folder missing"),
    ]
    for args, text in cases:
        result = cli(*args)
        assert_one_line_error(result, 2, text)
        assert "does not exist" in result.output and ".tmp" not in result.output, result.output
        assert snapshot(run.parent) == before, f"{args}: nothing written"


# --------------------------------------------------------------------------- 10. export: one overwrite rule
def test_export_replaces_an_existing_target_only_with_overwrite(run, tmp_path):
    mine = tmp_path / "mine.keras"
    mine.write_bytes(b"my own model")
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for args in (["--out", mine], ["--out", folder, "--format", "saved_model"]):
        result = cli("export", "--run", run, *args)
        assert_one_line_error(result, 2, "exists; give --overwrite to replace it")
    assert mine.read_bytes() == b"my own model"
    refused = cli("export", "--run", run, "--out", folder, "--format", "saved_model", "--overwrite")
    assert_one_line_error(refused, 2, "--overwrite replaces only a previous export")
    assert (folder / "notes.txt").read_text() == "mine"
    replaced = cli("export", "--run", run, "--out", mine, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    from ensemble_cnn.inference.export import read_export_metadata

    assert read_export_metadata(mine)["members"] == ["member_00", "member_01", "member_02"]
    assert "--overwrite" in cli("export", "--help").output


# --------------------------------------------------------------------------- 4. left-out members are named
def test_predict_names_left_out_members_everywhere_and_exits_1_unless_allowed(run):
    import csv
    import io

    damaged(run)
    digits = run.parent / "digits.npy"
    out = run.parent / "p.json"
    result = cli("predict", "--run", run, digits, "--format", "json", "--out", out)
    assert_one_line_error(result, 1, "2 of 3 members left out")
    assert "member 01 left out: " in result.stderr and "sha256 differs" in result.stderr
    assert "member 02 left out: missing (not trained yet)" in result.stderr
    answer = json.loads(out.read_text())
    assert [e["member"] for e in answer["left_out"]] == ["member_01", "member_02"]
    assert answer["members"] == ["member_00"] and len(answer["predictions"]) == 4
    allowed = cli("predict", "--run", run, digits, "--format", "csv", "--allow-missing")
    assert allowed.exit_code == 0, allowed.output
    rows = list(csv.DictReader(io.StringIO(allowed.stdout)))
    assert len(rows) == 4 and rows[0]["left_out"].startswith("member_01: ") and "member_02: missing" in rows[0]["left_out"]
    table = cli("predict", "--run", run, digits, "--allow-missing")
    assert "1 of 3 members voted; left out: member_01" in table.stdout


def test_predict_asking_for_more_members_than_the_run_has_is_an_error(run):
    result = cli("predict", "--run", run, run.parent / "digits.npy", "--members", "99")
    assert_one_line_error(result, 1, "the run has 3 members, 99 asked")


@pytest.fixture
def served(monkeypatch):
    """``ensemble-cnn serve`` never serves: the predictor's ``info()`` of each start is recorded instead."""
    import ensemble_cnn.inference.serve as serve_module

    started = []
    monkeypatch.setattr(serve_module, "serve", lambda predictor, **kwargs: started.append(predictor.info()))
    return started


@pytest.mark.parametrize("command", ["evaluate", "export", "serve"])
def test_more_members_than_the_run_has_is_an_error(command, run, served):
    extra = {"export": ["--out", run.parent / "m.keras"], "serve": ["--port", "0"]}.get(command, [])
    before = snapshot(run.parent)
    result = cli(command, "--run", run, "--members", "7", *extra)
    assert_one_line_error(result, 1, "the run has 3 members, 7 asked")
    assert snapshot(run.parent) == before and not served


def test_export_names_left_out_members_in_the_model_and_exits_1_unless_allowed(run):
    damaged(run)
    out = run.parent / "m.keras"
    result = cli("export", "--run", run, "--out", out)
    assert_one_line_error(result, 1, "2 of 3 members left out")
    assert "member 01 left out: " in result.stderr
    from ensemble_cnn.inference.export import read_export_metadata

    metadata = read_export_metadata(out)
    assert metadata["members"] == ["member_00"] and metadata["members_asked"] == 3
    assert [e["member"] for e in metadata["left_out"]] == ["member_01", "member_02"]
    allowed = cli("export", "--run", run, "--out", out, "--overwrite", "--allow-missing")
    assert allowed.exit_code == 0 and "member 02 left out" in allowed.stderr


def test_serve_refuses_to_start_with_left_out_members_unless_allowed(run, served):
    started = served
    damaged(run)
    result = cli("serve", "--run", run, "--port", "0")
    assert_one_line_error(result, 1, "2 of 3 members left out")
    assert "member 01 left out" in result.stderr and not started
    allowed = cli("serve", "--run", run, "--port", "0", "--allow-missing")
    assert allowed.exit_code == 0, allowed.output
    (info,) = started
    assert info["members"] == ["member_00"]
    assert [e["member"] for e in info["left_out"]] == ["member_01", "member_02"]


def test_compare_names_left_out_members_and_exits_1_unless_allowed(run, make_run, tmp_path):
    other = tmp_path / "other"
    make_run(other, members=2)
    damaged(run)
    result = cli("compare", run, other, "--json")
    assert_one_line_error(result, 1, "members left out")
    assert "member_01 left out: " in result.stderr
    comparison = json.loads(result.stdout)
    assert [e["member"] for e in comparison["runs"][0]["left_out"]] == ["member_01", "member_02"]
    assert comparison["runs"][1]["left_out"] == []
    allowed = cli("compare", run, other, "--allow-missing")
    assert allowed.exit_code == 0 and "member_02 left out: missing (not trained yet)" in allowed.stdout


def test_ensemble_load_names_left_out_members(run):
    from ensemble_cnn.errors import RunFolderError
    from ensemble_cnn.inference.ensemble import Ensemble

    damaged(run)
    with pytest.raises(RunFolderError, match="2 of 3 members left out: member_01") as caught:
        Ensemble.load(run)
    from ensemble_cnn.errors import MissingMembersError

    assert isinstance(caught.value, MissingMembersError) and sorted(caught.value.left_out) == [1, 2]
    ensemble = Ensemble.load(run, allow_missing=True)
    assert ensemble.names_ == ["member_00"] and ensemble.members_asked_ == 3
    assert sorted(ensemble.left_out_) == [1, 2] and "missing" in ensemble.left_out_[2]


# --------------------------------------------------------------------------- 8. config fields of the wrong type
def test_every_config_field_of_the_wrong_type_is_one_line(run):
    from ensemble_cnn.config import TrainConfig

    good = json.loads((run / "config.json").read_text())
    right = {"str": "seven", "int": 7, "float": 7, "dict": {"a": 1}}  # a value of each JSON type
    for spec in dataclasses.fields(TrainConfig):
        takes = [right.get(word.strip()) for word in str(spec.type).split("|")]
        for wrong in [value for value in ([1], {"a": 1}, 7, "seven") if value not in takes]:
            (run / "config.json").write_text(json.dumps({**good, spec.name: wrong}))
            result = cli("evaluate", "--run", run)
            assert_one_line_error(result, 1, f"config.json: not a valid run config ({spec.name} must be")


# --------------------------------------------------------------------------- 15. seeds
def test_a_huge_seed_is_refused_naming_the_upper_bound(tmp_path):
    from ensemble_cnn.config import TrainConfig

    bound = str(2**63 - 1)
    for command in ("augment", "train"):
        result = cli(command, "--data", tmp_path / "absent.npz", "--seed", 10**30, "--out", tmp_path / "never")
        assert_one_line_error(result, 2, bound)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match=f"seed must be an integer in 0..{bound}"):
        TrainConfig(seed=10**30)
    from ensemble_cnn.config import MAX_SEED

    assert MAX_SEED == 2**63 - 1


# --------------------------------------------------------------------------- 14. the Python API
def test_complex_digits_are_refused():
    from ensemble_cnn.inference.ensemble import as_digits

    with pytest.raises(ValueError, match="digits must be real numbers, got dtype complex128"):
        as_digits(np.zeros((2, 28, 28), dtype=np.complex128))


def test_score_on_no_digits_is_refused_naming_x(base):
    from ensemble_cnn.inference.ensemble import Ensemble

    ensemble = Ensemble.load(base / "run")
    with pytest.raises(ValueError, match="x holds no digits"):
        ensemble.score(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))


def test_load_with_zero_members_is_refused_naming_members(base):
    from ensemble_cnn.inference.ensemble import Ensemble

    with pytest.raises(ValueError, match="members must be an integer from 1 to"):
        Ensemble.load(base / "run", members=0)


def test_batch_size_zero_is_refused_naming_batch_size(base):
    from ensemble_cnn.inference.ensemble import Ensemble

    ensemble = Ensemble.load(base / "run")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        ensemble.member_probabilities(np.zeros((2, 28, 28), np.uint8), batch_size=0)
