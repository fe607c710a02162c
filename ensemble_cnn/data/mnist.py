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

Every problem raises :class:`DataError` with a one-line message that names the
file and what is wrong.
"""
from __future__ import annotations

import gzip
import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.errors import DataError, first_line

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


def memory_limit() -> int:
    """Bytes one array may take: 80% of the machine's physical memory (8 GiB where that cannot be read)."""
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def check_expansion_size(n_images: int, copies: int, *, option: str = "--copies") -> None:
    """Refuse an expansion whose output would not fit in memory, before anything is allocated."""
    rows = n_images * (copies + 1)
    needed = rows * (28 * 28 + 1 + 4 + 2)  # images, labels, source index, variant
    if needed > memory_limit():
        raise DataError(f"{option} {copies}: {n_images:,} digits x {copies + 1:,} = {rows:,} images need "
                        f"{needed / 2**30:,.1f} GiB, more than this machine's memory "
                        f"({memory_limit() / 2**30:.1f} GiB usable); use fewer copies or --limit")


def check_regular_file(path: Path) -> None:
    """Refuse a FIFO, a device or a socket before opening it (reading a FIFO would wait forever)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise DataError(f"{shown(path)}: cannot read the file ({exc.strerror or first_line(exc)})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{shown(path)}: not a regular file (a FIFO, device or socket); expected a data file")


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


_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip member, an empty zip
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_npz(path: str | os.PathLike, keys: Sequence[str], *, optional: bool = False) -> dict[str, np.ndarray]:
    """Read arrays ``keys`` from an ``.npz``, checking each header before any data is allocated.

    Each member must be an ``.npy`` of a numeric dtype (no pickled objects) whose
    header's size agrees with the member's size in the archive and fits in memory: a
    crafted header claiming (1e10, 28, 28) is refused in one line, never allocated.

    Parameters
    ----------
    path : path-like
    keys : sequence of str
        Array names (``x_train`` for the member ``x_train.npy``).
    optional : bool
        Missing keys are left out instead of refused (all or none: a partial set is refused).

    Raises
    ------
    DataError
        One line naming the file and what is wrong.
    """
    path = Path(path)
    check_regular_file(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise DataError(f"{shown(path)}: cannot read the file ({exc.strerror or first_line(exc)})") from None
    if not head:
        raise DataError(f"{shown(path)}: file is empty (expected a Keras mnist.npz)")
    if head not in _ZIP_SIGNATURES:
        raise DataError(f"{shown(path)}: not an .npz archive (expected a Keras mnist.npz or a folder of MNIST IDX "
                        "files)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [key for key in keys if f"{key}.npy" not in names]
            if missing and not (optional and len(missing) == len(keys)):
                raise DataError(
                    f"{shown(path)}: missing arrays {', '.join(missing)} (expected keys {', '.join(keys)})"
                )
            return {key: _read_member(path, archive, key) for key in keys if f"{key}.npy" in names}
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise DataError(f"{shown(path)}: not a readable .npz file ({first_line(exc)})") from None


def _read_member(path: Path, archive: zipfile.ZipFile, key: str) -> np.ndarray:
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran, dtype = _NPY_HEADER_READERS[version](member)
        except (ValueError, EOFError, SyntaxError) as exc:
            raise DataError(f"{shown(path)}: {key} is not a valid .npy array ({first_line(exc)})") from None
        if dtype.hasobject:
            raise DataError(f"{shown(path)}: holds object (pickled) arrays, which are refused; expected numeric arrays")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        header = member.tell()
        if nbytes != info.file_size - header:
            raise DataError(f"{shown(path)}: {key} header promises shape {shape} ({nbytes:,} bytes) but the archive "
                            f"holds {max(0, info.file_size - header):,} bytes")
        if nbytes > memory_limit():
            raise DataError(f"{shown(path)}: {key} of shape {shape} would need {nbytes / 2**30:,.1f} GiB, more than "
                            "this machine's memory")
        data = member.read(nbytes)
    if len(data) != nbytes:
        raise DataError(f"{shown(path)}: {key} is truncated ({len(data):,} of {nbytes:,} bytes)")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _load_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise DataError(f"{shown(folder)}: missing IDX file {stem}[.gz] (expected the four MNIST IDX files)")
        arrays[key] = read_idx(found, ndim=3 if key.startswith("x") else 1)
    return arrays


def read_idx(path: str | os.PathLike, *, ndim: int) -> np.ndarray:
    """Read one unsigned-byte IDX file (optionally gzip-compressed), header first.

    The header's dimensions decide how much is read: a file that holds less, or
    more (a gzip stream inflating beyond the promise is stopped right there), or
    whose dimensions would not fit in memory, is refused in one line.

    Parameters
    ----------
    path : path-like
        The IDX file; a ``.gz`` suffix means gzip.
    ndim : {1, 3}
        Expected number of dimensions (1 for labels, 3 for images).

    Returns
    -------
    ndarray of uint8, shape (N,) or (N, rows, cols)
    """
    path = Path(path)
    check_regular_file(path)
    header_len = 4 + 4 * ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            header = fh.read(header_len)
            if len(header) >= 4 and int.from_bytes(header[:4], "big") != _IDX_MAGIC[ndim]:
                magic = int.from_bytes(header[:4], "big")
                raise DataError(f"{shown(path)}: wrong IDX magic number 0x{magic:08x} "
                                f"(expected 0x{_IDX_MAGIC[ndim]:08x})")
            if len(header) < header_len:
                raise DataError(f"{shown(path)}: truncated IDX file ({len(header)} bytes, header needs {header_len})")
            dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            expected = math.prod(dims)  # a Python int: no overflow
            if expected > memory_limit():
                raise DataError(f"{shown(path)}: IDX header promises shape {dims} ({expected:,} bytes), more than "
                                "this machine's memory")
            raw = fh.read(expected + 1)  # one byte more tells a file that holds more than it promises
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{shown(path)}: cannot read IDX file ({first_line(exc)})") from None
    if len(raw) != expected:
        held = f"{len(raw)}" if len(raw) <= expected else f"more than {expected}"
        raise DataError(f"{shown(path)}: IDX data holds {held} bytes, header promises {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims).copy()


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
