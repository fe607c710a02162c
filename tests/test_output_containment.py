"""No output may be, contain or lie inside an input, at any depth; outputs are checked first (issue 30).

* ``export --format saved_model --overwrite`` never replaces a folder that holds the run it reads;
* ``predict --out x/`` names a folder: refused, and ``x`` is never written;
* ``evaluate`` checks its report paths in the run folder before it scores anything (exit 2);
* ``train --out`` is never the teacher, inside it or around it, nor around the data or the plan;
* the rule itself, on paths: an input two levels inside an output reached through a symbolic link.

Every run folder holds fake untrained members (``make_run``): none of this depends on accuracy.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import tiny_args
from ensemble_cnn.errors import OutputPathError
from test_bad_inputs import assert_one_line_error, snapshot


@pytest.fixture(scope="module")
def base(tmp_path_factory, make_run, small_mnist_npz):
    """A 1-member run and a 28x28 digit array to predict, made once (tests copy what they change)."""
    root = tmp_path_factory.mktemp("containment")
    make_run(root / "run", members=1)
    with np.load(small_mnist_npz) as npz:
        np.save(root / "digits.npy", npz["x_test"][:4])
    return root


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- 1. export --overwrite
def previous_export_holding_the_run(base: Path, tmp_path: Path) -> Path:
    """``P``: a previous SavedModel export (it holds saved_model.pb), with a copy of the run in ``P/run``."""
    exported = tmp_path / "P"
    (exported / "assets.extra").mkdir(parents=True)
    (exported / "saved_model.pb").write_bytes(b"a previous export")
    (exported / "assets.extra" / "ensemble_cnn.json").write_text("{}")
    shutil.copytree(base / "run", exported / "run", symlinks=True)
    (tmp_path / "link").symlink_to(tmp_path)
    return exported


@pytest.mark.parametrize("through_link", [False, True])
def test_export_overwrite_never_deletes_the_run_it_reads(base, tmp_path, through_link):
    exported = previous_export_holding_the_run(base, tmp_path)
    out = tmp_path / "link" / "P" if through_link else exported
    before = snapshot(tmp_path)
    result = cli("export", "--run", exported / "run", "--format", "saved_model", "--out", out, "--overwrite")
    assert_one_line_error(result, 2, "--out")
    assert "contains" in result.output and "an input of this command" in result.output
    assert snapshot(tmp_path) == before, "the run inside --out was kept, nothing written"


def test_export_ensemble_refuses_an_out_that_holds_its_run(base, tmp_path):
    from ensemble_cnn.inference.export import export_ensemble

    exported = previous_export_holding_the_run(base, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(OutputPathError, match="an input of this command"):
        export_ensemble(exported / "run", exported, fmt="saved_model", overwrite=True)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- 6. predict --out x/
@pytest.mark.parametrize("option", ["--out", "--preview"])
@pytest.mark.parametrize("stem, tail, existing", [("mynotes", "/", True), ("newdir", "/", False),
                                                  ("mynotes", "/.", True)])
def test_predict_out_with_a_trailing_slash_is_a_folder_and_never_written(base, tmp_path, option, stem, tail,
                                                                         existing):
    target = tmp_path / (stem + (".png" if option == "--preview" else ""))  # what click's Path("x/") names
    if existing:
        target.write_text("my own notes\n")
    shutil.copy(base / "digits.npy", tmp_path / "digits.npy")
    before = snapshot(tmp_path)
    result = cli("predict", "--run", base / "run", option, f"{target}{tail}", tmp_path / "digits.npy")
    assert_one_line_error(result, 2, "is a folder, expected a file path")
    assert f"'{option}'" in result.output
    assert snapshot(tmp_path) == before, f"{target.name} was written"
    assert target.exists() == existing


def test_check_file_name_knows_a_folder_from_a_file():
    from ensemble_cnn.storage.outputs import check_file_name

    for folder in ("x/", "a/b/", "x/.", ".", "..", "a/.."):
        with pytest.raises(OutputPathError, match="is a folder, expected a file path"):
            check_file_name("--out", folder)
    for file in ("x", "a/b.csv", "./x.json", ".hidden"):
        check_file_name("--out", file)


# --------------------------------------------------------------------------- 7. evaluate: report paths first
@pytest.fixture
def no_scoring(monkeypatch):
    """Reading the test digits (the first step of scoring) fails the test: the report paths come first."""
    import ensemble_cnn.evaluation.evaluate as evaluate

    def scored(*args, **kwargs):
        raise AssertionError("the test digits were read before the report paths were checked")

    monkeypatch.setattr(evaluate, "test_split", scored)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: chmod cannot make it unusable")
def test_evaluate_on_a_read_only_run_folder_stops_before_scoring(base, tmp_path, no_scoring):
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    run.chmod(0o555)
    try:
        before = snapshot(run)
        result = cli("evaluate", "--run", run)
        assert_one_line_error(result, 2, "is not writable")
        assert snapshot(run) == before
    finally:
        run.chmod(0o755)


@pytest.mark.parametrize("name, occupant, text", [
    ("report.json", "fifo", "is a FIFO"),
    ("report.md", "folder", "is a folder, expected a file path"),
    ("confusion.png", "folder", "is a folder, expected a file path"),
])
def test_evaluate_report_path_that_cannot_be_written_stops_before_scoring(base, tmp_path, no_scoring, name,
                                                                          occupant, text):
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name) if occupant == "fifo" else (run / name).mkdir()
    before = snapshot(run)
    result = cli("evaluate", "--run", run)
    assert_one_line_error(result, 2, text)
    assert "Invalid value for --run" in result.output and name in result.output
    assert snapshot(run) == before


# --------------------------------------------------------------------------- 11. train --out and its inputs
def plan_file(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "plan.toml").write_text("[[members]]\ncount = 1\n")
    return folder / "plan.toml"


TRAIN_CASES = {
    # name: (--out, whether a --plan is given, message); T is the teacher run (a copy of a run), D tmp_path.
    # Every case reads --data D/data/mnist.npz and --teacher T.
    "--out inside the teacher": ("{T}/student", False, "is inside"),
    "--out inside the teacher through a link": ("{D}/link/student", False, "is inside"),
    "--out is the teacher": ("{T}", False, "is an input of this command"),
    "--out holds the teacher": ("{D}/outer", False, "contains"),
    "--out holds the data": ("{D}/data", False, "contains"),
    "--out holds the plan": ("{D}/plans", True, "contains"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_out_is_never_around_or_inside_what_it_reads(case, base, tmp_path, small_mnist_npz, fake_training):
    out, with_plan, text = TRAIN_CASES[case]
    teacher = tmp_path / "outer" / "T"
    shutil.copytree(base / "run", teacher)
    (tmp_path / "link").symlink_to(teacher)
    (tmp_path / "data").mkdir()
    data = shutil.copy(small_mnist_npz, tmp_path / "data" / "mnist.npz")
    plan = ["--plan", plan_file(tmp_path / "plans")] if with_plan else []
    args = [*tiny_args(drop=("--members",) if with_plan else ()), "--data", data, "--teacher", teacher, *plan,
            "--out", out.format(T=teacher, D=tmp_path)]
    before = snapshot(tmp_path)
    result = cli("train", *args)
    assert_one_line_error(result, 2, "Invalid value for --out")
    assert text in result.output and "an input of this command" in result.output
    assert snapshot(tmp_path) == before, "nothing written"
    assert fake_training == [], "nothing trained"


def test_train_ensemble_refuses_a_run_folder_inside_its_teacher(base, tmp_path, tiny_config):
    from ensemble_cnn.training.train import train_ensemble

    teacher = tmp_path / "T"
    shutil.copytree(base / "run", teacher)
    before = snapshot(tmp_path)
    with pytest.raises(OutputPathError, match="is inside"):
        train_ensemble(tiny_config(teacher=str(teacher)), teacher / "student", log=None)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- the rule, on paths
def test_an_input_two_levels_inside_an_output_reached_through_a_link_is_refused(tmp_path):
    from ensemble_cnn.storage.outputs import (
        check_clear_of_inputs, check_output_files, check_output_folder, check_run_folder_target,
    )

    data = tmp_path / "real" / "out" / "a" / "b" / "data.npz"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"digits")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    out = tmp_path / "link" / "out"  # resolves to real/out, which holds a/b/data.npz
    with pytest.raises(OutputPathError, match="contains .*data.npz, an input of this command"):
        check_output_folder("--out", out, inputs=[data])
    with pytest.raises(OutputPathError, match="contains"):
        check_run_folder_target(out, inputs=[data])
    with pytest.raises(OutputPathError, match="is inside"):  # and the other way round, at depth 2
        check_output_files([("--out", out / "a" / "b" / "new.csv")], inputs=[tmp_path / "real" / "out"])
    with pytest.raises(OutputPathError, match="is an input"):
        check_clear_of_inputs("--out", tmp_path / "link" / "out" / "a" / "b" / "data.npz", [data])
    # beside it, not around it: a sibling whose name starts the same, and a parent of nothing read
    check_output_folder("--out", tmp_path / "link" / "ou", inputs=[data])
    check_run_folder_target(tmp_path / "real" / "out-b", inputs=[data])
    check_clear_of_inputs("--out", tmp_path / "real" / "out" / "a" / "c", [data])
    check_clear_of_inputs("--out", out, [tmp_path / "missing" / "input.npz"])  # an input that does not exist
