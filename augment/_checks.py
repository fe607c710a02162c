"""Input validation shared by the transforms.

Every public transform funnels its arguments through these helpers so that a
bad call fails early with a one-line :class:`ValueError` naming the argument.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_images",
    "check_number",
    "check_out",
    "check_per_image",
    "work_dtype",
]


def check_images(images: np.ndarray, *, name: str = "images") -> np.ndarray:
    """Return ``images`` as an array after checking it is a (N, H, W) stack.

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack of images.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        The input as an array (no copy when it already is one).

    Raises
    ------
    ValueError
        If the rank, the image size or the dtype is wrong.
    """
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W), got {arr.shape}")
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"{name} must have non-empty images, got shape {arr.shape}")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or floating, got dtype {arr.dtype}")
    return arr


def check_per_image(
    values: np.ndarray,
    n: int,
    tail: tuple[int, ...],
    *,
    name: str,
    integer: bool = False,
) -> np.ndarray:
    """Check a per-image parameter array and return it as an array.

    Parameters
    ----------
    values : array_like, shape (n, *tail)
        One entry per image (for example angles (n,) or shifts (n, 2)).
    n : int
        Number of images in the batch.
    tail : tuple of int
        Expected trailing shape.
    name : str
        Name used in error messages.
    integer : bool
        Require an integer dtype (shifts) instead of real numbers.

    Returns
    -------
    numpy.ndarray, shape (n, *tail)
        int64 when ``integer`` is true, float64 otherwise.

    Raises
    ------
    ValueError
        On a wrong shape, a wrong dtype or non-finite values.
    """
    arr = np.asarray(values)
    expected = (n, *tail)
    if arr.shape != expected:
        shape_txt = "(N" + "".join(f", {t}" for t in tail) + ")"
        raise ValueError(f"{name} must have shape {shape_txt} = {expected}, got {arr.shape}")
    if integer:
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def check_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Return ``out``, or a new empty array, after checking shape and dtype.

    Parameters
    ----------
    out : numpy.ndarray or None, shape ``shape``
        Caller-provided destination (may be a memmap), or None to allocate.
    shape : tuple of int
        Required shape.
    dtype : numpy.dtype
        Required dtype.

    Returns
    -------
    numpy.ndarray, shape ``shape``
        The destination array.
    """
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"out must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    return out


def check_number(value: object, *, name: str, integer: bool = False) -> float | int:
    """Check a scalar option is a finite real (or integer) number.

    Parameters
    ----------
    value : object
        The option value.
    name : str
        Name used in error messages.
    integer : bool
        Require an integer.

    Returns
    -------
    float or int
        The value converted to a Python number.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if integer:
        if not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_draw_request(rng: object, n: object) -> int:
    """Check what a draw function is asked for: a ``numpy.random.Generator`` and a count ``n >= 0``.

    Returns
    -------
    int
        ``n`` as a Python integer.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = check_number(n, name="n", integer=True)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n


def work_dtype(dtype: np.dtype) -> np.dtype:
    """Floating dtype used for the arithmetic on images of ``dtype``.

    float64 images are processed in float64 (so identities stay exact);
    everything else (uint8, float16, float32) in float32.
    """
    if np.dtype(dtype).itemsize >= 8 and np.issubdtype(dtype, np.floating):
        return np.dtype(np.float64)
    return np.dtype(np.float32)
