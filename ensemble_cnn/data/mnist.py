"""Loading and validating MNIST.

Three sources, one layout (:class:`MnistData`):

* a Keras-layout ``mnist.npz`` (``x_train, y_train, x_test, y_test``), also the
  layout ``ensemble-cnn augment`` writes;
* a folder holding the four LeCun IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
  ``t10k-labels-idx1-ubyte[.gz]``);
* no path: Keras' own ``keras.datasets.mnist.load_data()`` (its cache, downloading
  when absent). Keras is imported only on this path, so loading a file never
  starts TensorFlow.

Files are read by the one hardened reader, :mod:`ensemble_cnn.data.reader` (never
waiting on a FIFO, headers checked before anything is allocated, no pickles). Every
problem raises :class:`DataError` with a one-line message that names the file and what
is wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble_cnn.data.reader import memory_limit, read_idx, read_npz
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.errors import DataError

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned-byte data, 3 or 1 dimensions


@dataclass(frozen=True)
class MnistData:
    """MNIST train and test splits.

    Attributes
    ----------
    x_train : ndarray of uint8, shape (N, 28, 28)
    y_train : ndarray of uint8, shape (N,), values 0..9
    x_test : ndarray of uint8, shape (M, 28, 28)
    y_test : ndarray of uint8, shape (M,), values 0..9
    source : str
        Where the data came from (a path, or ``"keras"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def limit(self, n: int | None) -> "MnistData":
        """Return a copy keeping only the first ``n`` training images (test split unchanged)."""
        if n is None:
            return self
        return MnistData(self.x_train[:n], self.y_train[:n], self.x_test, self.y_test, self.source)


def load_mnist(path: str | os.PathLike | None = None) -> MnistData:
    """Load and validate MNIST.

    Parameters
    ----------
    path : path-like, optional
        A Keras-layout ``.npz`` file or a folder of the four IDX files. ``None``
        uses ``keras.datasets.mnist.load_data()`` (download and cache).

    Returns
    -------
    MnistData

    Raises
    ------
    DataError
        One line naming the file and what is wrong.
    """
    if path is None:
        return _load_from_keras()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{shown(path)}: no such file or folder (expected a Keras mnist.npz or a folder of MNIST "
                        "IDX files)")
    if path.is_dir():
        arrays = _load_idx_folder(path)
    else:
        arrays = read_npz(path, NPZ_KEYS)
    return _validated(arrays, source=str(path))


def data_files(path: str | os.PathLike | None) -> list[Path]:
    """The files a ``--data`` value reads (the npz, or the IDX folder and its files; Keras' cached file)."""
    if path is None:
        return [Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"]
    path = Path(path)
    if path.is_dir():
        return [path, *(path / f"{stem}{gz}" for stem in IDX_FILES.values() for gz in ("", ".gz"))]
    return [path]


def check_expansion_size(n_images: int, copies: int, *, option: str = "--copies") -> None:
    """Refuse an expansion whose output would not fit in memory, before anything is allocated."""
    rows = n_images * (copies + 1)
    needed = rows * (28 * 28 + 1 + 4 + 2)  # images, labels, source index, variant
    if needed > memory_limit():
        raise DataError(f"{option} {copies}: {n_images:,} digits x {copies + 1:,} = {rows:,} images need "
                        f"{needed / 2**30:,.1f} GiB, more than this machine's memory "
                        f"({memory_limit() / 2**30:.1f} GiB usable); use fewer copies or --limit")


def _load_from_keras() -> MnistData:
    try:
        from keras.datasets import mnist  # lazy: importing Keras starts TensorFlow

        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure here means "could not get MNIST"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"could not load MNIST through Keras (offline? {reason}); pass --data PATH to a local mnist.npz or IDX folder"
        ) from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _validated(arrays, source="keras")


def _load_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise DataError(f"{shown(folder)}: missing IDX file {stem}[.gz] (expected the four MNIST IDX files)")
        arrays[key] = read_idx(found, ndim=3 if key.startswith("x") else 1)
    return arrays


def validate_split(images: np.ndarray, labels: np.ndarray, *, name: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one split: images (N, 28, 28) uint8, labels (N,) integers in 0..9, N > 0.

    Returns the arrays with labels cast to uint8. Raises :class:`DataError`.
    """
    x_key, y_key = f"x_{name}", f"y_{name}"
    if images.dtype != np.uint8:
        raise DataError(
            f"{source}: {x_key} has dtype {images.dtype}{_non_finite(images)}, expected uint8 pixel values 0..255"
        )
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{source}: {x_key} has shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
        raise DataError(f"{source}: {y_key} has shape {labels.shape}, expected (N,)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: {y_key} has dtype {labels.dtype}{_non_finite(labels)}, expected integer labels 0..9")
    if len(images) != len(labels):
        raise DataError(f"{source}: {x_key} holds {len(images)} images but {y_key} holds {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{source}: {x_key} holds zero images")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise DataError(
            f"{source}: {y_key} has labels in [{labels.min()}, {labels.max()}], expected 0..{N_CLASSES - 1}"
        )
    return images, labels.astype(np.uint8, copy=False)


def _validated(arrays: dict[str, np.ndarray], *, source: str) -> MnistData:
    x_train, y_train = validate_split(arrays["x_train"], arrays["y_train"], name="train", source=source)
    x_test, y_test = validate_split(arrays["x_test"], arrays["y_test"], name="test", source=source)
    return MnistData(x_train, y_train, x_test, y_test, source)


def _non_finite(array: np.ndarray) -> str:
    """`` holding NaN/inf`` for a floating array with non-finite values, else ``""``."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        return " holding NaN/inf"
    return ""
