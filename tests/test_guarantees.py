"""Never destroy data, never hang: output paths, the run-folder lock, crafted files and extreme values.

Every case reproduces a way a plausible (or hostile) command used to destroy data, hang
or end in a traceback; each must now give one line naming what is wrong, a non-zero exit
code, and leave every file as it was. Where a case goes through ``train`` for its folder handling (not its
training), ``fake_training`` saves untrained members in the trainer's place.
"""
from __future__ import annotations

import errno
import gzip
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import TINY_ARGS
from ensemble_cnn.storage.run_folder import RunFolder
from test_bad_inputs import assert_one_line_error, good_arrays, invoke, snapshot
from test_lock import dead_pid, stale_lock, start_lock_holder

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_good_npz(path: Path, n: int = 30) -> Path:
    np.savez(path, **good_arrays(n))
    return path


def finishes_within(seconds: float, func):
    """Run ``func`` in a thread; fail the test if it has not returned after ``seconds`` (a hang)."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------- 1. output paths
OUTPUT_CASES = {
    "--out a device": (lambda d: ["--out", "/dev/null"], "--out", "/dev/null is a character device"),
    "--preview a device": (lambda d: ["--out", str(d / "e.npz"), "--preview", "/dev/null"], "--preview",
                           "/dev/null is a character device"),
    "--out is the input": (lambda d: ["--out", str(d / "in.npz")], "--out", "is an input of this command"),
    "--preview is the input": (lambda d: ["--out", str(d / "e.npz"), "--preview", str(d / "in.npz")], "--preview",
                               "is an input of this command"),
    "--out is a link to the input": (lambda d: ["--out", str(d / "link.npz")], "--out", "is an input of this command"),
    "--out and --preview the same": (lambda d: ["--out", str(d / "e.npz"), "--preview", str(d / "e.npz")],
                                     "--preview", "is also the --out output of this command"),
    "--out whose manifest is itself": (lambda d: ["--out", str(d / "e.json")], "--out",
                                       "is also the --out output of this command"),
    "--out a FIFO": (lambda d: ["--out", str(d / "fifo")], "--out", "is a FIFO, expected a regular file path"),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_augment_output_paths_are_checked_before_writing(case, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    data = write_good_npz(inputs / "in.npz")
    (inputs / "link.npz").symlink_to(data)
    os.mkfifo(inputs / "fifo")
    build, option, text = OUTPUT_CASES[case]
    args = ["augment", "--data", str(data), "--copies", "1", *build(inputs)]
    result = finishes_within(60, lambda: invoke(args, tmp_path, watch=(Path("/dev/null"),)))
    assert_one_line_error(result, 2, text)
    assert option in result.output


def test_augment_out_with_a_trailing_slash_means_a_folder(tmp_path):
    data = write_good_npz(tmp_path / "in.npz")
    result = CliRunner().invoke(main, ["augment", "--data", str(data), "--copies", "1",
                                       "--out", str(tmp_path / "expanded") + "/"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "expanded" / "mnist_expanded.npz").is_file()
    assert (tmp_path / "expanded" / "mnist_expanded.json").is_file()
    assert not (tmp_path / "expanded.npz").exists()


@pytest.mark.parametrize("command", ["train", "run"])
def test_train_refuses_a_folder_of_the_users_own_files(command, tmp_path, small_mnist_npz):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "report.md").write_text("my notes")
    (target / "accuracy.png").write_bytes(b"my picture")
    args = [command, "--data", str(small_mnist_npz), *TINY_ARGS, "--out", str(target)]
    result = invoke(args, tmp_path, watch=(target,))
    assert_one_line_error(result, 2, "holds files that are not a run of ensemble-cnn (accuracy.png, report.md)")


def test_train_into_an_empty_folder_works(tmp_path, small_mnist_npz, fake_training):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *TINY_ARGS,
                                       "--out", str(tmp_path / "empty")])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- 2. the run-folder lock
def test_second_train_on_a_busy_folder_stops_at_once_naming_the_holder(tmp_path, small_mnist_npz):
    run_dir = tmp_path / "run"
    # the whole slice (94 steps a member): the first run holds its folder for seconds after it locks it
    slow = [arg if arg != "500" else "3000" for arg in TINY_ARGS]
    command = [sys.executable, "-m", "cli", "train", "--data", str(small_mnist_npz), *slow, "--members", "2",
               "--out", str(run_dir)]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not (run_dir / ".ensemble-cnn.lock").exists():
                assert first.poll() is None, (tmp_path / "first.log").read_text()
                assert time.monotonic() < deadline, "the first run never locked its folder"
                time.sleep(0.05)
            started = time.monotonic()
            second = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *slow, "--members", "2",
                                               "--out", str(run_dir)])
            assert time.monotonic() - started < 30, "the second run must stop at once"
            assert_one_line_error(second, 1, f"in use by another train/run (pid {first.pid} on this machine")
            evaluated = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir), "--allow-missing"])
            if RunFolder(run_dir).holder() is not None and evaluated.exit_code == 0:  # held then, as it is now
                assert "is being trained" in evaluated.output
        finally:
            first.wait(timeout=600)
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert (run_dir / "member_00.json").exists() and (run_dir / "member_01.json").exists()
    assert RunFolder(run_dir).holder() is None, "the lock is released at the end"


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, tiny_config, fake_training):
    from ensemble_cnn.training.train import train_ensemble

    run_dir = tmp_path / "run"
    stale_lock(run_dir, dead_pid())
    result = train_ensemble(tiny_config(), run_dir, log=None)
    assert result.complete and RunFolder(run_dir).holder() is None


def test_live_lock_blocks_train_and_evaluate_says_so(tmp_path, make_run):
    from ensemble_cnn.errors import RunFolderBusy
    from ensemble_cnn.training.train import train_ensemble

    run_dir = tmp_path / "run"
    config = make_run(run_dir, members=1)
    sleeper = start_lock_holder(run_dir)
    try:
        with pytest.raises(RunFolderBusy, match=f"pid {sleeper.pid} on this machine") as busy:
            train_ensemble(config, run_dir, log=None)
        assert str(run_dir / ".ensemble-cnn.lock") in str(busy.value), "the message names the lock file"
        result = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir)])
        assert result.exit_code == 0, result.output
        assert f"is being trained (pid {sleeper.pid}" in result.output
        assert json.loads((run_dir / "report.json").read_text())["in_training"] is True
    finally:
        sleeper.kill()
        sleeper.wait()


# --------------------------------------------------------------------------- 3. nothing hangs
@pytest.mark.parametrize("command", ["augment", "train"])
@pytest.mark.parametrize("extra, option", [(["--alpha", "1e39"], "--alpha"), (["--sigma", "1e-300"], "--sigma"),
                                           (["--sigma", "1e300"], "--sigma"), (["--max-shift", "15"], "--max-shift"),
                                           (["--alpha", "nan"], "--alpha")])
def test_absurd_distortions_are_refused(command, extra, option, tmp_path, small_mnist_npz):
    args = [command, "--data", str(small_mnist_npz), *extra] + (["--out", "out/x.npz"] if command == "augment"
                                                                 else [*TINY_ARGS, "--out", "out/run"])
    result = finishes_within(60, lambda: invoke(args, tmp_path))
    assert_one_line_error(result, 2, option)


# alpha 1e39 overflows float32 on purpose: the smoothing's products overflow (inf, then inf - inf), as asked
@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning",
                            "ignore:invalid value encountered in matmul:RuntimeWarning")
def test_non_finite_coordinates_cannot_hang_the_resampler(synthetic_digits):
    from augment import elastic_distort

    noise = np.random.default_rng(0).uniform(-1, 1, (8, 2, 28, 28)).astype(np.float32)
    out = finishes_within(30, lambda: elastic_distort(synthetic_digits[:8], noise, alpha=1e39, sigma=4.0))
    assert out.shape == (8, 28, 28)


@pytest.mark.parametrize("command", ["augment", "train", "run", "evaluate"])
def test_a_fifo_as_data_is_refused_without_hanging(command, tmp_path, make_run):
    fifo = tmp_path / "inputs" / "mnist.npz"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    run_dir = tmp_path / "run"
    make_run(run_dir)
    args = {"augment": ["augment", "--data", str(fifo), "--out", "out/x.npz"],
            "train": ["train", "--data", str(fifo), *TINY_ARGS, "--out", "out/run"],
            "run": ["run", "--data", str(fifo), *TINY_ARGS, "--out", "out/run"],
            "evaluate": ["evaluate", "--run", str(run_dir), "--data", str(fifo)]}[command]
    result = finishes_within(60, lambda: invoke(args, tmp_path, watch=(run_dir,)))
    assert_one_line_error(result, 1, "not a regular file (a FIFO, device or socket)")


def test_a_fifo_in_an_idx_folder_is_refused(tmp_path):
    from ensemble_cnn.data.mnist import DataError, load_mnist

    folder = tmp_path / "idx"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        os.mkfifo(folder / name)
    with pytest.raises(DataError, match="not a regular file"):
        finishes_within(30, lambda: load_mnist(folder))


# --------------------------------------------------------------------------- 4. crafted files
def npz_with_header(folder: Path, key: str, shape: tuple, payload: bytes = b"\x00" * 64) -> Path:
    """An npz whose ``key`` member's .npy header claims ``shape`` while holding only ``payload``."""
    path = folder / "crafted.npz"
    arrays = good_arrays()
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                if name == key:
                    np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                                  "shape": shape})
                    member.write(payload)
                else:
                    np.lib.format.write_array(member, array)
    return path


def corrupt_deflate_npz(folder: Path) -> Path:
    path = folder / "deflated.npz"
    np.savez_compressed(path, **good_arrays(200))
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path


def not_an_npy_member(folder: Path) -> Path:
    path = folder / "text.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            archive.writestr(f"{name}.npy", "this is not an array")
    return path


def idx_folder_with(folder: Path, images: bytes, *, gz: bool = False) -> Path:
    root = folder / "idx"
    root.mkdir()
    arrays = good_arrays()
    for name, array in (("train-labels-idx1-ubyte", arrays["y_train"]), ("t10k-images-idx3-ubyte", arrays["x_test"]),
                        ("t10k-labels-idx1-ubyte", arrays["y_test"])):
        header = (0x0803 if array.ndim == 3 else 0x0801).to_bytes(4, "big")
        header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (root / name).write_bytes(header + array.tobytes())
    target = root / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    target.write_bytes(gzip.compress(images) if gz else images)
    return root


def idx_header(dims: tuple[int, int, int]) -> bytes:
    return (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def corrupt_gz(root: Path) -> Path:
    """Keep the gzip header, replace the deflate stream by garbage."""
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10] + b"\xff" * 200)
    return root


CRAFTED = {
    "npz header claims 1e10 digits": (lambda d: npz_with_header(d, "x_train", (10**10, 28, 28)),
                                      "header promises shape (10000000000, 28, 28)"),
    "npz member that is not an npy": (not_an_npy_member, "x_train is not a valid .npy array"),
    "npz with a corrupt deflate stream": (corrupt_deflate_npz, "not a readable .npz file"),
    "IDX dims overflowing int64": (lambda d: idx_folder_with(d, idx_header((2**32 - 1, 2**32 - 1, 2**32 - 1))),
                                   "more than this machine's memory"),
    "IDX gz inflating beyond its header": (lambda d: idx_folder_with(d, idx_header((30, 28, 28)) + bytes(64 << 20),
                                                                     gz=True),
                                           "IDX data holds more than 23520 bytes"),
    "IDX gz corrupt stream": (lambda d: corrupt_gz(idx_folder_with(d, idx_header((30, 28, 28)) + bytes(30 * 784),
                                                                   gz=True)), "cannot read IDX file"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_data_files_give_one_line(case, tmp_path):
    import resource

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    build, text = CRAFTED[case]
    path = build(inputs)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = finishes_within(60, lambda: invoke(["augment", "--data", str(path), "--out", "out/x.npz"], tmp_path))
    assert_one_line_error(result, 1, text)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, f"reading it took {grown_mib:.0f} MiB more memory"


# One hardened reader (issue 21) for training data and predict: where one side was laxer, it is now as strict.
def _idx_promising(folder: Path, n_images: int) -> Path:
    """An IDX folder whose training images file is a header promising ``n_images`` digits and nothing else."""
    root = idx_folder_with(folder, idx_header((n_images, 28, 28)))
    return root / "train-images-idx3-ubyte"


def _npy_promising(folder: Path, n_images: int) -> Path:
    path = folder / "claim.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (n_images, 28, 28)})
        fh.write(bytes(64))
    return path


def _through_training(path: Path):
    from ensemble_cnn.data.mnist import DataError, load_mnist

    return DataError, lambda: load_mnist(path.parent if path.name.endswith("-ubyte") else path)


def _through_predict(path: Path):
    from ensemble_cnn.errors import InputError
    from ensemble_cnn.inference.arrays import read_arrays

    return InputError, lambda: read_arrays(path)


SHORT_FILES = {  # a header promising 235 MB (within every limit) in a file of a few bytes
    "training IDX folder": (_idx_promising, _through_training, "IDX data holds 0 bytes, header promises 235200000"),
    "predict IDX file": (_idx_promising, _through_predict, "IDX data holds 0 bytes, header promises 235200000"),
    "predict .npy": (_npy_promising, _through_predict, "truncated .npy data (64 bytes, header promises 235200000"),
}


@pytest.mark.parametrize("case", list(SHORT_FILES))
def test_crafted_header_promising_more_than_the_file_holds_is_refused_before_allocating(case, tmp_path):
    """The header is checked against the file's size before the promised data is allocated (main allocated it)."""
    import tracemalloc

    make, through, text = SHORT_FILES[case]
    path = make(tmp_path, 300_000)
    error, read = through(path)
    tracemalloc.start()
    try:
        with pytest.raises(error, match=re.escape(text)):
            read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"refusing it allocated {peak / 2**20:.0f} MiB"


def _npy_with_extra(folder: Path) -> Path:
    path = folder / "extra.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, good_arrays(2)["x_test"])
        fh.write(b"trailing data the header does not account for")
    return path


def _npz_with_extra(folder: Path) -> Path:
    path = folder / "extra.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("x.npy", "w") as member:
        np.lib.format.write_array(member, good_arrays(2)["x_test"])
        member.write(bytes(784))  # a third digit's worth the header does not promise
    return path


@pytest.mark.parametrize("make, text", [(_npy_with_extra, "extra.npy: .npy data holds 1613 bytes, header promises 1568"),
                                        (_npz_with_extra, "extra.npz [x]: .npy data holds 2352 bytes, header promises 1568")],
                         ids=["predict .npy", "predict npz member"])
def test_crafted_npy_holding_more_than_its_header_promises_is_refused_by_predict(make, text, tmp_path):
    """Training data already refused an npz member whose size disagrees with its header; predict now does too."""
    path = make(tmp_path)
    error, read = _through_predict(path)
    with pytest.raises(error, match=re.escape(text)):
        read()


@pytest.mark.parametrize("layout", ["npz", "IDX folder"])
def test_a_fifo_swapped_in_after_the_stat_check_is_refused_without_hanging(layout, tmp_path, monkeypatch):
    """``--data`` is opened non-blocking and checked again with fstat: a FIFO that a stat saw as a file cannot hang it."""
    from ensemble_cnn.data.mnist import DataError, load_mnist

    regular = write_good_npz(tmp_path / "regular.npz")
    if layout == "npz":
        data = fifo = tmp_path / "inputs" / "mnist.npz"
        fifo.parent.mkdir()
    else:
        data = idx_folder_with(tmp_path, idx_header((30, 28, 28)) + bytes(30 * 784))
        fifo = data / "train-images-idx3-ubyte"
        fifo.unlink()
    os.mkfifo(fifo)
    real_stat = os.stat

    def stat_before_the_swap(path, *args, **kwargs):  # the FIFO replaced a regular file after it was stat'ed
        return real_stat(regular if os.fspath(path) == str(fifo) else path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_before_the_swap)
    try:
        with pytest.raises(DataError, match="not a regular file"):
            finishes_within(30, lambda: load_mnist(data))
    finally:
        try:  # unblock a reader stuck on the FIFO (the old behaviour), so the test run goes on
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader: nothing was stuck


def test_copies_beyond_memory_is_refused_before_allocating(tmp_path, small_mnist_npz):
    args = ["augment", "--data", str(small_mnist_npz), "--copies", "1000000000", "--out", "out/x.npz"]
    result = finishes_within(60, lambda: invoke(args, tmp_path))
    assert_one_line_error(result, 1, "--copies 1000000000: 3,000 digits x 1,000,000,001")


@pytest.mark.parametrize("command", ["augment", "train"])
def test_negative_seed_is_a_usage_error(command, tmp_path, small_mnist_npz):
    args = [command, "--data", str(small_mnist_npz), "--seed", "-1"] + (
        ["--out", "out/x.npz"] if command == "augment" else [*TINY_ARGS, "--out", "out/run"])
    assert_one_line_error(invoke(args, tmp_path), 2, "--seed")


def test_preview_without_variants_is_refused_and_writes_nothing(tmp_path, small_mnist_npz):
    out = tmp_path / "keep"
    out.mkdir()
    args = ["augment", "--data", str(small_mnist_npz), "--copies", "1", "--limit", "50", "--out", str(out / "e.npz")]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = snapshot(out)
    result = invoke(["augment", "--data", str(small_mnist_npz), "--copies", "0", "--preview", str(out / "p.png"),
                     "--out", str(out / "e.npz")], tmp_path)
    assert_one_line_error(result, 2, "--preview")
    assert snapshot(out) == before, "the old npz and manifest are untouched"


def test_a_failing_preview_leaves_no_half_written_set(tmp_path, small_mnist_npz, monkeypatch):
    from ensemble_cnn.evaluation import plots
    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "render_png", broken)
    result = invoke(["augment", "--data", str(small_mnist_npz), "--limit", "50", "--copies", "1",
                     "--preview", str(tmp_path / "work" / "p.png"), "--out", str(tmp_path / "work" / "e.npz")],
                    tmp_path)
    assert_one_line_error(result, 1, "No space left on device")


@pytest.mark.parametrize("lr", ["inf", "nan", "0"])
def test_non_finite_learning_rate_is_a_usage_error(lr, tmp_path, small_mnist_npz):
    args = ["train", "--data", str(small_mnist_npz), *TINY_ARGS, "--lr", lr, "--out", "out/run"]
    assert_one_line_error(invoke(args, tmp_path), 2, "--lr")


def test_a_diverging_member_is_a_failed_member(tmp_path, small_mnist_npz):
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(small_mnist_npz), *TINY_ARGS, "--lr", "1e6", "--width", "1", "--out", str(run_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "member 00 failed: ValueError: " in result.output and "diverged" in result.output
    assert not (run_dir / "member_00.json").exists(), "no record for a diverged member"


def test_a_member_with_nan_predictions_is_left_out_by_evaluate(tmp_path, make_run):
    from ensemble_cnn.storage import atomic as _atomic
    from ensemble_cnn.storage.hashing import sha256_file

    run_dir = tmp_path / "run"
    make_run(run_dir, members=2)
    np.save(run_dir / "member_01_test_proba.npy", np.full((1000, 10), np.nan, np.float32))
    record = json.loads((run_dir / "member_01.json").read_text())
    _atomic.write_json(run_dir / "member_01.json",
                       {**record, "probabilities_sha256": sha256_file(run_dir / "member_01_test_proba.npy")})
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    report = evaluate_run(run_dir, reload=False, plots=False, log=None)
    assert [m["name"] for m in report["members"]] == ["member_00"]
    assert "non-finite probabilities" in report["dropped_members"][0]["reason"]


def expanded_with(folder: Path, source_index: np.ndarray, variant: np.ndarray) -> Path:
    arrays = good_arrays(len(source_index))
    path = folder / "expanded.npz"
    np.savez(path, **arrays, train_source_index=source_index, train_variant=variant)
    return path


@pytest.mark.parametrize(
    "source_index, variant, text",
    [
        (np.arange(30), np.ones(30, np.int16), "no original (variant 0) rows"),
        (np.array([2**40] + list(range(1, 30))), np.zeros(30, np.int16), "must hold each original"),
        (np.array([0] * 30), np.zeros(30, np.int16), "must hold each original"),
    ],
)
def test_crafted_expanded_sets_are_refused(source_index, variant, text, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = expanded_with(inputs, source_index, variant)
    args = ["train", "--expanded", str(path), *TINY_ARGS, "--limit", "20", "--out", "out/run"]
    assert_one_line_error(finishes_within(60, lambda: invoke(args, tmp_path)), 1, text)


# --------------------------------------------------------------------------- 5. say what was dropped
def test_evaluate_says_what_was_dropped_and_exits_1_unless_allowed(tmp_path, make_run):
    run_dir = tmp_path / "run"
    make_run(run_dir, members=3)
    (run_dir / "member_01_test_proba.npy").write_bytes(b"corrupt")
    (run_dir / "member_02.json").unlink()
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir)])
    assert result.exit_code == 1
    assert "member 01 left out: " in result.output and "sha256 differs from its record" in result.output
    assert "member 02 left out: missing (not trained yet)" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("Error: 2 of 3 members left out")
    markdown = (run_dir / "report.md").read_text()
    assert "Left out: 2 of 3 members" in markdown and "member_02: missing (not trained yet)" in markdown
    allowed = CliRunner().invoke(main, ["evaluate", "--run", str(run_dir), "--allow-missing"])
    assert allowed.exit_code == 0 and "member 01 left out" in allowed.output


# --------------------------------------------------------------------------- 6. paths
def test_data_path_is_stored_resolved_and_evaluate_works_from_elsewhere(tmp_path, small_mnist_npz, monkeypatch,
                                                                         fake_training):
    import shutil

    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(small_mnist_npz, work / "mnist.npz")
    monkeypatch.chdir(work)
    assert CliRunner().invoke(main, ["train", "--data", "mnist.npz", *TINY_ARGS, "--out", "run"]).exit_code == 0
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["data"] == str(work / "mnist.npz")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["evaluate", "--run", "project/run"])
    assert result.exit_code == 0, result.output


def test_disk_full_names_the_file_being_written(tmp_path, monkeypatch):
    from ensemble_cnn.storage import atomic as _atomic
    real = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as caught:
        _atomic.write_text(tmp_path / "report.md", "hello")
    monkeypatch.setattr(os, "replace", real)
    assert caught.value.filename == str(tmp_path / "report.md")
    assert list(tmp_path.iterdir()) == [], "the temporary file is removed"


def test_a_path_with_a_newline_is_shown_escaped_on_one_line(tmp_path):
    weird = tmp_path / "two\nlines.npz"
    result = invoke(["augment", "--data", str(weird), "--out", "out/x.npz"], tmp_path)
    assert_one_line_error(result, 1, "two\\nlines.npz: no such file or folder")
