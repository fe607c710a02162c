"""Turn arbitrary digit images into MNIST-style 28x28 digits.

MNIST's own recipe (LeCun et al., the MNIST page): the digit is size-normalised
to fit a 20x20 box keeping its aspect ratio, with anti-aliasing (so grey levels
appear), then placed in a 28x28 field so that its centre of mass lies at the
centre of the field. Ink is light on a black background.

:func:`to_grayscale` turns any image array into float grey levels (1 = white);
:func:`mnist_style` applies the recipe to one grey image; :func:`preprocess_digits`
does both for many images. The module uses only NumPy and Pillow (for the
resampling); it never imports TensorFlow.

Decisions, where MNIST's description is silent:

* **Polarity** is decided from the border (the outermost 1-px frame): a border
  median above 0.5 means a light background, and the image is inverted.
* **Background level** is the border median after inversion; it is subtracted
  and the result clipped to [0, 1], so a grey background becomes 0.
* **Noise**: ink at or below :data:`INK_THRESHOLD` (5 %) of the brightest ink
  counts as background (set to 0); it neither widens the crop nor moves the
  centre of mass.
* **No ink**: an image whose brightest ink (after the inversion and the
  background subtraction above) is below :data:`NO_INK_LEVEL` (5 % of the grey
  range, about 13 of 255 levels) holds no digit: :class:`~ensemble_cnn.errors.NoInkError`
  is raised instead of returning a blank digit that a model would label anyway.
  All white, all black, uniformly grey and fully transparent images have none;
  a thin pencil stroke on a noisy photo (a few levels of noise, tens of levels of
  contrast) has some. :func:`has_ink` applies the same level to 28x28 digits.
* **Resampling**: area averaging (Pillow ``BOX``) when shrinking, bilinear when
  enlarging, on a float (mode ``"F"``) image. Both have non-negative weights, so
  there is no ringing: a solid stroke stays solid and exactly as wide as its
  target size.
* **Centring**: the centre of mass (row, column in pixel-index coordinates, as
  ``scipy.ndimage.center_of_mass`` gives it) is moved to ``(size / 2, size / 2)``
  = (14, 14), which is where the real MNIST digits have it (mean 14.0, 14.0).
  The shift is a whole number of pixels (rounded half up) and is clamped so no
  ink leaves the frame.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ensemble_cnn.errors import NoInkError

MNIST_BOX = 20
MNIST_SIZE = 28
INK_THRESHOLD = 0.05
"""Ink at or below this fraction of the brightest ink is treated as background noise."""
NO_INK_LEVEL = 0.05
"""An image whose brightest ink (above its background, in [0, 1]) is below this level has no ink."""
THUMBNAIL_SIZE = 96
"""Longest side, in pixels, of the grey thumbnails :func:`thumbnail` makes (for previews)."""

_CHANNELS = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Grey levels of an image, 0 = black, 1 = white; alpha is composited on white.

    Parameters
    ----------
    image : array-like, shape (H, W) or (H, W, C)
        C is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). dtype uint8
        (0..255), uint16 (0..65535), bool, or float with values in [0, 1].

    Returns
    -------
    ndarray of float64, shape (H, W)
        Luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B) in [0, 1]; transparent
        pixels count as white, whatever their colour.

    Raises
    ------
    ValueError
        One line naming ``image`` and what was expected.
    """
    array = np.asarray(image)
    _check_image_shape(array)
    if array.ndim == 2:
        return _unit_levels(array, name="image")
    if np.issubdtype(array.dtype, np.floating):
        _unit_levels(array, name="image")  # checks the whole array's values once, for the message
    channels = array.shape[2]

    def channel(index: int) -> np.ndarray:  # one channel at a time: no float copy of all channels
        return _unit_levels(array[..., index], name="image")

    if channels in (1, 2):
        grey = channel(0)
    else:
        grey = channel(0) * _LUMA[0]
        grey += channel(1) * _LUMA[1]
        grey += channel(2) * _LUMA[2]
    if channels in (2, 4):
        alpha = channel(channels - 1)
        grey *= alpha
        grey += 1.0 - alpha
    return np.clip(grey, 0.0, 1.0, out=grey)


def _check_image_shape(array: np.ndarray) -> None:
    """Refuse anything but (H, W) or (H, W, C) with C in 1..4 and H, W >= 1."""
    if array.ndim not in (2, 3):
        raise ValueError(f"image: has shape {array.shape}, expected (H, W) or (H, W, C)")
    if array.ndim == 3 and array.shape[2] not in _CHANNELS:
        raise ValueError(
            f"image: has {array.shape[2]} channels (shape {array.shape}), expected 1 (grey), 2 (grey+alpha), "
            "3 (RGB) or 4 (RGBA)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image: has shape {array.shape}, expected at least 1x1 pixels")


def _unit_levels(array: np.ndarray, *, name: str) -> np.ndarray:
    """The array as float64 in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0/1, floats checked."""
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        levels = array.astype(np.float64)
        if not np.isfinite(levels).all():
            raise ValueError(f"{name}: holds NaN or infinite values, expected floats in [0, 1]")
        low, high = float(levels.min()), float(levels.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{name}: has float values in [{low:g}, {high:g}], expected [0, 1]")
        return levels
    raise ValueError(f"{name}: has dtype {array.dtype}, expected uint8, uint16, bool or float in [0, 1]")


def mnist_style(gray: np.ndarray, *, box: int = MNIST_BOX, size: int = MNIST_SIZE) -> np.ndarray:
    """One grey image as an MNIST digit: light ink on black, fitted to a box, centred by mass.

    Parameters
    ----------
    gray : ndarray of float, shape (H, W)
        Grey levels in [0, 1] (1 = white), as :func:`to_grayscale` returns; ink
        may be dark on light or light on dark.
    box : int, keyword-only
        Side of the square the digit is scaled to fit (its longer side becomes ``box``).
    size : int, keyword-only
        Side of the output frame; ``box <= size``.

    Returns
    -------
    ndarray of uint8, shape (size, size)
        Ink light on black, brightest pixel 255, centre of mass at
        ``(size / 2, size / 2)`` within half a pixel where the frame allows.

    Raises
    ------
    NoInkError
        The image holds no ink (its brightest ink is below :data:`NO_INK_LEVEL`):
        ``"no ink found (...)"``.
    ValueError
        One line naming the argument and what was expected.
    """
    _check_sizes(box=box, size=size)
    ink = _ink_on_black(_checked_gray(gray))
    peak = float(ink.max())
    if peak < NO_INK_LEVEL:
        raise NoInkError(
            f"no ink found (nothing stands out from the background by {NO_INK_LEVEL:.0%} of the grey range; "
            f"the most is {peak:.1%}): a blank picture is not a digit"
        )
    ink = np.where(ink > INK_THRESHOLD * ink.max(), ink, 0.0)
    digit = _fit_to_box(_crop_to_ink(ink), box=box)
    framed = _place_by_mass(digit, size=size)
    return _to_uint8(framed)


def _check_sizes(*, box: int, size: int) -> None:
    if not 1 <= box <= size:
        raise ValueError(f"box={box}, size={size}: expected 1 <= box <= size")


def _checked_gray(gray: np.ndarray) -> np.ndarray:
    """``gray`` as float64 (H, W), refusing other shapes and values outside [0, 1]."""
    array = np.asarray(gray)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"gray: has shape {array.shape}, expected (H, W) with H, W >= 1 (see to_grayscale)")
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_):
        raise ValueError(f"gray: has dtype {array.dtype}, expected float grey levels in [0, 1] (see to_grayscale)")
    return _unit_levels(array, name="gray")


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The outermost 1-px frame of a 2-D image.

    Parameters
    ----------
    image : ndarray, shape (H, W)

    Returns
    -------
    ndarray, shape (2 * (H + W) - 4,) (fewer when H or W < 2: every pixel once)
    """
    height, width = image.shape
    if height <= 2 or width <= 2:
        return image.ravel()
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def _ink_on_black(gray: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] on a 0 background: invert a light background, subtract the border level."""
    if np.median(border_pixels(gray)) > 0.5:
        gray = 1.0 - gray
    background = float(np.median(border_pixels(gray)))
    return np.clip(gray - background, 0.0, 1.0)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the non-zero pixels of ``ink`` (shape (h, w)); ``ink`` must hold some."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit_to_box(digit: np.ndarray, *, box: int) -> np.ndarray:
    """Scale (h, w) so the longer side is ``box`` px, keeping the aspect ratio; float64 (h', w').

    Area averaging (BOX) when shrinking, bilinear when enlarging: no ringing either way.
    """
    height, width = digit.shape
    scale = box / max(height, width)
    new_height = min(box, max(1, _round_half_up(height * scale)))
    new_width = min(box, max(1, _round_half_up(width * scale)))
    if (new_height, new_width) == (height, width):
        return digit.copy()
    shrinking = new_height <= height and new_width <= width
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    resized = Image.fromarray(digit.astype(np.float32)).resize((new_width, new_height), resample=resample)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, None)


def _place_by_mass(digit: np.ndarray, *, size: int) -> np.ndarray:
    """Put ``digit`` (h, w) into a (size, size) frame with its centre of mass nearest ``size / 2``."""
    height, width = digit.shape
    row_mass, col_mass = _centre_of_mass(digit)
    centre = size / 2
    top = min(max(_round_half_up(centre - row_mass), 0), size - height)
    left = min(max(_round_half_up(centre - col_mass), 0), size - width)
    frame = np.zeros((size, size), dtype=np.float64)
    frame[top : top + height, left : left + width] = digit
    return frame


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass in pixel-index coordinates; the geometric centre if the mass is 0."""
    total = float(image.sum())
    height, width = image.shape
    if total <= 0.0:
        return (height - 1) / 2, (width - 1) / 2
    rows = float(image.sum(axis=1) @ np.arange(height)) / total
    cols = float(image.sum(axis=0) @ np.arange(width)) / total
    return rows, cols


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    """Scale so the maximum is 255 and round to uint8 (all zeros stay zeros)."""
    peak = float(frame.max())
    if peak <= 0.0:
        return np.zeros(frame.shape, dtype=np.uint8)
    return np.clip(np.rint(frame * (255.0 / peak)), 0, 255).astype(np.uint8)


def preprocess_digits(
    images: Sequence[np.ndarray] | np.ndarray, *, box: int = MNIST_BOX, size: int = MNIST_SIZE
) -> np.ndarray:
    """Many arbitrary digit images as MNIST-style digits.

    Parameters
    ----------
    images : sequence of arrays, or ndarray of shape (N, H, W) or (N, H, W, C)
        Each image as :func:`to_grayscale` accepts it (images in a list may differ
        in size). A single (H, W) array is refused as ambiguous: wrap it in a list.
    box, size : int, keyword-only
        As in :func:`mnist_style`.

    Returns
    -------
    ndarray of uint8, shape (N, size, size)
        ``(0, size, size)`` for no images.

    Raises
    ------
    NoInkError
        An image holds no ink (see :func:`mnist_style`); the message starts ``images[i]: no ink found``.
    ValueError
        One line naming the argument (and the image's index) and what was expected.
    """
    _check_sizes(box=box, size=size)
    if isinstance(images, np.ndarray) and images.ndim not in (3, 4):
        raise ValueError(
            f"images: array of shape {images.shape}, expected a stacked (N, H, W) or (N, H, W, C) array "
            "or a list of images (wrap a single image in a list)"
        )
    out = np.zeros((len(images), size, size), dtype=np.uint8)
    for index, image in enumerate(images):
        try:
            out[index] = mnist_style(to_grayscale(image), box=box, size=size)
        except NoInkError as exc:
            raise NoInkError(f"images[{index}]: {exc}") from None
        except ValueError as exc:
            reason = str(exc).removeprefix("image: ").removeprefix("gray: ")
            raise ValueError(f"images[{index}]: {reason}") from None
    return out


def has_ink(digits: np.ndarray) -> np.ndarray:
    """Which MNIST-style digits hold ink: their pixels span at least :data:`NO_INK_LEVEL` of 0..255.

    For digits that are already 28x28 (array files, ``--preprocess none``): an all-black,
    all-white or uniformly grey digit has none.

    Parameters
    ----------
    digits : ndarray of uint8, shape (N, H, W)

    Returns
    -------
    ndarray of bool, shape (N,)
    """
    digits = np.asarray(digits)
    if digits.ndim != 3:
        raise ValueError(f"digits: has shape {digits.shape}, expected (N, H, W)")
    if digits.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    flat = digits.reshape(len(digits), -1)  # no widened copy: only the (N,) extremes are widened
    return (flat.max(axis=1).astype(np.float64) - flat.min(axis=1)) >= NO_INK_LEVEL * 255


def thumbnail(gray: np.ndarray, *, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A small grey copy of an image for previews: the longest side at most ``size`` pixels.

    Parameters
    ----------
    gray : ndarray of float, shape (H, W)
        Grey levels in [0, 1], as :func:`to_grayscale` returns.
    size : int, keyword-only

    Returns
    -------
    ndarray of uint8, shape (h, w)
        ``h, w <= size`` (area-averaged), 255 = white; an image already that small is only converted.
    """
    gray = np.asarray(gray, dtype=np.float64)
    height, width = gray.shape
    scale = min(1.0, size / max(height, width))
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(gray.astype(np.float32))
    if new_size != (width, height):
        image = image.resize(new_size, resample=Image.Resampling.BOX)
    return np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
