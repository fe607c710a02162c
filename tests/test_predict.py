"""Using a trained ensemble: the Python `Ensemble`, `ensemble-cnn predict` on real files, `ensemble-cnn export`."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from ensemble_cnn.inference.ensemble import Ensemble, as_digits
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.inference.vote import VOTES, majority_vote, soft_vote
from test_bad_inputs import snapshot


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def test_digits(small_mnist_npz):
    with np.load(small_mnist_npz) as npz:
        return npz["x_test"], npz["y_test"].astype(np.int64)


def saved_probabilities(run_dir: Path) -> np.ndarray:
    return np.stack([np.load(RunFolder(run_dir).files(i).probabilities) for i in range(3)])


# --------------------------------------------------------------------------- the Python API
def test_ensemble_matches_what_training_saved(run_dir, test_digits):
    x, y = test_digits
    ensemble = Ensemble.load(run_dir)
    assert len(ensemble) == 3 and ensemble.names_ == ["member_00", "member_01", "member_02"]
    probabilities = ensemble.member_probabilities(x)
    saved = saved_probabilities(run_dir)
    assert probabilities.shape == (3, 1000, 10)
    np.testing.assert_allclose(probabilities, saved, atol=1e-5)
    assert np.array_equal(ensemble.predict(x), majority_vote(probabilities))
    assert np.array_equal(ensemble.vote(x, voting="soft"), soft_vote(probabilities))
    np.testing.assert_allclose(Ensemble.load(run_dir, voting="soft").predict_proba(x), probabilities.mean(axis=0),
                               atol=1e-6)
    accuracy = ensemble.score(x, y)
    report = json.loads((run_dir / "report.json").read_text())
    assert accuracy == pytest.approx(report["ensemble"]["majority"]["test_accuracy"], abs=2e-3)
    assert accuracy > 0.8
    assert Ensemble.load(run_dir, members=2).names_ == ["member_00", "member_01"]
    assert ensemble.predict(x[0]).shape == (1,), "one (28, 28) digit is accepted"


@pytest.mark.parametrize("x, expected", [
    (np.full((28, 28), 1.0), np.full((1, 28, 28), 255)), (np.full((2, 28, 28, 1), 128, np.int64), 128),
    (np.ones((1, 28, 28), bool), 255)])
def test_as_digits(x, expected):
    digits = as_digits(x)
    assert digits.dtype == np.uint8 and digits.ndim == 3 and np.all(digits == expected)


@pytest.mark.parametrize("x, message", [(np.zeros((3, 32, 32)), "shape"), (np.full((1, 28, 28), 300), "0..255"),
                                        (np.full((1, 28, 28), np.nan), "NaN or infinity")])
def test_as_digits_refuses(x, message):
    with pytest.raises(ValueError, match=message):
        as_digits(x)


# --------------------------------------------------------------------------- predict on real files
def as_drawing(digit: np.ndarray, *, size: int = 200, offset=(30, 50), invert: bool = True, mode: str = "L",
               bits16: bool = False) -> Image.Image:
    """An MNIST digit drawn as a user's picture: large, off-centre, dark ink on white."""
    canvas = np.zeros((size + 100, size + 100), np.float64)
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR), np.float64)
    canvas[offset[0]:offset[0] + size, offset[1]:offset[1] + size] = big
    canvas = 255 - canvas if invert else canvas
    if bits16:
        return Image.fromarray((canvas * 257).astype(np.uint16))
    image = Image.fromarray(canvas.astype(np.uint8))
    return image.convert(mode) if mode != "L" else image


def test_predict_reads_users_drawings_like_mnist(run_dir, test_digits, tmp_path):
    """20 test digits redrawn as users' pictures (large, off-centre, black on white, RGB, alpha, 16-bit):
    the preprocessing brings them back to what the members know."""
    x, y = test_digits
    folder = tmp_path / "drawings"
    folder.mkdir()
    styles = [dict(), dict(invert=False), dict(mode="RGB"), dict(mode="RGBA"), dict(bits16=True),
              dict(offset=(90, 0), size=160)]
    for i in range(20):
        as_drawing(x[i], **styles[i % len(styles)]).save(folder / f"digit_{i:02d}.png")
    expected = Ensemble.load(run_dir).predict(x[:20])
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["predict", "--run", str(run_dir), str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)["predictions"]
    assert [Path(a["path"]).name for a in answers] == [f"digit_{i:02d}.png" for i in range(20)]
    got = np.array([a["label"] for a in answers])
    assert np.mean(got == expected) >= 0.85, (got, expected)
    assert np.mean(got == y[:20]) >= 0.8
    assert snapshot(folder) == before, "inputs are never written to"


def test_predict_csv_columns_arrays_and_failures(run_dir, test_digits, tmp_path):
    x, _ = test_digits
    inputs = tmp_path / "in"
    (inputs / "empty").mkdir(parents=True)
    np.save(inputs / "three.npy", x[:3])
    Image.fromarray(255 - x[3]).resize((5, 5)).save(inputs / "tiny.png")  # 5x5: still a digit
    Image.fromarray(np.full((2000, 2000), 255, np.uint8)).save(inputs / "large_blank.png")
    (inputs / "text.png").write_text("not an image")
    (inputs / "corrupt.png").write_bytes((inputs / "tiny.png").read_bytes()[:40])
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(main, ["predict", "--run", str(run_dir), str(inputs), str(inputs / "empty"),
                                       "--format", "csv", "--out", str(out), "--preview", str(tmp_path / "p.png")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == ["Error: 4 path(s) not predicted (listed above); 4 digit(s) predicted"]
    assert "text.png: not a PNG, JPEG, BMP, GIF or TIFF image" in result.output
    assert "corrupt.png: " in result.output and "empty: no image or array files in it" in result.output
    assert "large_blank.png: no ink found" in result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["path", "label", "confidence", "vote_share", "member_labels",
                             *(f"p{c}" for c in range(10)), "set", "unsure", "not_a_digit"]
    assert [Path(r["path"]).name for r in rows] == ["three.npy[0]", "three.npy[1]", "three.npy[2]",
                                                     "tiny.png"]  # sorted by name
    by_name = {Path(r["path"]).name: r for r in rows}
    expected = Ensemble.load(run_dir).predict(x[:3])
    assert [int(by_name[f"three.npy[{i}]"]["label"]) for i in range(3)] == expected.tolist()
    for row in rows:
        probabilities = [float(row[f"p{c}"]) for c in range(10)]
        assert sum(probabilities) == pytest.approx(1, abs=1e-4)
        assert float(row["confidence"]) == pytest.approx(probabilities[int(row["label"])], abs=1e-6)
        assert len(row["member_labels"].split()) == 3
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_decompression_bomb_is_refused_and_the_rest_predicted(run_dir, test_digits, tmp_path):
    x, _ = test_digits
    Image.fromarray(255 - x[0]).save(tmp_path / "good.png")
    bomb = Image.new("1", (30000, 30000))
    bomb.save(tmp_path / "bomb.png", optimize=True)
    result = CliRunner().invoke(main, ["predict", "--run", str(run_dir), str(tmp_path / "bomb.png"),
                                       str(tmp_path / "good.png")])
    assert result.exit_code == 1
    assert "bomb.png: " in result.output and "pixels" in result.output
    assert "good.png" in result.output.split("Error")[0]


def test_preprocess_none_takes_28x28_as_is(run_dir, test_digits, tmp_path):
    x, _ = test_digits
    Image.fromarray(x[5]).save(tmp_path / "raw.png")
    Image.fromarray(x[5]).resize((56, 56)).save(tmp_path / "big.png")
    out = tmp_path / "answers.json"
    result = CliRunner().invoke(main, ["predict", "--run", str(run_dir), "--preprocess", "none", "--format", "json",
                                       "--out", str(out), str(tmp_path / "raw.png"), str(tmp_path / "big.png")])
    assert result.exit_code == 1 and "big.png: is 56x56 pixels; --preprocess none takes 28x28" in result.output
    answer = json.loads(out.read_text())
    assert [Path(a["path"]).name for a in answer["predictions"]] == ["raw.png"]
    assert answer["predictions"][0]["label"] == int(Ensemble.load(run_dir).predict(x[5])[0])
    assert answer["failures"][0]["path"].endswith("big.png")


@pytest.mark.parametrize("args, code, text", [
    (["--out", "{in}/a.png"], 2, "is an input of this command"),
    (["--preview", "/dev/null"], 2, "is a character device"),
    (["--format", "xml"], 2, "--format"),
])
def test_predict_bad_options(run_dir, test_digits, tmp_path, args, code, text):
    x, _ = test_digits
    Image.fromarray(x[0]).save(tmp_path / "a.png")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["predict", "--run", str(run_dir), str(tmp_path / "a.png"),
                                       *[a.format(**{"in": tmp_path}) for a in args]])
    assert result.exit_code == code and text in result.output
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- export
BLOCK_PACKAGE = "import sys; sys.modules['ensemble_cnn'] = None; sys.modules['cli'] = None\n"


@pytest.fixture(scope="module")
def exported_without_the_package(run_dir, small_mnist_npz, tmp_path_factory):
    """Every vote exported by the command line, then ALL the exports run in ONE fresh process that cannot
    import the package (one TensorFlow start-up instead of one per vote): vote -> (export result, process,
    the folder holding that vote's vote.npy and members.npy)."""
    root = tmp_path_factory.mktemp("exported")
    exports = {}
    for vote in VOTES:
        out = root / f"ensemble_{vote}.keras"
        exports[vote] = (CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(out),
                                                   "--vote", vote]), out, root / vote)
        (root / vote).mkdir()
    models = {str(out): str(folder) for result, out, folder in exports.values() if result.exit_code == 0}
    script = BLOCK_PACKAGE + f"""
import os, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
x = np.load({str(small_mnist_npz)!r})["x_test"]
for path, folder in {models!r}.items():
    model = keras.saving.load_model(path, safe_mode=True)
    out = model.predict(x, batch_size=500, verbose=0)
    np.save(os.path.join(folder, 'vote.npy'), out["vote"]); np.save(os.path.join(folder, 'members.npy'), out["members"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return {vote: (result, done, folder) for vote, (result, _, folder) in exports.items()}


@pytest.mark.parametrize("vote", list(VOTES))
def test_exported_model_equals_evaluate_without_the_package(run_dir, test_digits, vote, exported_without_the_package):
    result, done, folder = exported_without_the_package[vote]
    assert result.exit_code == 0, result.output
    assert done.returncode == 0, done.stderr[-3000:]
    members = np.load(folder / "members.npy")
    saved = saved_probabilities(run_dir)
    np.testing.assert_allclose(members, saved.transpose(1, 0, 2), atol=1e-5)
    exported = np.load(folder / "vote.npy").argmax(axis=1)
    expected = VOTES[vote].labels(members.transpose(1, 0, 2))
    assert np.array_equal(exported, expected), f"{vote}: {np.sum(exported != expected)} digits differ"
    report = json.loads((run_dir / "report.json").read_text())
    assert np.mean(exported == test_digits[1]) == pytest.approx(report["ensemble"][vote]["test_accuracy"], abs=2e-3)


def test_export_saved_model_round_trip(run_dir, test_digits, tmp_path):
    out = tmp_path / "served"
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(out), "--format", "saved_model",
                                       "--vote", "soft"])
    assert result.exit_code == 0, result.output
    import tensorflow as tf

    loaded = tf.saved_model.load(str(out))  # keep a reference: its variables live as long as it does
    served = loaded.serve(tf.constant(test_digits[0][:100]))
    expected = Ensemble.load(run_dir, voting="soft").predict_proba(test_digits[0][:100])
    np.testing.assert_allclose(served["vote"].numpy(), expected, atol=1e-5)
    again = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", str(out), "--format", "saved_model"])
    assert again.exit_code == 2 and "exists; give --overwrite to replace it" in again.output


@pytest.mark.parametrize("name, text", [("model.h5", "must end in .keras"),
                                        ("{run}/member_00.keras", "an input of this command")])
def test_export_refuses_bad_outputs(run_dir, tmp_path, name, text):
    before = snapshot(run_dir)
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--out", name.format(run=run_dir)])
    assert result.exit_code == 2 and text in result.output
    assert snapshot(run_dir) == before


# --------------------------------------------------------------------------- test-time augmentation
def test_tta_averages_each_member_over_the_views(run_dir, test_digits):
    from augment import view_stack

    x, y = test_digits[0][:200], test_digits[1][:200]
    plain = Ensemble.load(run_dir)
    shifted = Ensemble.load(run_dir, tta="shift")
    assert shifted.tta == "shift" and "tta='shift'" in repr(shifted)
    by_view = np.stack([plain.member_probabilities(view) for view in view_stack(x, "shift")])  # (V, K, N, 10)
    probabilities = shifted.member_probabilities(x)
    np.testing.assert_allclose(probabilities, by_view.mean(axis=0), atol=1e-5)
    assert not np.allclose(probabilities, plain.member_probabilities(x), atol=1e-3), "the views change the answer"
    assert np.array_equal(shifted.predict(x), majority_vote(probabilities))
    assert shifted.score(x, y) > 0.8
    with pytest.raises(ValueError, match="tta must be one of none, shift, rotate, shift-rotate, got 'zoom'"):
        Ensemble.load(run_dir, tta="zoom")
    with pytest.raises(ValueError, match="without test-time augmentation"):
        shifted.to_keras()


def test_evaluate_with_tta_reports_its_views_and_cost(run_dir, tmp_path, small_mnist_npz):
    import shutil

    from ensemble_cnn.evaluation.evaluate import evaluate_run

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = CliRunner().invoke(main, ["evaluate", "--run", str(copy), "--tta", "rotate"])
    assert result.exit_code == 0, result.output
    assert "test-time augmentation: rotate, 3 views averaged per member" in result.output
    report = json.loads((copy / "report.json").read_text())
    assert report["tta"]["views"] == "rotate" and report["tta"]["n_views"] == 3
    assert report["tta"]["predict_seconds"] > 0
    with np.load(small_mnist_npz) as npz:  # views made once for all members = each member's own views
        x, y = npz["x_test"], npz["y_test"]
    rotated = Ensemble.load(copy, tta="rotate").member_probabilities(x)
    assert [m["test_accuracy"] for m in report["members"]] == pytest.approx([np.mean(p.argmax(1) == y) for p in rotated])
    assert "test-time augmentation: rotate" in (copy / "report.md").read_text()
    plain = evaluate_run(copy, plots=False, log=None)
    assert plain["tta"]["views"] == "none" and plain["members"] != report["members"]
    with pytest.raises(ValueError, match="needs reload=True"):
        evaluate_run(copy, tta="shift", reload=False, plots=False, log=None)
    bad = CliRunner().invoke(main, ["evaluate", "--run", str(copy), "--tta", "zoom"])
    assert bad.exit_code == 2 and "Invalid value for '--tta'" in bad.output


def test_predict_with_tta(run_dir, test_digits, tmp_path):
    x, _ = test_digits
    np.save(tmp_path / "digits.npy", x[:20])
    result = CliRunner().invoke(main, ["predict", "--run", str(run_dir), str(tmp_path / "digits.npy"),
                                       "--format", "json", "--tta", "shift"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    expected = Ensemble.load(run_dir, tta="shift").predict(x[:20])
    assert answer["tta"] == "shift" and [row["label"] for row in answer["predictions"]] == expected.tolist()


# --------------------------------------------------------------------------- issue 20: safety of predict's inputs and outputs
@pytest.fixture(scope="module")
def fake_run(tmp_path_factory, make_run) -> Path:
    """A run with one untrained member: fast, for properties that are not accuracy."""
    path = tmp_path_factory.mktemp("fake") / "run"
    make_run(path)
    return path


def a_digit(x: np.ndarray, path: Path) -> Path:
    """Save MNIST digit ``x`` as a black-on-white PNG at ``path``."""
    Image.fromarray(255 - x).resize((84, 84)).save(path)
    return path


BLANKS = {
    "white.png": lambda: Image.new("L", (50, 50), 255),
    "black.png": lambda: Image.new("L", (50, 50), 0),
    "one_pixel.png": lambda: Image.new("L", (1, 1), 90),
    "strip.png": lambda: Image.new("L", (10000, 1), 255),
    "transparent.png": lambda: Image.new("RGBA", (40, 40), (0, 0, 0, 0)),
    "large_white.png": lambda: Image.new("RGB", (8000, 5000), (255, 255, 255)),  # 40 MP
}


def test_blank_images_and_digits_are_refused_and_the_rest_predicted(fake_run, test_digits, tmp_path):
    x, _ = test_digits
    folder = tmp_path / "in"
    folder.mkdir()
    for name, make in BLANKS.items():
        make().save(folder / name)
    a_digit(x[0], folder / "good.png")
    np.save(folder / "arrays.npy", np.stack([x[1], np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)]))
    out = tmp_path / "answers.json"
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(folder), "--format", "json",
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    for name in BLANKS:
        assert sum(line.startswith(f"{folder / name}: no ink found") for line in lines) == 1, (name, result.output)
    for index in (1, 2):
        assert f"{folder / 'arrays.npy'}[{index}]: no ink found" in result.output
    answer = json.loads(out.read_text())
    assert [Path(a["path"]).name for a in answer["predictions"]] == ["arrays.npy[0]", "good.png"]
    assert len(answer["failures"]) == len(BLANKS) + 2
    assert "Error: 8 path(s) not predicted (listed above); 2 digit(s) predicted" in result.output


def test_blank_image_with_preprocess_none_is_refused(fake_run, tmp_path):
    Image.new("L", (28, 28), 0).save(tmp_path / "black28.png")
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), "--preprocess", "none",
                                       str(tmp_path / "black28.png")])
    assert result.exit_code == 1 and f"{tmp_path / 'black28.png'}: no ink found" in result.output


@pytest.mark.parametrize("recursive", [[], ["-r"]])
def test_a_symbolic_link_loop_is_one_failure_and_the_rest_predicted(fake_run, test_digits, tmp_path, recursive):
    x, _ = test_digits
    folder = tmp_path / "in"
    folder.mkdir()
    a_digit(x[0], folder / "good.png")
    (folder / "x").symlink_to("x")  # ln -s x x
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), *recursive, str(folder), "--format", "csv"])
    assert result.exit_code == 1, result.output
    loop = "is a symbolic link that loops (Too many levels of symbolic links)"
    assert result.output.count(f"{folder / 'x'}: {loop}") == 1
    assert f"{folder / 'good.png'}," in result.output  # its CSV row
    direct = CliRunner().invoke(main, ["predict", "--run", str(fake_run), *recursive, str(folder / "x"),
                                       str(folder / "good.png"), "--format", "csv"])
    assert direct.exit_code == 1 and f"{folder / 'x'}: {loop}" in direct.output
    assert f"{folder / 'good.png'}," in direct.output


@pytest.mark.parametrize(("name", "magic"), [("p.jpg", b"\xff\xd8\xff"),
                                             ("p.JPEG", b"\xff\xd8\xff"), ("p.svg", b"<?xml"), ("p.pdf", b"%PDF")])
def test_preview_is_written_in_the_format_its_name_says(fake_run, test_digits, tmp_path, name, magic):
    x, _ = test_digits
    a_digit(x[0], tmp_path / "good.png")
    preview = tmp_path / "out" / name
    preview.parent.mkdir()
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(tmp_path / "good.png"),
                                       "--preview", str(preview)])
    assert result.exit_code == 0, result.output
    assert preview.read_bytes().startswith(magic)
    assert [p.name for p in preview.parent.iterdir()] == [name]  # no temporary file left


@pytest.mark.parametrize("name", ["p.gif", "p", "p.png.tmp"])
def test_preview_with_an_unknown_ending_is_refused_before_loading_anything(fake_run, tmp_path, monkeypatch, name):
    Image.new("L", (20, 20), 0).save(tmp_path / "a.png")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the --preview check")

    monkeypatch.setattr(Ensemble, "load", no_loading)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(tmp_path / "a.png"),
                                       "--preview", str(tmp_path / name)])
    assert result.exit_code == 2, result.output
    assert "--preview" in result.output and "expected one of .png, .jpg, .jpeg, .svg, .pdf" in result.output
    assert snapshot(tmp_path) == before


def test_out_is_left_untouched_when_nothing_is_predicted(fake_run, tmp_path):
    Image.new("L", (30, 30), 255).save(tmp_path / "blank.png")
    (tmp_path / "text.png").write_text("not an image")
    out = tmp_path / "answers.csv"
    out.write_text("earlier answers\n")
    for target in (out, tmp_path / "new.csv"):
        result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(tmp_path / "blank.png"),
                                           str(tmp_path / "text.png"), "--format", "csv", "--out", str(target),
                                           "--preview", str(tmp_path / "p.png")])
        assert result.exit_code == 1, result.output
        assert f"no digit predicted: {target} not written" in result.output
        assert f"no digit predicted: {tmp_path / 'p.png'} not drawn" in result.output
    assert out.read_text() == "earlier answers\n"
    assert not (tmp_path / "new.csv").exists() and not (tmp_path / "p.png").exists()


def test_messages_escape_paths_and_name_each_path_once(fake_run, test_digits, tmp_path):
    x, _ = test_digits
    a_digit(x[0], tmp_path / "two\nlines.png")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 5), np.uint8))
    out = tmp_path / "an\nswers.csv"
    result = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(tmp_path / "two\nlines.png"),
                                       str(tmp_path / "bad.npz"), "--format", "csv", "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(f"wrote 1 predictions to {tmp_path}/an\\nswers.csv; 1 predicted; ") for line in lines)
    assert f"{tmp_path}/bad.npz: array x: has shape (3, 5), expected (28, 28), (N, 28, 28) or (N, 28, 28, 1)" in lines
    assert all(line.count("bad.npz") <= 1 for line in lines)
    table = CliRunner().invoke(main, ["predict", "--run", str(fake_run), str(tmp_path / "two\nlines.png")])
    assert table.exit_code == 0 and f"{tmp_path}/two\\nlines.png " in table.output
    assert len(table.output.splitlines()) == 3  # header, one row and the summary line


def test_predict_paths_keeps_no_decoded_image(fake_run, test_digits, tmp_path, monkeypatch):
    """Streaming: each decoded image is dropped once its digit is made (only small thumbnails stay)."""
    import gc
    import weakref

    import ensemble_cnn.inference.predict as predict_module

    x, _ = test_digits
    paths = [a_digit(x[i], tmp_path / f"d{i}.png") for i in range(4)]
    decoded = []
    original = predict_module.read_image

    def spy(path):
        image = original(path)
        decoded.append(weakref.ref(image))
        return image

    monkeypatch.setattr(predict_module, "read_image", spy)
    ensemble = Ensemble.load(fake_run)
    for thumbnails in ({}, {"thumbnails": True}):
        decoded.clear()
        result = predict_module.predict_paths(ensemble, paths, **thumbnails)
        gc.collect()
        assert len(result.items) == 4 and len(decoded) == 4
        assert all(ref() is None for ref in decoded), "a decoded image is still held after predict_paths"
    small = [item.thumbnail for item in result.items]
    assert all(t is not None and t.dtype == np.uint8 and max(t.shape) <= 96 for t in small)
