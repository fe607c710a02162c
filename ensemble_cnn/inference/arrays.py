"""Users' array files of MNIST-style digits (``.npy``, ``.npz``, IDX) for ``predict``.

:func:`read_arrays` returns the digits of one file as uint8 (N, 28, 28), not re-centred;
:func:`as_uint8_levels` is its pixel-value rule (also used by ``Ensemble.predict``).

The file is read by the one hardened reader, :mod:`ensemble_cnn.data.reader` (only a
regular file, opened non-blocking; every header checked before anything is allocated;
no pickles), with ``predict``'s wording (:data:`~ensemble_cnn.data.reader.INPUT_FILES`)
and the digit-shape check below run on each header.

Limits (module constants, read at call time):

* :data:`MAX_ARRAY_FILE_BYTES` = 256 MiB for an array file;
* :data:`MAX_ARRAY_BYTES` = 256 MiB for the data of the one array read from a
  file, after decompression (``.npz`` members and ``.gz`` IDX files).

Every problem raises :class:`~ensemble_cnn.errors.InputError` with a one-line message that starts with
the file's name (and ``[key]``, the array's name in an ``.npz``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ensemble_cnn.data.reader import (
    GZIP_MAGIC,
    INPUT_FILES,
    NPY_MAGIC,
    NpyCheck,
    ZIP_MAGIC,
    describe_size,
    open_npz,
    read_head,
    read_idx,
    read_member,
    read_npy_file,
)
from ensemble_cnn.errors import InputError
from ensemble_cnn.storage.outputs import shown

MAX_ARRAY_FILE_BYTES = 256 * 2**20
"""Largest array file (.npy, .npz, IDX, .gz) read (256 MiB)."""
MAX_ARRAY_BYTES = 256 * 2**20
"""Largest array data, after decompression, read from one array file (256 MiB)."""
NPZ_KEYS = ("x", "x_test")
"""Arrays looked for in an ``.npz``, in this order: the first present is read."""
DIGIT_SHAPE = (28, 28)
"""One MNIST digit, (rows, cols)."""
IDX_IMAGES_MAGIC = 0x00000803
"""Magic number of an unsigned-byte, 3-dimensional IDX file (images)."""


def read_arrays(path: str | os.PathLike) -> np.ndarray:
    """Read MNIST-style digits from an array file.

    The format is recognised by the file's first bytes, not its name: ``.npy``
    (``\\x93NUMPY``), ``.npz`` (a zip), an IDX images file (magic 0x00000803), or
    a gzip-compressed IDX images file (which must be named ``*.gz``).

    * ``.npy``: shape (28, 28), (N, 28, 28) or (N, 28, 28, 1).
    * ``.npz``: the array ``x``, else ``x_test`` (see :data:`NPZ_KEYS`), shaped as above.
    * IDX: unsigned-byte images of 28x28.

    Shapes and dtypes are checked from the headers before any data is read, a
    header must promise exactly the data the file (or ``.npz`` member) holds, and
    the data is at most :data:`MAX_ARRAY_BYTES` (a ``.gz`` is inflated no further
    than its header promises). Pickled (object) arrays are refused. Pixel values:

    * uint8: as they are;
    * bool: False -> 0, True -> 255;
    * other integers: values must lie in 0..255;
    * floats: finite and in [0, 1] (scaled by 255), or else in [0, 255] (taken as
      grey levels), rounded to the nearest level. The rule is chosen once for the
      whole array (an array whose maximum is at most 1 counts as [0, 1]);
    * anything else (complex, strings, structured, datetimes) is refused.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ndarray of uint8, shape (N, 28, 28), N >= 1
        The digits as stored (not re-centred or rescaled in space).

    Raises
    ------
    InputError
        One line naming the file (and the array in an ``.npz``) and what was expected.
    """
    path = Path(path)
    head = read_head(path, len(NPY_MAGIC), limit=MAX_ARRAY_FILE_BYTES, what="array", voice=INPUT_FILES)
    if head.startswith(NPY_MAGIC):
        array = read_npy_file(path, limit=MAX_ARRAY_BYTES, file_limit=MAX_ARRAY_FILE_BYTES, what="array",
                              check=_header_check(str(path)), voice=INPUT_FILES)
        return _as_digits(array, name=str(path))
    if head.startswith(ZIP_MAGIC):
        return _read_npz(path)
    if head.startswith((GZIP_MAGIC, b"\x00\x00")):
        images = read_idx(path, ndim=3, limit=MAX_ARRAY_BYTES, file_limit=MAX_ARRAY_FILE_BYTES, what="array",
                          check=lambda dims: _check_idx_dims(dims, name=str(path)), voice=INPUT_FILES)
        return _as_digits(images, name=str(path))
    raise InputError(f"{shown(path)}: not a .npy, .npz or IDX images file (unrecognised first bytes {head[:4]!r})")


def _read_npz(path: Path) -> np.ndarray:
    """The first of :data:`NPZ_KEYS` in an ``.npz``, read member by member (never ``np.load``)."""
    with open_npz(path, limit=MAX_ARRAY_FILE_BYTES, what="array", voice=INPUT_FILES) as archive:
        names = archive.namelist()
        key = next((k for k in NPZ_KEYS if f"{k}.npy" in names), None)
        if key is None:
            held = ", ".join(n.removesuffix(".npy") for n in names[:8]) + (", ..." if len(names) > 8 else "")
            raise InputError(
                f"{shown(path)}: holds no array named {' or '.join(NPZ_KEYS)} (it holds: {shown(held) or 'nothing'})"
            )
        name = f"{path} [{key}]"
        array = read_member(archive, key, path=path, limit=MAX_ARRAY_BYTES, check=_header_check(name),
                            voice=INPUT_FILES)
    return _as_digits(array, name=name)


def _header_check(name: str) -> NpyCheck:
    """:func:`_check_array_header` for ``name``, as the reader's ``check`` (shape, dtype) -> None."""
    return lambda shape, dtype: _check_array_header(shape, dtype, name=name)


def _check_array_header(shape: tuple[int, ...], dtype: np.dtype, *, name: str) -> None:
    """Refuse from the header alone: pickled/non-numeric dtypes, wrong shapes, zero or too many digits."""
    if dtype.hasobject:
        raise InputError(f"{shown(name)}: holds object (pickled) data, which is refused; expected numeric pixel values")
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise InputError(
            f"{shown(name)}: has dtype {dtype}, expected uint8 (or other integer, bool or float) pixel values"
        )
    if not _is_digit_shape(shape):
        raise InputError(f"{shown(name)}: has shape {shape}, expected (28, 28), (N, 28, 28) or (N, 28, 28, 1)")
    if len(shape) > 2 and shape[0] == 0:
        raise InputError(f"{shown(name)}: holds zero digits (shape {shape})")
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > MAX_ARRAY_BYTES:
        raise InputError(
            f"{shown(name)}: header claims shape {shape} of {dtype} ({describe_size(n_bytes)}), more than the "
            f"{describe_size(MAX_ARRAY_BYTES)} limit"
        )


def _check_idx_dims(dims: tuple[int, ...], *, name: str) -> None:
    """Refuse an IDX images header of other than 28x28 digits, of none, or of more than :data:`MAX_ARRAY_BYTES`."""
    n_images, rows, cols = dims
    if (rows, cols) != DIGIT_SHAPE:
        raise InputError(f"{shown(name)}: IDX images of {rows}x{cols} pixels, expected 28x28")
    if n_images == 0:
        raise InputError(f"{shown(name)}: holds zero digits")
    n_bytes = n_images * rows * cols
    if n_bytes > MAX_ARRAY_BYTES:
        raise InputError(
            f"{shown(name)}: header claims {n_images:,} images ({describe_size(n_bytes)}), more than the "
            f"{describe_size(MAX_ARRAY_BYTES)} limit"
        )


def _is_digit_shape(shape: tuple[int, ...]) -> bool:
    if len(shape) == 2:
        return shape == DIGIT_SHAPE
    if len(shape) == 3:
        return shape[1:] == DIGIT_SHAPE
    return len(shape) == 4 and shape[1:] == (*DIGIT_SHAPE, 1)


def _as_digits(array: np.ndarray, *, name: str) -> np.ndarray:
    """uint8 (N, 28, 28) from a digit-shaped array, converting values as :func:`read_arrays` documents."""
    _check_array_header(array.shape, array.dtype, name=name)
    digits = array.reshape((-1, *DIGIT_SHAPE))
    return np.ascontiguousarray(as_uint8_levels(digits, name=name))


def as_uint8_levels(array: np.ndarray, *, name: str) -> np.ndarray:
    """Pixel values as uint8 0..255.

    uint8 as is (copied), booleans as 0/255, integers in 0..255, floats in [0, 1]
    (scaled by 255) or [0, 255] (rounded); :class:`~ensemble_cnn.errors.InputError`
    naming ``name`` otherwise.

    Parameters
    ----------
    array : ndarray of bool, integer or float, any shape
    name : str, keyword-only
        What the values come from, for messages.

    Returns
    -------
    ndarray of uint8, the shape of ``array``
    """
    if array.dtype == np.uint8:
        return array.copy()
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InputError(f"{shown(name)}: integer pixel values in [{low}, {high}], expected 0..255")
        return array.astype(np.uint8)
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"{shown(name)}: float pixel values hold NaN or infinity, expected [0, 1] or [0, 255]")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 255.0:
        raise InputError(f"{shown(name)}: float pixel values in [{low:g}, {high:g}], expected [0, 1] or [0, 255]")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.rint(values * scale).astype(np.uint8)
