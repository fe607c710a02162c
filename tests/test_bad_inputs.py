"""The bad-input matrix, through the command line (CliRunner): every command, every kind of bad input.

Each case must end with one one-line error that names what is wrong, exit code 2
(usage error) or 1 (bad data or run folder), never 0, no Python traceback, and no
file created or changed anywhere under the test's folder (no output, no ``*.tmp*``).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import TINY_ARGS

TINY = TINY_ARGS
TINY_ANY_MODE = [arg for arg in TINY_ARGS if arg not in ("--mode", "sequential")]


# --------------------------------------------------------------------------- helpers
def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` (or ``roots`` themselves) with its sha256.

    Folders are ``"dir"``; FIFOs, devices and sockets are recorded by kind and never read.
    """
    import stat

    state = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")] if root.is_dir() else [root]):
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                state[str(path)] = "dir"
            elif stat.S_ISREG(mode):
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[str(path)] = f"special {stat.S_IFMT(mode):o}"
    return state


def invoke(args: list[str], root: Path, *, watch: tuple[Path, ...] = ()):
    """Run the CLI in an empty folder under ``root``; check nothing under ``root``/``watch`` changed."""
    work = root / "work"
    work.mkdir(exist_ok=True)
    before = snapshot(root, *watch)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(cwd)
    created = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    assert not created, f"the failed command created {created}"
    after = snapshot(root, *watch)
    assert after == before, f"the failed command changed files: {set(after) ^ set(before) or 'contents'}"
    return result


def assert_one_line_error(result, code: int, text: str) -> None:
    output = result.output
    assert result.exit_code == code, output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one final one-line error:\n{output}"
    assert text in errors[0], output


def good_arrays(n: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, n, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, n, dtype=np.uint8),
    )


def npz_with(**changes):
    """A builder writing an npz: the good arrays with ``changes`` (``None`` drops a key)."""

    def build(folder: Path) -> Path:
        arrays = {**good_arrays(), **changes}
        path = folder / "bad.npz"
        np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
        return path

    return build


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None, cut: int = 0, gz: bool = False) -> None:
    magic = magic if magic is not None else (0x0803 if array.ndim == 3 else 0x0801)
    payload = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload += array.astype(np.uint8).tobytes()
    payload = payload[: len(payload) - cut] if cut else payload
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def idx_folder(*, magic: int | None = None, cut: int = 0, header_only: bool = False, gz: bool = False):
    """A builder writing an IDX folder whose training images file is damaged as asked."""

    def build(folder: Path) -> Path:
        arrays = good_arrays()
        root = folder / "idx"
        root.mkdir()
        write_idx(root / "train-labels-idx1-ubyte", arrays["y_train"])
        write_idx(root / "t10k-images-idx3-ubyte", arrays["x_test"])
        write_idx(root / "t10k-labels-idx1-ubyte", arrays["y_test"])
        images = root / "train-images-idx3-ubyte"
        if header_only:
            images.write_bytes((0x0803).to_bytes(4, "big") + b"\x00\x00")
        else:
            write_idx(images, arrays["x_train"], magic=magic, cut=cut, gz=gz)
        return root

    return build


def raw(data: bytes, name: str = "bad.npz"):
    def build(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return build


def truncated_npz(folder: Path) -> Path:
    good = npz_with()(folder)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    return good


def folder_without_idx(folder: Path) -> Path:
    (folder / "nothing-here").mkdir()
    (folder / "nothing-here" / "readme.txt").write_text("no IDX files")
    return folder / "nothing-here"


def npy_not_npz(folder: Path) -> Path:
    path = folder / "mnist.npz"
    with open(path, "wb") as fh:
        np.save(fh, good_arrays()["x_train"])
    return path


n = 30
DATA_CASES = {
    "missing file": (lambda folder: folder / "nowhere.npz", "no such file or folder"),
    "folder without IDX files": (folder_without_idx, "missing IDX file train-images-idx3-ubyte"),
    "empty file": (raw(b""), "file is empty"),
    "not an npz (text)": (raw(b"x_train,y_train\n1,2\n"), "not an .npz archive"),
    "a bare .npy": (npy_not_npz, "not an .npz archive"),
    "truncated npz": (truncated_npz, "not a readable .npz file"),
    "corrupt zip": (raw(b"PK\x03\x04" + bytes(range(256)) * 4), "not a readable .npz file"),
    "IDX wrong magic": (idx_folder(magic=0x0801), "wrong IDX magic number"),
    "IDX short data": (idx_folder(cut=100), "header promises"),
    "IDX short data (gzip)": (idx_folder(cut=100, gz=True), "header promises"),
    "IDX truncated header": (idx_folder(header_only=True), "truncated IDX file"),
    "npz without y_test": (npz_with(y_test=None), "missing arrays y_test"),
    "npz without any key": (npz_with(x_train=None, y_train=None, x_test=None, y_test=None, other=np.zeros(3)),
                            "missing arrays x_train, y_train, x_test, y_test"),
    "object arrays": (npz_with(y_train=np.array([object()] * n)), "object (pickled) arrays"),
    "images (N, 32, 32)": (npz_with(x_train=np.zeros((n, 32, 32), np.uint8)), "shape (30, 32, 32), expected (N, 28, 28)"),
    "images (N, 784)": (npz_with(x_test=np.zeros((n, 784), np.uint8)), "x_test has shape (30, 784), expected (N, 28, 28)"),
    "float images": (npz_with(x_train=np.zeros((n, 28, 28), np.float32)), "x_train has dtype float32, expected uint8"),
    "NaN images": (npz_with(x_train=np.full((n, 28, 28), np.nan)), "dtype float64 holding NaN/inf"),
    "inf labels": (npz_with(y_test=np.full(n, np.inf)), "y_test has dtype float64 holding NaN/inf"),
    "labels above 9": (npz_with(y_train=np.full(n, 10, np.uint8)), "labels in [10, 10], expected 0..9"),
    "negative labels": (npz_with(y_test=np.full(n, -1, np.int64)), "labels in [-1, -1], expected 0..9"),
    "labels (N, 1)": (npz_with(y_train=np.zeros((n, 1), np.uint8)), "y_train has shape (30, 1), expected (N,)"),
    "count mismatch": (npz_with(y_test=np.zeros(10, np.uint8)), "holds 30 images but y_test holds 10 labels"),
    "zero images": (npz_with(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.uint8)),
                    "x_train holds zero images"),
}


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, make_run) -> Path:
    """A valid run folder (one untrained member) for `evaluate --data BAD`."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    make_run(run_dir)
    return run_dir


DATA_COMMANDS = {
    "augment --data": lambda p, run: ["augment", "--data", p, "--copies", "1", "--out", "out/expanded.npz",
                                      "--preview", "out/preview.png"],
    "train --data": lambda p, run: ["train", "--data", p, *TINY, "--out", "out/run"],
    "train --expanded": lambda p, run: ["train", "--expanded", p, *TINY, "--augment", "none", "--out", "out/run"],
    "run --data": lambda p, run: ["run", "--data", p, *TINY, "--out", "out/run"],
    "run --expanded": lambda p, run: ["run", "--expanded", p, *TINY, "--out", "out/run"],
    "evaluate --data": lambda p, run: ["evaluate", "--run", str(run), "--data", p],
}


# --------------------------------------------------------------------------- bad data, every command
@pytest.mark.parametrize("command", list(DATA_COMMANDS))
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, command, tmp_path, evaluated_run):
    build, text = DATA_CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = build(inputs)
    result = invoke(DATA_COMMANDS[command](str(path), evaluated_run), tmp_path, watch=(evaluated_run,))
    assert_one_line_error(result, 1, text)
    assert str(path) in result.output, "the message must name the file"


def test_expanded_npz_with_object_provenance_is_refused(tmp_path):
    """`--expanded` also reads the provenance arrays; pickled ones must be refused like any other."""
    path = npz_with(train_source_index=np.array([object()] * n), train_variant=np.zeros(n, np.int16))(tmp_path)
    result = invoke(["train", "--expanded", str(path), *TINY, "--augment", "none", "--out", "out/run"], tmp_path)
    assert_one_line_error(result, 1, "holds object (pickled) arrays, which are refused")


# --------------------------------------------------------------------------- bad option values
TRAINING_OPTION_CASES = {
    "--members 0": (["--members", "0"], "--members"),
    "--epochs 0": (["--epochs", "0"], "--epochs"),
    "--batch-size 0": (["--batch-size", "0"], "--batch-size"),
    "--val-size 0 --checkpoint best": (["--val-size", "0", "--checkpoint", "best"], "--val-size"),
    "--recipe snapshot --epochs 1": (["--recipe", "snapshot"], "--epochs must be a multiple of 3 with recipe snapshot"),
    "--recipe snapshot --checkpoint best": (["--recipe", "snapshot", "--epochs", "3", "--checkpoint", "best"],
                                            "--checkpoint must be last with recipe snapshot"),
    "--recipe swa": (["--recipe", "swa", "--ema", "0.9", "--epochs", "4"], "--ema must be 0 with recipe swa"),
    "--recipe fge --epochs 4": (["--recipe", "fge", "--epochs", "4"], "--epochs must be at least 5 with recipe fge"),
    "--limit 5": (["--limit", "5"], "--limit"),
    "--width 0": (["--width", "0"], "--width"),
    "--dropout 1": (["--dropout", "1"], "--dropout"),
    "--lr 0": (["--lr", "0"], "--lr"),
    "--jobs 0": (["--jobs", "0"], "--jobs"),
    "--max-rotation 200": (["--max-rotation", "200"], "--max-rotation"),
    "--sigma 0": (["--sigma", "0"], "--sigma"),
    "--max-scale 1": (["--max-scale", "1"], "--max-scale"),
    "--transforms shift,warp": (["--transforms", "shift,warp"], "--transforms"),
    "--mode turbo": (["--mode", "turbo"], "--mode"),
    "--backend spark": (["--backend", "spark"], "--backend"),
    "--scheduler without a cluster backend": (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler"),
    "--backend dask --mode sequential": (["--backend", "dask", "--mode", "sequential"], "--mode"),
    "--data and --expanded": (["--expanded", "other.npz"], "either --data or --expanded"),
}


@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize("case", list(TRAINING_OPTION_CASES))
def test_bad_training_option(case, command, tmp_path, small_mnist_npz):
    extra, text = TRAINING_OPTION_CASES[case]
    tiny = TINY_ANY_MODE if "--mode" in extra else TINY
    args = [command, "--data", str(small_mnist_npz), *tiny, *extra, "--out", "out/run"]
    assert_one_line_error(invoke(args, tmp_path), 2, text)


@pytest.mark.parametrize(
    "extra, text",
    [
        (["--copies", "-1"], "--copies"),
        (["--max-rotation", "200"], "--max-rotation"),
        (["--sigma", "0"], "--sigma"),
        (["--max-shift", "15"], "--max-shift"),
        (["--alpha", "-1"], "--alpha"),
        (["--transforms", ","], "--transforms"),
        (["--jobs", "0"], "--jobs"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_augment_option(extra, text, tmp_path, small_mnist_npz):
    args = ["augment", "--data", str(small_mnist_npz), *extra, "--out", "out/expanded.npz"]
    assert_one_line_error(invoke(args, tmp_path), 2, text)


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["evaluate"], 2, "Missing option '--run'"),
        (["evaluate", "--run", "{tmp}/no-such-run"], 2, "no-such-run is not a folder"),
        (["evaluate", "--run", "{tmp}/notes.txt"], 2, "notes.txt is not a folder"),
        (["evaluate", "--run", "{tmp}/empty-run", "--vote", "loudest"], 2, "--vote"),
        (["evaluate", "--run", "{tmp}/empty-run"], 1, "no config.json"),
        (["augment", "--bogus"], 2, "No such option '--bogus'"),
        (["no-such-command"], 2, "No such command 'no-such-command'"),
    ],
)
def test_bad_evaluate_and_command_usage(args, code, text, tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "empty-run").mkdir()
    result = invoke([arg.format(tmp=tmp_path) for arg in args], tmp_path)
    assert_one_line_error(result, code, text)


# --------------------------------------------------------------------------- bad output paths and run folders
@pytest.mark.parametrize(
    "option, target, text",
    [
        ("--out", "/dev/null", "/dev/null is a character device, expected a regular file path"),
        ("--out", "notes.txt/expanded.npz", "notes.txt is a file, not a folder"),
        ("--out", "notes.txt/deeper/expanded.npz", "notes.txt is a file, not a folder"),
        ("--preview", "a-folder", "a-folder is a folder, expected a file path"),
        ("--preview", "notes.txt/preview.png", "notes.txt is a file, not a folder"),
    ],
)
def test_augment_unwritable_output(option, target, text, tmp_path, small_mnist_npz):
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "a-folder").mkdir()
    args = ["augment", "--data", str(small_mnist_npz), "--limit", "100", "--copies", "1"]
    args += ["--out", str(tmp_path / "ok.npz")] if option == "--preview" else []
    result = invoke([*args, option, str(tmp_path / target)], tmp_path)
    assert_one_line_error(result, 2, text)
    assert not (tmp_path / "ok.npz").exists()


@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize(
    "target, text",
    [
        ("notes.txt/run", "notes.txt is a file, not a folder"),
        ("notes.txt", "notes.txt: exists and is a file, not a folder"),
        ("/dev/null", "/dev/null: exists and is a character device, not a folder"),
    ],
)
def test_unwritable_run_folder(command, target, text, tmp_path, small_mnist_npz):
    """A run folder under a regular file cannot be created, even by root; a device is never a run folder."""
    (tmp_path / "notes.txt").write_text("a file")
    args = [command, "--data", str(small_mnist_npz), *TINY, "--out", str(tmp_path / target)]
    assert_one_line_error(invoke(args, tmp_path), 2, text)


@pytest.mark.parametrize("command", ["train", "run"])
def test_run_folder_of_a_different_run_is_left_alone(command, tmp_path, small_mnist_npz, make_run):
    other = tmp_path / "other-run"
    make_run(other, seed=11)
    args = [command, "--data", str(small_mnist_npz), *TINY, "--members", "1", "--augment", "distort",
            "--out", str(other)]
    result = invoke(args, tmp_path)  # invoke checks the other run's files are untouched (no preview.png either)
    assert_one_line_error(result, 1, "holds a different run (it differs in --augment ('none' in the folder, "
                                     "'distort' asked); --distortion ({} in the folder, ")
    assert "--seed (11 in the folder, 0 asked)" in result.output


@pytest.mark.parametrize("command", ["train", "run", "evaluate"])
def test_corrupt_run_config(command, tmp_path, small_mnist_npz):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"arch": "nielsen", "members": ')
    if command == "evaluate":
        args = ["evaluate", "--run", str(run_dir)]
    else:
        args = [command, "--data", str(small_mnist_npz), *TINY, "--out", str(run_dir)]
    assert_one_line_error(invoke(args, tmp_path), 1, "config.json: not a valid run config")


def test_evaluate_run_without_members(tmp_path, make_run):
    run_dir = tmp_path / "run"
    make_run(run_dir)
    for path in run_dir.glob("member_*"):
        path.unlink()
    result = invoke(["evaluate", "--run", str(run_dir)], tmp_path)
    assert_one_line_error(result, 1, "no usable trained member found")
    assert "member 00 left out: missing (not trained yet)" in result.output


def test_evaluate_member_that_is_not_a_keras_file(tmp_path, make_run):
    """A member whose record matches its bytes but whose bytes are no model: refused in one line."""
    from ensemble_cnn.storage import atomic as _atomic
    from ensemble_cnn.storage.hashing import sha256_file

    run_dir = tmp_path / "run"
    make_run(run_dir)
    (run_dir / "member_00.keras").write_bytes(b"PK\x03\x04 not really a keras archive")
    record = json.loads((run_dir / "member_00.json").read_text())
    _atomic.write_json(run_dir / "member_00.json", {**record, "model_sha256": sha256_file(run_dir / "member_00.keras")})
    result = invoke(["evaluate", "--run", str(run_dir)], tmp_path)
    assert_one_line_error(result, 1, "no usable trained member found")
    assert "member 00 left out: " in result.output and "member_00.keras: not a loadable Keras model" in result.output


# --------------------------------------------------------------------------- cluster backends
def test_unreachable_dask_scheduler(tmp_path, small_mnist_npz, monkeypatch):
    pytest.importorskip("distributed")
    from ensemble_cnn.training import backends
    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1.0)
    args = ["train", "--data", str(small_mnist_npz), *TINY_ANY_MODE, "--backend", "dask",
            "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "run")]
    result = invoke(args, tmp_path)
    assert_one_line_error(result, 1, "cannot reach the dask scheduler at tcp://127.0.0.1:9")
    assert not (tmp_path / "run").exists(), "no run folder for a run that could not start"


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_backend_not_installed(backend, tmp_path, small_mnist_npz, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed" if backend == "dask" else "ray", None)  # import fails
    args = ["train", "--data", str(small_mnist_npz), *TINY_ANY_MODE, "--backend", backend,
            "--out", str(tmp_path / "run")]
    result = invoke(args, tmp_path)
    assert_one_line_error(result, 1, f"pip install 'ensemble-cnn[{backend}]'")
