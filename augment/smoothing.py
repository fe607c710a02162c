"""Gaussian smoothing of displacement fields as batched matrix products.

``scipy.ndimage.gaussian_filter(f, sigma, mode='constant')`` is separable and
linear, so for one (H, W) field it equals ``G_H @ f @ G_W.T`` where ``G_n`` is
the (n, n) matrix of the 1-D filter (column j = filter response to the unit
impulse at j).  For a batch the two products become two large GEMMs.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import gaussian_filter1d

from augment._checks import check_number

__all__ = ["filter_pair", "gaussian_matrix", "smooth_fields", "smooth_into"]


@functools.lru_cache(maxsize=64)
def _gaussian_matrix64(size: int, sigma: float, truncate: float) -> np.ndarray:
    g = gaussian_filter1d(
        np.eye(size), sigma, axis=0, mode="constant", cval=0.0, truncate=truncate
    )
    g.setflags(write=False)
    return g


def gaussian_matrix(
    size: int, sigma: float, *, truncate: float = 4.0, dtype: np.dtype = np.float64
) -> np.ndarray:
    """Matrix of the 1-D Gaussian filter with zero ('constant') boundaries.

    Parameters
    ----------
    size : int
        Length of the filtered axis.
    sigma : float
        Standard deviation of the Gaussian in pixels, > 0.
    truncate : float
        Kernel radius in standard deviations (scipy's default 4.0).
    dtype : numpy.dtype
        dtype of the result.

    Returns
    -------
    numpy.ndarray, shape (size, size)
        ``G`` such that ``G @ v == gaussian_filter1d(v, sigma, mode='constant')``.
    """
    size = check_number(size, name="size", integer=True)
    sigma = check_number(sigma, name="sigma")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return _gaussian_matrix64(size, sigma, float(truncate)).astype(dtype)


@functools.lru_cache(maxsize=64)
def filter_pair(
    h: int, w: int, sigma: float, scale: float, dtype_str: str
) -> tuple[np.ndarray, np.ndarray]:
    """Cached ``(scale * G_H, G_W.T)`` in the given dtype, read-only.

    Parameters
    ----------
    h, w : int
        Field height and width.
    sigma : float
        Gaussian width in pixels, > 0.
    scale : float
        Factor folded into the left matrix (Simard's ``alpha``).
    dtype_str : str
        ``numpy.dtype.str`` of the result.

    Returns
    -------
    g_left : numpy.ndarray, shape (H, H)
    g_right_t : numpy.ndarray, shape (W, W)
    """
    dtype = np.dtype(dtype_str)
    g_left = (gaussian_matrix(h, sigma) * scale).astype(dtype)
    g_right_t = np.ascontiguousarray(gaussian_matrix(w, sigma).T.astype(dtype))
    g_left.setflags(write=False)
    g_right_t.setflags(write=False)
    return g_left, g_right_t


def smooth_fields(
    fields: np.ndarray, sigma: float, *, scale: float = 1.0, dtype: np.dtype | None = None
) -> np.ndarray:
    """Smooth every (H, W) field of a batch with a Gaussian, times ``scale``.

    Equal (to float rounding) to
    ``scale * gaussian_filter(fields[n, c], sigma, mode='constant')`` for every
    ``n, c``, computed as two large matrix products for the whole batch.

    Parameters
    ----------
    fields : numpy.ndarray, shape (N, C, H, W)
        Floating fields (for example the uniform noise of an elastic draw).
    sigma : float
        Gaussian standard deviation in pixels, > 0.
    scale : float
        Factor applied to the result (Simard's ``alpha``).
    dtype : numpy.dtype, optional
        Arithmetic dtype; default float64 for float64 input, else float32.

    Returns
    -------
    numpy.ndarray, shape (N, C, H, W)
        Smoothed fields (a transposed view of a (C, H, N, W) buffer).
    """
    fields = np.asarray(fields)
    if fields.ndim != 4:
        raise ValueError(f"fields must have shape (N, C, H, W), got {fields.shape}")
    dtype = np.dtype(
        dtype if dtype is not None else (np.float64 if fields.dtype == np.float64 else np.float32)
    )
    n, c, h, w = fields.shape
    sigma = check_number(sigma, name="sigma")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    g_left, g_right_t = filter_pair(h, w, sigma, float(scale), dtype.str)
    out = np.empty((c, h, n, w), dtype=dtype)
    tmp = np.empty((c, h, n * w), dtype=dtype)
    smooth_into(fields, g_left, g_right_t, tmp=tmp, out=out)
    return out.transpose(2, 0, 1, 3)


def smooth_into(
    fields: np.ndarray,
    g_left: np.ndarray,
    g_right_t: np.ndarray,
    *,
    tmp: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """Compute ``g_left @ f @ g_right_t`` for every field, in (C, H, N, W) layout.

    The two products are issued as stacks of small GEMMs (each below
    OpenBLAS's multithreading threshold), which is several times faster
    than one large multithreaded GEMM and does not fight worker threads.

    Parameters
    ----------
    fields : numpy.ndarray, shape (N, C, H, W)
        Input fields.  When they are a transposed view of a contiguous
        (C, H, N', W) buffer (as :func:`augment.draws.draw_noise` makes them)
        no copy is needed.
    g_left : numpy.ndarray, shape (H, H)
        Left (row) filter matrix, already scaled.
    g_right_t : numpy.ndarray, shape (W, W)
        Transpose of the column filter matrix.
    tmp : numpy.ndarray, shape (C, H, N * W)
        Contiguous scratch buffer.
    out : numpy.ndarray, shape (C, H, N, W)
        Contiguous destination.

    Returns
    -------
    numpy.ndarray, shape (C, H, N, W)
        ``out``.
    """
    n, c, h, w = fields.shape
    stacked = fields.transpose(1, 2, 0, 3).reshape(c, h, n * w)  # view for draw_noise's layout
    if stacked.dtype != tmp.dtype:
        stacked = stacked.astype(tmp.dtype)
    _left_products(g_left, stacked, tmp)
    _right_products(tmp.reshape(c * h * n, w), g_right_t, out.reshape(c * h * n, w))
    return out


# Largest M * N * K per GEMM: OpenBLAS runs single-threaded below 4 * 65536.
_GEMM_WORK = 200_000


def _left_products(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = g @ x[i]`` for x (C, H, M), split into column blocks."""
    c, h, m = x.shape
    cols = max(1, _GEMM_WORK // (h * h))
    groups = m // cols
    full = groups * cols
    if groups:
        xv = x[:, :, :full].reshape(c, h, groups, cols).transpose(0, 2, 1, 3)
        ov = out[:, :, :full].reshape(c, h, groups, cols).transpose(0, 2, 1, 3)
        np.matmul(g, xv, out=ov)
    if full < m:
        np.matmul(g, x[:, :, full:], out=out[:, :, full:])


def _right_products(x: np.ndarray, g_t: np.ndarray, out: np.ndarray) -> None:
    """``out = x @ g_t`` for x (R, W), split into row blocks."""
    r, w = x.shape
    rows = max(1, _GEMM_WORK // (w * w))
    groups = r // rows
    full = groups * rows
    if groups:
        np.matmul(x[:full].reshape(groups, rows, w), g_t, out=out[:full].reshape(groups, rows, w))
    if full < r:
        np.matmul(x[full:], g_t, out=out[full:])
