"""Reading and decoding users' image files within a pixel budget (``predict``, ``serve``).

:func:`read_image` reads one image file (PNG, JPEG, BMP, GIF, TIFF; one digit of any size
and polarity) and :func:`decode_image` decodes its bytes; :func:`ensemble_cnn.inference.preprocess.preprocess_digits`
then turns the pixels into an MNIST digit.

Safety: nothing here writes to an input file. The file is opened by the hardened reader
(:func:`ensemble_cnn.data.reader.open_regular`: only a regular file, never waiting on a
FIFO). Sizes are checked from the file size and the image header *before* anything is
decoded, so a decompression bomb is refused in one line.

Limits (module constants, read at call time):

* :data:`MAX_IMAGE_FILE_BYTES` = 64 MiB for an image file;
* :data:`MAX_IMAGE_PIXELS` = 40,000,000 pixels, checked from the image header
  (a 48-megapixel photo is refused). Pillow's own decompression-bomb warning
  (above about 89 million pixels) is turned into an error as well;
* :data:`DECODE_PIXELS` = 4,000,000 pixels: a larger image is reduced while it is
  decoded (a JPEG by its decoder's own 1/2, 1/4, 1/8 scaling, so its full size is
  never held; other formats by area averaging right after decoding), so the arrays
  made from one image stay bounded (tens of MB) whatever its size.

Every problem raises :class:`~ensemble_cnn.errors.InputError` with a one-line message that starts with
the file's name (control characters in it escaped by :func:`ensemble_cnn.storage.outputs.shown`).
"""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ensemble_cnn.data.reader import INPUT_FILES, describe_size, open_regular
from ensemble_cnn.errors import InputError, first_line
from ensemble_cnn.storage.outputs import shown

MAX_IMAGE_PIXELS = 40_000_000
"""Largest image (width x height) decoded; larger ones are refused from the header alone."""
DECODE_PIXELS = 4_000_000
"""Most pixels of a decoded image: larger ones are reduced by a whole factor while decoding (:func:`decode_image`)."""
MAX_IMAGE_FILE_BYTES = 64 * 2**20
"""Largest image file read (64 MiB)."""
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF")
"""Pillow formats decoded (JPEG includes phones' multi-picture MPO files). No other decoder is ever tried."""
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
"""First bytes of the image formats decoded."""


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
    with open_regular(path, limit=MAX_IMAGE_FILE_BYTES, what="image", voice=INPUT_FILES) as fh:
        data = fh.read(MAX_IMAGE_FILE_BYTES + 1)
    if len(data) > MAX_IMAGE_FILE_BYTES:
        limit = describe_size(MAX_IMAGE_FILE_BYTES)
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
