"""Exact integer shifts: a slice of a zero-padded stack, no interpolation.

Also Nielsen's ``expand_mnist.py`` expansion (chapter 6 of *Neural Networks
and Deep Learning*): each digit plus its 1-pixel down/up/right/left copies.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from augment._checks import check_images, check_out, check_per_image

__all__ = ["NIELSEN_SHIFTS", "nielsen_expand", "shift_images"]

#: (dy, dx) of Nielsen's four copies, in block order: down, up, right, left.
NIELSEN_SHIFTS: tuple[tuple[int, int], ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))

# Images padded per pass; bounds the temporary padded stack.
_CHUNK = 1024


def shift_images(
    images: np.ndarray, shifts: np.ndarray, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Translate each image by a whole number of pixels, filling with zeros.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    shifts : array_like of int, shape (N, 2)
        Per-image ``(dy, dx)``; positive moves the content down / right.
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Shifted images, same dtype as ``images``; values are copied exactly.
    """
    images = check_images(images)
    n, h, w = images.shape
    shifts = check_per_image(shifts, n, (2,), name="shifts", integer=True)
    out = check_out(out, images.shape, images.dtype)
    if n == 0:
        return out
    # Shifts beyond the image size all give a blank image.
    dy = np.clip(shifts[:, 0], -h, h)
    dx = np.clip(shifts[:, 1], -w, w)
    py = int(np.abs(dy).max())
    px = int(np.abs(dx).max())
    if py == 0 and px == 0:
        np.copyto(out, images)
        return out
    step = min(n, _CHUNK)
    pad = np.zeros((step, h + 2 * py, w + 2 * px), dtype=images.dtype)
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        b = i1 - i0
        pad[:b, py : py + h, px : px + w] = images[i0:i1]
        windows = sliding_window_view(pad[:b], (h, w), axis=(1, 2))
        # Window (r, c) holds source rows r - py ... so output = window(py - dy, px - dx).
        out[i0:i1] = windows[np.arange(b), py - dy[i0:i1], px - dx[i0:i1]]
    return out


def nielsen_expand(
    images: np.ndarray, labels: np.ndarray, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nielsen's five-fold expansion by 1-pixel shifts.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    labels : numpy.ndarray, shape (N,)
        Labels of ``images``.
    out : numpy.ndarray, shape (5 * N, H, W), optional
        Destination with the dtype of ``images`` (may be a memmap).

    Returns
    -------
    images5 : numpy.ndarray, shape (5 * N, H, W)
        Blocks ``[originals; all down; all up; all right; all left]``, each
        copy shifted by one pixel with the vacated row / column set to zero.
    labels5 : numpy.ndarray, shape (5 * N,)
        ``np.tile(labels, 5)``.
    """
    images = check_images(images)
    labels = np.asarray(labels)
    n = images.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape (N,) = ({n},), got {labels.shape}")
    out = check_out(out, (5 * n, *images.shape[1:]), images.dtype)
    out[:n] = images
    for k, (dy, dx) in enumerate(NIELSEN_SHIFTS, start=1):
        block = out[k * n : (k + 1) * n]
        block[...] = 0
        dst_y, src_y = _overlap(dy)
        dst_x, src_x = _overlap(dx)
        block[:, dst_y, dst_x] = images[:, src_y, src_x]
    return out, np.tile(labels, 5)


def _overlap(d: int) -> tuple[slice, slice]:
    """Destination and source slices of a 1-D shift by ``d`` (|d| >= 0)."""
    if d > 0:
        return slice(d, None), slice(None, -d)
    if d < 0:
        return slice(None, d), slice(-d, None)
    return slice(None), slice(None)
