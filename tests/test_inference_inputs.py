"""Inputs the inference side must refuse, by name, instead of using or skipping them silently: folder entries
that are not files (predict), a member that cannot be loaded (compare), labels that are not digits
(``Ensemble.score``) and a run folder that is not a path (``Ensemble.load``)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.storage.run_folder import RunFolder

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory, make_run) -> Path:
    """A run with two untrained members (saved with records matching their files)."""
    path = tmp_path_factory.mktemp("fake") / "run"
    make_run(path, members=2)
    return path


@pytest.fixture(scope="module")
def digits(mnist) -> tuple[np.ndarray, np.ndarray]:
    """Five real test digits and their labels."""
    return mnist["x_test"][:5], mnist["y_test"][:5].astype(np.int64)


# --------------------------------------------------------------------------- predict: a folder's odd entries
@needs_fifo
def test_dangling_links_and_fifos_in_a_folder_are_named_and_the_rest_predicted(fake_run, digits, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(255 - digits[0][0]).resize((84, 84)).save(folder / "good.png")
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")  # a link to nothing
    os.mkfifo(folder / "pipe.jpg")  # a FIFO with an image's name: opening it would wait for a writer
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "notes").symlink_to(tmp_path / "nothing")  # not named like an image: not an input, not a problem
    out = tmp_path / "answers.json"
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(folder), "--format", "json",
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert f"{folder / 'gone.png'}: is a symbolic link to nothing (its target {tmp_path / 'deleted.png'} does not " \
           "exist)" in lines
    assert f"{folder / 'pipe.jpg'}: is a FIFO, expected a file" in lines
    assert f"{folder / 'loop.png'}: is a symbolic link that loops (Too many levels of symbolic links)" in lines
    assert not any("notes" in line for line in lines)
    assert "Error: 3 path(s) not predicted (listed above); 1 digit(s) predicted" in result.output
    answer = json.loads(out.read_text())
    assert [Path(item["path"]).name for item in answer["predictions"]] == ["good.png"]
    assert sorted(Path(failure["path"]).name for failure in answer["failures"]) == ["gone.png", "loop.png",
                                                                                    "pipe.jpg"]


# --------------------------------------------------------------------------- compare: an unloadable member
def test_compare_leaves_out_a_member_that_cannot_be_loaded(fake_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(fake_run, broken)
    folder = RunFolder(broken)
    files = folder.files(1)
    record = json.loads(files.record.read_text())
    file_keys = ("index", "model", "model_sha256", "probabilities", "probabilities_sha256", "history")
    # member_01's .keras is replaced by bytes Keras cannot load, and its record rewritten to match them:
    # its sha256 checks, its saved probabilities are intact; only loading it fails, as in every other command.
    folder.write_member(1, save_model=lambda path: Path(path).write_bytes(b"not a Keras archive"),
                        probabilities=np.load(files.probabilities), history=json.loads(files.history.read_text()),
                        details={key: value for key, value in record.items() if key not in file_keys})
    result = CliRunner().invoke(main, ["compare", str(fake_run), str(broken)])
    assert result.exit_code == 1, result.output
    assert f"{broken}: member_01 left out: {files.model}: not a loadable Keras model" in result.output
    assert "members left out (missing or unusable, listed above)" in result.output
    accepted = CliRunner().invoke(main, ["compare", str(fake_run), str(broken), "--json", "--allow-missing"])
    assert accepted.exit_code == 0, accepted.output
    rows = json.loads(accepted.stdout)["runs"]
    assert [row["members"] for row in rows] == [2, 1]
    assert [entry["member"] for entry in rows[1]["left_out"]] == ["member_01"]
    assert rows[0]["left_out"] == []


# --------------------------------------------------------------------------- Ensemble.score: digit labels only
@pytest.mark.parametrize("labels, words", [
    (lambda y: y + 10, "y must hold digit labels 0-9, got 5 outside them (e.g. 17)"),
    (lambda y: y.astype(str), "y must hold integer digit labels 0-9, got dtype <U21"),
    (lambda y: [1.5, 2.0, 3.0, 4.0, 5.0], "y must hold integer digit labels 0-9, got continuous values (e.g. 1.5)"),
    (lambda y: y - 1, "y must hold digit labels 0-9, got 1 outside them (e.g. -1)"),
    (lambda y: y.astype(bool), "y must hold integer digit labels 0-9, got dtype bool"),
    (lambda y: np.full(5, np.nan), "y must hold integer digit labels 0-9, got NaN or infinity"),
    (lambda y: np.eye(10, dtype=int)[y], "y must hold one label per digit, shape (5,), got shape (5, 10)"),
    (lambda y: y[:3], "y must hold one label per digit (5), got 3"),
], ids=["plus-10", "text", "fractions", "minus-1", "booleans", "nan", "one-hot", "too-few"])
def test_score_refuses_labels_that_are_not_digits(fake_run, digits, labels, words):
    x, y = digits  # y: 7 2 1 0 4
    ensemble = Ensemble.load(fake_run)
    with pytest.raises(ValueError, match=f"^{re.escape(words)}$"):
        ensemble.score(x, labels(y))
    predicted = ensemble.predict(x)
    assert ensemble.score(x, y) == np.mean(predicted == y)  # integer labels 0-9 still score
    assert ensemble.score(x, y.astype(np.float32)) == ensemble.score(x, y[:, None]) == ensemble.score(x, y)


# --------------------------------------------------------------------------- Ensemble.load: a path
@pytest.mark.parametrize("run_dir, given", [(None, "NoneType"), (3, "int")])
def test_load_without_a_path_names_what_was_expected(run_dir, given):
    with pytest.raises(TypeError, match=rf"^run_dir must be the path of a run folder \(str or path-like\), "
                                        rf"got {given}$"):
        Ensemble.load(run_dir)
