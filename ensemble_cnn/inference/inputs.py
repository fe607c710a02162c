"""Reading users' files for prediction, safely.

Two kinds of input:

* **images** (PNG, JPEG, BMP, GIF, TIFF) of one digit each, of any size and
  polarity: :func:`read_image` returns the decoded pixels, which
  :func:`ensemble_cnn.inference.preprocess.preprocess_digits` turns into an MNIST digit;
* **arrays** of digits that are already MNIST-style 28x28 (``.npy``, ``.npz``,
  IDX): :func:`read_arrays` returns them as uint8 (N, 28, 28), not re-centred.

:func:`classify_path` tells which kind a file is, :func:`expand_paths` turns
the command line's paths (files and folders) into the files to read, and
:func:`load_inputs` reads one file into the digits the model sees.

Safety: nothing here writes to an input file. Only regular files are opened
(a FIFO or device is refused from its ``stat`` before it is opened, and files are
opened non-blocking). Files, images and arrays have size limits that are checked
from the file size and headers *before* any data is decoded or allocated, so a
decompression bomb, a zip/gzip bomb or a ``.npy`` header claiming 10**10 images
is refused in one line. Pickled (object) arrays are never loaded.

Limits (module constants, read at call time):

* :data:`MAX_IMAGE_FILE_BYTES` = 64 MiB for an image file;
* :data:`MAX_ARRAY_FILE_BYTES` = 256 MiB for an array file;
* :data:`MAX_ARRAY_BYTES` = 256 MiB for the data of the one array read from a
  file, after decompression (``.npz`` members and ``.gz`` IDX files);
* :data:`MAX_IMAGE_PIXELS` = 40,000,000 pixels, checked from the image header
  (a 48-megapixel photo is refused). Pillow's own decompression-bomb warning
  (above about 89 million pixels) is turned into an error as well;
* :data:`DECODE_PIXELS` = 4,000,000 pixels: a larger image is reduced while it is
  decoded (a JPEG by its decoder's own 1/2, 1/4, 1/8 scaling, so its full size is
  never held; other formats by area averaging right after decoding), so the arrays
  made from one image stay bounded (tens of MB) whatever its size.

Every problem raises :class:`InputError` with a one-line message that starts with
the file's name (control characters in it escaped by :func:`ensemble_cnn.storage.outputs.shown`).
"""
from __future__ import annotations

import errno
import gzip
import io
import math
import os
import stat
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from ensemble_cnn.data.mnist import DataError, read_idx
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.inference.preprocess import preprocess_digits
from ensemble_cnn.errors import InputError, first_line

MAX_IMAGE_PIXELS = 40_000_000
"""Largest image (width x height) decoded; larger ones are refused from the header alone."""
DECODE_PIXELS = 4_000_000
"""Most pixels of a decoded image: larger ones are reduced by a whole factor while decoding (:func:`decode_image`)."""
MAX_IMAGE_FILE_BYTES = 64 * 2**20
"""Largest image file read (64 MiB)."""
MAX_ARRAY_FILE_BYTES = 256 * 2**20
"""Largest array file (.npy, .npz, IDX, .gz) read (256 MiB)."""
MAX_ARRAY_BYTES = 256 * 2**20
"""Largest array data, after decompression, read from one array file (256 MiB)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".npz", ".idx", ".idx.gz", "-ubyte", "-ubyte.gz")
"""Name endings of array files. ``-ubyte[.gz]`` are MNIST's own IDX names (``t10k-images-idx3-ubyte.gz``).
A file with another ending (``.gz`` included) is classified by its first bytes when named on its own,
and skipped when listing a folder."""
NPZ_KEYS = ("x", "x_test")
"""Arrays looked for in an ``.npz``, in this order: the first present is read."""
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF")
"""Pillow formats decoded (JPEG includes phones' multi-picture MPO files). No other decoder is ever tried."""

DIGIT_SHAPE = (28, 28)
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_IDX_HEADER_BYTES = 16
_NPZ_HEADER_SLACK = 64 * 1024  # room for a .npy header on top of the data in an npz member
_CHUNK = 2**20

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"

Kind = Literal["image", "array"]


# ----------------------------------------------------------------------------- files


def _describe_size(n_bytes: int) -> str:
    """``"812 bytes"``, ``"3.5 MiB"``, ``"7.1 TiB"``: binary units, one decimal."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if n_bytes >= 2**power:
            return f"{n_bytes / 2**power:.1f} {unit}"
    return f"{n_bytes} bytes"


def _file_type(mode: int) -> str:
    """Words for a non-regular file type, from ``st_mode``."""
    for test, words in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def _oserror_reason(exc: OSError) -> str:
    return exc.strerror or first_line(exc)


def _check_regular(path: Path, status: os.stat_result, *, limit: int, what: str) -> None:
    """Refuse a non-regular, empty or over-``limit`` file; ``what`` names the kind for the message."""
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"{shown(path)}: is {_file_type(status.st_mode)}, expected a regular {what} file")
    if status.st_size == 0:
        raise InputError(f"{shown(path)}: file is empty (expected {what} data)")
    if status.st_size > limit:
        raise InputError(
            f"{shown(path)}: file is {_describe_size(status.st_size)}, more than the {_describe_size(limit)} "
            f"limit for {what} files"
        )


def _stat_regular(path: Path, *, limit: int, what: str) -> os.stat_result:
    """``os.stat`` of ``path`` (following links) after :func:`_check_regular`; nothing is opened."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{shown(path)}: no such file") from None
    except OSError as exc:
        raise InputError(f"{shown(path)}: cannot read the file ({_oserror_reason(exc)})") from None
    _check_regular(path, status, limit=limit, what=what)
    return status


def _open_regular(path: Path, *, limit: int, what: str) -> BinaryIO:
    """Open a regular file for reading, refusing anything else before and after opening it.

    ``stat`` first, so a FIFO or device is never opened; then opened non-blocking and
    checked again with ``fstat`` (the path may have changed in between).
    """
    _stat_regular(path, limit=limit, what=what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise InputError(f"{shown(path)}: cannot open the file ({_oserror_reason(exc)})") from None
    try:
        _check_regular(path, os.fstat(fd), limit=limit, what=what)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_head(path: Path, n_bytes: int, *, limit: int, what: str) -> bytes:
    with _open_regular(path, limit=limit, what=what) as fh:
        return fh.read(n_bytes)


# ----------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read and decode one image file.

    Parameters
    ----------
    path : path-like
        A regular file of at most :data:`MAX_IMAGE_FILE_BYTES`.

    Returns
    -------
    ndarray, shape (H, W) or (H, W, C)
        As :func:`decode_image` returns it.

    Raises
    ------
    InputError
        One line naming the file: missing, not a regular file (FIFO, device,
        folder; refused before it is opened), empty, too large, or not a
        decodable image.
    """
    path = Path(path)
    with _open_regular(path, limit=MAX_IMAGE_FILE_BYTES, what="image") as fh:
        data = fh.read(MAX_IMAGE_FILE_BYTES + 1)
    if len(data) > MAX_IMAGE_FILE_BYTES:
        limit = _describe_size(MAX_IMAGE_FILE_BYTES)
        raise InputError(f"{shown(path)}: file is more than the {limit} limit for image files")
    return decode_image(data, name=str(path))


def decode_image(data: bytes, *, name: str) -> np.ndarray:
    """Decode PNG, JPEG, BMP, GIF or TIFF bytes into an array :func:`~ensemble_cnn.inference.preprocess.to_grayscale` accepts.

    The pixel count is read from the header and checked against
    :data:`MAX_IMAGE_PIXELS` before anything is decoded; Pillow's own
    decompression-bomb warning is turned into an error. An image of more than
    :data:`DECODE_PIXELS` pixels is reduced by the smallest whole factor ``f``
    that brings it within (each output pixel the mean of an ``f`` x ``f`` block;
    a JPEG is decoded at 1/2, 1/4 or 1/8 scale first), so a 40-megapixel photo
    gives about 2.5 million pixels. Animated GIFs and multi-page TIFFs give their
    first frame; a JPEG's EXIF orientation is applied.

    Parameters
    ----------
    data : bytes
        The file's content.
    name : str, keyword-only
        The file's name, for messages.

    Returns
    -------
    ndarray
        H x W at most about :data:`DECODE_PIXELS`. By the image's mode: bool (H, W) for 1-bit
        (grey uint8 when reduced); uint8 (H, W) grey, (H, W, 2)
        grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA (palette images become
        RGBA); uint16 (H, W) for 16-bit grey (its full 0..65535 range kept);
        float32 (H, W) for a float TIFF with values in [0, 1].

    Raises
    ------
    InputError
        One line naming the file: empty, not one of the formats, too many
        pixels, corrupt or truncated.
    """
    if not data:
        raise InputError(f"{shown(name)}: file is empty (expected a PNG, JPEG, BMP, GIF or TIFF image)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open_image(data, name=name)
        with image:
            _check_pixels(image, name=name)
            _draft(image)
            _load_pixels(image, name=name)
            return _image_array(_upright(_reduced(image, name=name), orientation=_orientation(image, name=name)),
                                name=name)


def _reduction(width: int, height: int) -> int:
    """The smallest whole factor that brings ``width`` x ``height`` within :data:`DECODE_PIXELS` (1 if it fits)."""
    factor = 1
    while math.ceil(width / factor) * math.ceil(height / factor) > DECODE_PIXELS:
        factor += 1
    return factor


def _draft(image: Image.Image) -> None:
    """Ask a JPEG decoder for a 1/2, 1/4 or 1/8 scale that stays at least the reduced size (no-op otherwise)."""
    width, height = image.size
    factor = _reduction(width, height)
    if factor > 1 and image.format == "JPEG":
        image.draft(image.mode, (math.ceil(width / factor), math.ceil(height / factor)))


_REDUCIBLE = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBA": "RGBA", "I": "I", "F": "F",
              "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB",
              "LAB": "RGB", "HSV": "RGB"}
"""The mode each decoded mode is reduced in (as :func:`_image_array` would convert it); others: RGBA."""


def _reduced(image: Image.Image, *, name: str) -> Image.Image:
    """The decoded image box-averaged by :func:`_reduction`'s factor, or itself when it fits."""
    factor = _reduction(*image.size)
    if factor == 1:
        return image
    mode = _REDUCIBLE.get(image.mode, "RGBA")  # palette and other colour modes: RGBA, as _image_array does
    try:
        converted = image if image.mode == mode else image.convert(mode)
        return converted.reduce(factor)  # 16-bit grey is reduced as 32-bit "I"; _image_array makes it uint16 again
    except Exception as exc:  # noqa: BLE001 - an exotic mode Pillow cannot convert or reduce
        raise InputError(f"{shown(name)}: cannot reduce its {image.mode} pixels ({first_line(exc)})") from None


def _open_image(data: bytes, *, name: str) -> Image.Image:
    """``Image.open`` (header only) restricted to :data:`IMAGE_FORMATS`; bombs and unknown bytes refused."""
    try:
        return Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{shown(name)}: refused as a decompression bomb ({first_line(exc)})") from None
    except UnidentifiedImageError:
        raise InputError(
            f"{shown(name)}: not a PNG, JPEG, BMP, GIF or TIFF image (cannot identify its format)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes is "not a readable image"
        raise InputError(f"{shown(name)}: not a readable image ({first_line(exc)})") from None


def _check_pixels(image: Image.Image, *, name: str) -> None:
    """Refuse an image whose header claims no pixels or more than :data:`MAX_IMAGE_PIXELS`."""
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"{shown(name)}: image is {width}x{height} pixels, expected at least 1x1")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{shown(name)}: image is {width}x{height} = {width * height:,} pixels, more than the "
            f"{MAX_IMAGE_PIXELS:,} limit; refused without decoding (decompression bomb?)"
        )


def _load_pixels(image: Image.Image, *, name: str) -> None:
    """Decode the (first frame's) pixels; corrupt or truncated data is refused in one line."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{shown(name)}: refused as a decompression bomb ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        raise InputError(f"{shown(name)}: corrupt or truncated {image.format} image ({first_line(exc)})") from None


_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}
"""How each EXIF orientation (2..8) is undone, as ``ImageOps.exif_transpose`` does it."""


def _orientation(image: Image.Image, *, name: str) -> int:
    """The image's EXIF orientation tag (phone photos), 1 when it has none."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - a malformed EXIF block
        raise InputError(f"{shown(name)}: unreadable EXIF orientation ({first_line(exc)})") from None
    return orientation if orientation in _TURNS else 1


def _upright(image: Image.Image, *, orientation: int) -> Image.Image:
    """``image`` turned as its EXIF ``orientation`` says (read from the file by :func:`_orientation`)."""
    return image.transpose(_TURNS[orientation]) if orientation in _TURNS else image


def _image_array(image: Image.Image, *, name: str) -> np.ndarray:
    """Pixels of a decoded image as the array ``to_grayscale`` accepts (see :func:`decode_image`)."""
    mode = image.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA"):
        return np.asarray(image).copy()
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        return _int32_levels(np.asarray(image), name=name)
    if mode == "F":
        return _float_levels(np.asarray(image), name=name)
    if mode == "La":
        return np.asarray(image.convert("LA"))
    if mode in ("RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image.convert("RGBA"))  # P, PA, RGBa and any other mode with colours


def _int32_levels(pixels: np.ndarray, *, name: str) -> np.ndarray:
    low, high = int(pixels.min()), int(pixels.max())
    if low < 0 or high > 65535:
        raise InputError(f"{shown(name)}: 32-bit integer pixels in [{low}, {high}], expected 0..65535")
    return pixels.astype(np.uint16)


def _float_levels(pixels: np.ndarray, *, name: str) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise InputError(f"{shown(name)}: float pixels hold NaN or infinity, expected values in [0, 1]")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"{shown(name)}: float pixels in [{low:g}, {high:g}], expected [0, 1]")
    return pixels.copy()


# ----------------------------------------------------------------------------- arrays


def read_arrays(path: str | os.PathLike) -> np.ndarray:
    """Read MNIST-style digits from an array file.

    The format is recognised by the file's first bytes, not its name: ``.npy``
    (``\\x93NUMPY``), ``.npz`` (a zip), an IDX images file (magic 0x00000803), or
    a gzip-compressed IDX images file (which must be named ``*.gz``).

    * ``.npy``: shape (28, 28), (N, 28, 28) or (N, 28, 28, 1).
    * ``.npz``: the array ``x``, else ``x_test`` (see :data:`NPZ_KEYS`), shaped as above.
    * IDX: unsigned-byte images of 28x28 (read with :func:`ensemble_cnn.data.mnist.read_idx`).

    Shapes and dtypes are checked from the headers before any data is read, and
    the data is at most :data:`MAX_ARRAY_BYTES`. Pickled (object) arrays are
    refused. Pixel values:

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
    head = _read_head(path, len(_NPY_MAGIC), limit=MAX_ARRAY_FILE_BYTES, what="array")
    if head.startswith(_NPY_MAGIC):
        with _open_regular(path, limit=MAX_ARRAY_FILE_BYTES, what="array") as fh:
            return _read_npy(fh, name=str(path))
    if head.startswith(_ZIP_MAGIC):
        return _read_npz(path)
    if head.startswith((_GZIP_MAGIC, b"\x00\x00")):
        return _read_idx_images(path, compressed=head.startswith(_GZIP_MAGIC))
    raise InputError(f"{shown(path)}: not a .npy, .npz or IDX images file (unrecognised first bytes {head[:4]!r})")


def _read_npy(fh: BinaryIO, *, name: str) -> np.ndarray:
    """Read one ``.npy`` stream as uint8 digits, checking its header before reading any data."""
    shape, fortran_order, dtype = _read_npy_header(fh, name=name)
    _check_array_header(shape, dtype, name=name)
    n_bytes = math.prod(shape) * dtype.itemsize
    data = fh.read(n_bytes)
    if len(data) != n_bytes:
        raise InputError(
            f"{shown(name)}: truncated .npy data ({len(data)} bytes, header promises {n_bytes} for {shape})"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return _as_digits(array, name=name)


def _read_npy_header(fh: BinaryIO, *, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from a ``.npy`` header (format 1.0 or 2.0); no data is read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            return fmt.read_array_header_1_0(fh)
        if version == (2, 0):
            return fmt.read_array_header_2_0(fh)
    except (ValueError, SyntaxError, EOFError, TypeError, OSError, zlib.error) as exc:
        raise InputError(f"{shown(name)}: not a valid .npy header ({first_line(exc)})") from None
    raise InputError(
        f"{shown(name)}: .npy format version {version[0]}.{version[1]} is not supported (expected 1.0 or 2.0)"
    )


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
            f"{shown(name)}: header claims shape {shape} of {dtype} ({_describe_size(n_bytes)}), more than the "
            f"{_describe_size(MAX_ARRAY_BYTES)} limit"
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
    """Pixel values as uint8 0..255: uint8 as is, booleans as 0/255, integers in 0..255, floats in [0, 1]
    (scaled by 255) or [0, 255] (rounded); :class:`InputError` naming ``name`` otherwise."""
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


def _read_npz(path: Path) -> np.ndarray:
    """The first of :data:`NPZ_KEYS` in an ``.npz``, read member by member (never ``np.load``)."""
    try:
        with _open_regular(path, limit=MAX_ARRAY_FILE_BYTES, what="array") as fh, zipfile.ZipFile(fh) as archive:
            names = archive.namelist()
            key = next((k for k in NPZ_KEYS if f"{k}.npy" in names), None)
            if key is None:
                held = ", ".join(n.removesuffix(".npy") for n in names[:8]) + (", ..." if len(names) > 8 else "")
                raise InputError(
                    f"{shown(path)}: holds no array named {' or '.join(NPZ_KEYS)} "
                    f"(it holds: {shown(held) or 'nothing'})"
                )
            info = archive.getinfo(f"{key}.npy")
            if info.file_size > MAX_ARRAY_BYTES + _NPZ_HEADER_SLACK:
                raise InputError(
                    f"{shown(path)}: array {key} unpacks to {_describe_size(info.file_size)}, more than the "
                    f"{_describe_size(MAX_ARRAY_BYTES)} limit"
                )
            with archive.open(info) as member:
                return _read_npy(member, name=f"{path} [{key}]")
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, zlib.error,
            ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{shown(path)}: not a readable .npz archive ({first_line(exc)})") from None


def _read_idx_images(path: Path, *, compressed: bool) -> np.ndarray:
    """Unsigned-byte 28x28 IDX images (gzip when ``compressed``) via :func:`ensemble_cnn.data.mnist.read_idx`.

    The header (and, for gzip, the unpacked length, counted without keeping it)
    is checked first, so ``read_idx``, which reads the whole file, reads at most
    :data:`MAX_ARRAY_BYTES`.
    """
    if compressed != (path.suffix == ".gz"):
        expected = "named *.gz when gzip-compressed" if compressed else "gzip-compressed when named *.gz"
        raise InputError(f"{shown(path)}: an IDX file must be {expected}")
    header = _read_idx_header(path, compressed=compressed)
    n_images = _check_idx_header(header, name=str(path))
    n_bytes = _IDX_HEADER_BYTES + n_images * math.prod(DIGIT_SHAPE)
    if compressed:
        _check_gzip_length(path, expected=n_bytes)
    try:
        images = read_idx(path, ndim=3)
    except DataError as exc:
        raise InputError(str(exc)) from None
    return _as_digits(images, name=str(path))


def _read_idx_header(path: Path, *, compressed: bool) -> bytes:
    with _open_regular(path, limit=MAX_ARRAY_FILE_BYTES, what="array") as fh:
        try:
            if compressed:
                with gzip.GzipFile(fileobj=fh, mode="rb") as unpacked:
                    return unpacked.read(_IDX_HEADER_BYTES)
            return fh.read(_IDX_HEADER_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{shown(path)}: not a readable gzip file ({first_line(exc)})") from None


def _check_idx_header(header: bytes, *, name: str) -> int:
    """The number of images an IDX images header promises, refusing other IDX files and sizes."""
    if len(header) < 4:
        raise InputError(f"{shown(name)}: truncated IDX file ({len(header)} bytes, header needs {_IDX_HEADER_BYTES})")
    magic = int.from_bytes(header[:4], "big")
    if magic == _IDX_LABELS_MAGIC:
        raise InputError(
            f"{shown(name)}: an IDX labels file (magic 0x{magic:08x}), expected an images file (0x00000803)"
        )
    if magic != _IDX_IMAGES_MAGIC:
        raise InputError(
            f"{shown(name)}: wrong IDX magic number 0x{magic:08x} (expected 0x{_IDX_IMAGES_MAGIC:08x}, images)"
        )
    if len(header) < _IDX_HEADER_BYTES:
        raise InputError(f"{shown(name)}: truncated IDX file ({len(header)} bytes, header needs {_IDX_HEADER_BYTES})")
    n_images, rows, cols = (int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    if (rows, cols) != DIGIT_SHAPE:
        raise InputError(f"{shown(name)}: IDX images of {rows}x{cols} pixels, expected 28x28")
    if n_images == 0:
        raise InputError(f"{shown(name)}: holds zero digits")
    n_bytes = n_images * rows * cols
    if n_bytes > MAX_ARRAY_BYTES:
        raise InputError(
            f"{shown(name)}: header claims {n_images:,} images ({_describe_size(n_bytes)}), more than the "
            f"{_describe_size(MAX_ARRAY_BYTES)} limit"
        )
    return n_images


def _check_gzip_length(path: Path, *, expected: int) -> None:
    """Refuse a gzip file that does not unpack to exactly ``expected`` bytes; reads at most expected + 1."""
    total = 0
    with _open_regular(path, limit=MAX_ARRAY_FILE_BYTES, what="array") as fh:
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as unpacked:
                while total <= expected:
                    chunk = unpacked.read(min(_CHUNK, expected + 1 - total))
                    if not chunk:
                        break
                    total += len(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{shown(path)}: corrupt gzip data ({first_line(exc)})") from None
    if total != expected:
        got = f"more than {expected}" if total > expected else str(total)
        raise InputError(f"{shown(path)}: IDX data unpacks to {got} bytes, header promises {expected}")


# ----------------------------------------------------------------------------- paths


def _kind_by_name(path: Path) -> Kind | None:
    """``"image"`` or ``"array"`` from the file name's ending (any case), else ``None``."""
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(ARRAY_SUFFIXES):
        return "array"
    return None


def classify_path(path: str | os.PathLike) -> Kind:
    """Whether a file holds an image or an array of digits.

    By name first (:data:`IMAGE_SUFFIXES`, :data:`ARRAY_SUFFIXES`, any case); a
    file with no known ending (e.g. ``digits.gz`` or no suffix at all) is
    recognised by its first bytes: image signatures (PNG, JPEG, GIF, BMP, TIFF),
    ``.npy``, zip (``.npz``), IDX images, or gzip holding IDX images.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    {"image", "array"}

    Raises
    ------
    InputError
        The file is unknown by name and content, or (when its bytes are needed)
        missing, not a regular file, empty or too large.
    """
    path = Path(path)
    kind = _kind_by_name(path)
    if kind is not None:
        return kind
    head = _read_head(path, 8, limit=max(MAX_IMAGE_FILE_BYTES, MAX_ARRAY_FILE_BYTES), what="image or array")
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if head.startswith((_NPY_MAGIC, *_ZIP_MAGIC)) or int.from_bytes(head[:4], "big") == _IDX_IMAGES_MAGIC:
        return "array"
    if head.startswith(_GZIP_MAGIC) and _gzip_holds_idx(path):
        return "array"
    raise InputError(
        f"{shown(path)}: not a recognised image or array file (expected {', '.join(IMAGE_SUFFIXES)} images or "
        f"{', '.join(ARRAY_SUFFIXES)} arrays)"
    )


def _gzip_holds_idx(path: Path) -> bool:
    """Whether a gzip file unpacks to an IDX images header (reads 4 unpacked bytes)."""
    with _open_regular(path, limit=MAX_ARRAY_FILE_BYTES, what="array") as fh:
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as unpacked:
                return int.from_bytes(unpacked.read(4), "big") == _IDX_IMAGES_MAGIC
        except (OSError, EOFError, zlib.error):
            return False


def expand_paths(
    paths: Iterable[str | os.PathLike], *, recursive: bool = False
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files to predict from the user's paths, and the paths that give none.

    A regular file is kept as it is (whatever its name; reading it decides). A
    folder gives its files whose names end in :data:`IMAGE_SUFFIXES` or
    :data:`ARRAY_SUFFIXES` (any case), sorted by name; with ``recursive`` it also
    descends into sub-folders (not through links to folders), all its files
    sorted in path order (by path components). Names starting with ``.`` (hidden
    files and folders) are skipped. The order of the paths, and repeats, are kept.

    Parameters
    ----------
    paths : iterable of path-like
    recursive : bool, keyword-only

    Returns
    -------
    files : list of Path
    problems : list of (Path, str)
        A path and a one-line reason: missing, not a file or folder (a FIFO,
        device, ...), unreadable, a symbolic link that loops (given, or found in
        a folder whatever its name), or a folder with no image or array files.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            problems.append((path, "no such file or folder"))
            continue
        except OSError as exc:
            problems.append((path, _unreadable_entry(exc)))
            continue
        if stat.S_ISREG(mode):
            files.append(path)
        elif stat.S_ISDIR(mode):
            found, folder_problems = _folder_files(path, recursive=recursive)
            files.extend(found)
            problems.extend(folder_problems)
        else:
            problems.append((path, f"is {_file_type(mode)}, expected a file or folder"))
    return files, problems


def _folder_files(folder: Path, *, recursive: bool) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image and array files in ``folder`` (sorted), and problems (unreadable, none found)."""
    found: list[Path] = []
    problems: list[tuple[Path, str]] = []
    pending = [folder]
    skipped_folders = 0
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                listing = [entry for entry in entries if not entry.name.startswith(".")]
        except OSError as exc:
            problems.append((current, f"cannot list the folder ({_oserror_reason(exc)})"))
            continue
        for entry in listing:
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
                is_file = not is_folder and entry.is_file()
            except OSError as exc:  # a symbolic link loop, an entry removed meanwhile, ...
                problems.append((Path(entry.path), _unreadable_entry(exc)))
                continue
            if is_folder:
                if recursive:
                    pending.append(Path(entry.path))
                else:
                    skipped_folders += 1
            elif is_file and _kind_by_name(Path(entry.name)) is not None:
                found.append(Path(entry.path))
    found.sort(key=lambda p: p.relative_to(folder).parts)
    if not found and not problems:
        hint = f" (its {skipped_folders} sub-folder(s) are searched only when recursive)" if skipped_folders else ""
        problems.append((folder, f"no image or array files in it{hint}"))
    return found, problems


def _unreadable_entry(exc: OSError) -> str:
    """The one-line reason a path's type cannot be read: a symbolic link loop, or the system's words."""
    if exc.errno == errno.ELOOP:
        return f"is a symbolic link that loops ({exc.strerror})"
    return f"cannot read it ({_oserror_reason(exc)})"


def load_inputs(path: str | os.PathLike) -> tuple[np.ndarray, Kind]:
    """The digits the model sees from one file, and the file's kind.

    An image is decoded and made MNIST-style (:func:`~ensemble_cnn.inference.preprocess.preprocess_digits`);
    an array file's digits are used as stored.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    digits : ndarray of uint8, shape (N, 28, 28)
        N = 1 for an image.
    kind : {"image", "array"}

    Raises
    ------
    InputError
        One line naming the file; ``"FILE: no ink found (...)"`` for an image with no ink
        (all white, all black, fully transparent, ...: see :class:`~ensemble_cnn.errors.NoInkError`).
    """
    path = Path(path)
    kind = classify_path(path)
    if kind == "array":
        return read_arrays(path), kind
    image = read_image(path)
    try:
        return preprocess_digits([image]), kind
    except ValueError as exc:
        raise InputError(f"{shown(path)}: {first_line(exc).removeprefix('images[0]: ')}") from None
