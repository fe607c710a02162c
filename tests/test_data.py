"""MNIST loading: the real file, IDX folders the test writes, and one-line errors for bad input."""
from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ensemble_cnn.data.mnist import DataError, load_mnist
from ensemble_cnn.data.reader import read_idx


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> None:
    magic = (0x0803 if array.ndim == 3 else 0x0801).to_bytes(4, "big")
    header = magic + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_idx_folder(folder: Path, mnist: dict, *, n: int = 500, compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", mnist["x_train"][:n], compress=compress)
    write_idx(folder / "train-labels-idx1-ubyte", mnist["y_train"][:n], compress=compress)
    write_idx(folder / "t10k-images-idx3-ubyte", mnist["x_test"][:n], compress=compress)
    write_idx(folder / "t10k-labels-idx1-ubyte", mnist["y_test"][:n], compress=compress)
    return folder


def test_real_npz_loads_with_documented_checks(mnist_npz_path):
    data = load_mnist(mnist_npz_path)
    assert data.x_train.shape == (60000, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (10000, 28, 28)
    assert list(data.y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(data.y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(np.bincount(data.y_test)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.x_train.mean() / 255 == pytest.approx(0.1307, abs=1e-4)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_matches_npz(tmp_path, mnist, compress):
    folder = write_idx_folder(tmp_path / "idx", mnist, compress=compress)
    data = load_mnist(folder)
    np.testing.assert_array_equal(data.x_train, mnist["x_train"][:500])
    np.testing.assert_array_equal(data.y_test, mnist["y_test"][:500])


def test_limit_keeps_first_training_images_only(mnist_npz_path):
    data = load_mnist(mnist_npz_path).limit(100)
    assert len(data.x_train) == 100 and len(data.x_test) == 10000


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _good(n=20):
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, n, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, n, dtype=np.uint8),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(x_train=a["x_train"].reshape(20, 784)), "shape (20, 784), expected (N, 28, 28)"),
        (lambda a: a.update(x_train=np.zeros((20, 32, 32), np.uint8)), "expected (N, 28, 28)"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "dtype float32, expected uint8"),
        (lambda a: a.update(y_train=a["y_train"] + 5), "expected 0..9"),
        (lambda a: a.update(y_test=a["y_test"][:10]), "holds 20 images but y_test holds 10 labels"),
        (lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]), "zero images"),
        (lambda a: a.pop("y_test"), "missing arrays y_test"),
        (lambda a: a.update(y_train=np.array([object()] * 20)), "object (pickled) arrays"),
    ],
)
def test_bad_npz_gives_one_line_error_naming_file(tmp_path, change, message):
    arrays = _good()
    change(arrays)
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_mnist(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_mnist(tmp_path / "nope.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_mnist(tmp_path / "empty.npz")
    good = _npz(tmp_path / "good.npz", **_good())
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:500])
    with pytest.raises(DataError, match="not a readable .npz"):
        load_mnist(tmp_path / "truncated.npz")


def test_bad_idx_files(tmp_path, mnist):
    folder = write_idx_folder(tmp_path / "idx", mnist, n=50)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX file t10k-labels-idx1-ubyte"):
        load_mnist(folder)
    bad = tmp_path / "bad-idx"
    bad.write_bytes((0x0801).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match="header promises 5"):
        read_idx(bad, ndim=1)
    with pytest.raises(DataError, match="wrong IDX magic"):
        read_idx(bad, ndim=3)


def test_loading_a_file_never_imports_tensorflow(mnist_npz_path):
    code = (
        "import sys; from ensemble_cnn.data.mnist import load_mnist; import ensemble_cnn, augment, cli.main;"
        f"load_mnist({str(mnist_npz_path)!r}); assert 'tensorflow' not in sys.modules, 'tf imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
