"""The resampling engine: one coordinate map, one bilinear lookup per pixel.

Output pixel ``p = (y, x)`` samples the source at ``A_n (p + d(p)) + b_n`` where
``d`` is an optional elastic displacement (``alpha`` times the Gaussian-smoothed
noise) and ``(A_n, b_n)`` a per-image affine map.  Samples outside the image
read zeros (bilinear interpolation against a zero border, like
``scipy.ndimage.map_coordinates(order=1, mode='grid-constant')``).

Speed notes.  Images go through in sub-batches of :data:`SUB_BATCH` so the
working set stays in the L2 cache, with per-thread scratch buffers reused
across calls (no page faults in the hot loop) and every ufunc running over
contiguous data.  Elastic pixels are laid out (H, n, W), the layout in which
the smoothed fields come out of the GEMMs; affine-only pixels (n, H, W), with
their coordinates made by one small GEMM each.  Coordinates are clipped to the
border of a stack padded 1 px before and 2 px after, so the four bilinear taps
are gathers from four offset views of one flat buffer with a single index
array and no masks.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import numpy as np

from augment.smoothing import filter_pair, smooth_into

__all__ = ["SUB_BATCH", "sub_batch_size", "warp"]

#: Images per inner pass; about 1.6 MB of float32 scratch per thread.
SUB_BATCH = 64

_local = threading.local()


def _sub_batch() -> int:
    """This thread's sub-batch size (see :func:`sub_batch_size`)."""
    return getattr(_local, "sub_batch", SUB_BATCH)


@contextlib.contextmanager
def sub_batch_size(size: int) -> Iterator[None]:
    """Use sub-batches of ``size`` images in this thread within the block.

    Every NumPy call briefly retakes the GIL, so when several threads warp
    at once, fewer and larger operations (for example 256 images) scale
    much better than the cache-friendly single-thread default.

    Parameters
    ----------
    size : int
        Images per inner pass, >= 1.
    """
    previous = getattr(_local, "sub_batch", None)
    _local.sub_batch = int(size)
    try:
        yield
    finally:
        if previous is None:
            del _local.sub_batch
        else:
            _local.sub_batch = previous



def _clamp(values: np.ndarray, high: float) -> None:
    """Clamp coordinates into ``[0, high]`` in place; NaN becomes 0 (``fmax``/``fmin`` skip NaN).

    Public ufuncs only; a non-finite coordinate (from an absurd ``alpha``) can never
    reach the gather below as a wild index.
    """
    np.fmax(values, 0, out=values)
    np.fmin(values, high, out=values)


class _Workspace:
    """Per-thread scratch buffers for one (H, W, dtype, batch) combination."""

    def __init__(self, h: int, w: int, dtype: np.dtype, batch: int) -> None:
        p = batch * h * w
        self.pad = np.zeros((batch, h + 3, w + 3), dtype=dtype)  # borders stay 0
        # Smoothing scratch, then integer parts of the coordinates, then taps.
        self.tmp = np.empty(2 * p, dtype=dtype)
        # Smoothed fields, then taps.
        self.disp = np.empty(2 * p, dtype=dtype)
        self.y = np.empty(p, dtype=dtype)
        self.x = np.empty(p, dtype=dtype)
        self.idx = np.empty(p, dtype=np.intp)


def _workspace(h: int, w: int, dtype: np.dtype, batch: int) -> _Workspace:
    """This thread's workspace for the given geometry (created on first use)."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (h, w, dtype.str, batch)
    ws = cache.get(key)
    if ws is None:
        if len(cache) >= 4:
            cache.clear()
        ws = cache[key] = _Workspace(h, w, dtype, batch)
    return ws


def warp(
    images: np.ndarray,
    coefs: np.ndarray,
    noise: np.ndarray | None = None,
    *,
    alpha: float = 0.0,
    sigma: float = 4.0,
    linear_identity: bool = False,
    dtype: np.dtype,
    out: np.ndarray,
) -> np.ndarray:
    """Resample every image through its affine map after an elastic displacement.

    Inputs are assumed validated (see the public wrappers in
    :mod:`augment.affine` and :mod:`augment.elastic`).

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating source images.
    coefs : numpy.ndarray, shape (N, 2, 3)
        float64 maps ``source_yx = coefs[n, :, :2] @ q + coefs[n, :, 2]`` where
        ``q`` is the displaced output position ``(y, x) + d``.
    noise : numpy.ndarray, shape (N, 2, H, W), optional
        Raw elastic noise (dy, dx); ``d = alpha * gaussian_filter(noise, sigma)``.
    alpha, sigma : float
        Elastic strength and smoothness in pixels.
    linear_identity : bool
        True when every ``coefs[n, :, :2]`` is the identity (skips the mixing).
    dtype : numpy.dtype
        Arithmetic dtype (float32, or float64 for float64 images).
    out : numpy.ndarray, shape (N, H, W)
        Destination with the images' dtype; uint8 results are rounded.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        ``out``.
    """
    n, h, w = images.shape
    sub = min(_sub_batch(), max(n, 1))
    ws = _workspace(h, w, dtype, sub)
    elastic = noise is not None and alpha != 0.0
    # +1: coordinates are taken in the padded frame (1 px of zeros before).
    shifted = coefs.copy()
    shifted[:, :, 2] += 1.0
    if elastic:
        plan = _ElasticPlan(shifted, (h, w), sub, dtype, alpha, sigma, linear_identity)
    else:
        plan = _AffinePlan(shifted, (h, w), sub, dtype)
    for i0 in range(0, n, sub):
        i1 = min(n, i0 + sub)
        b = i1 - i0
        pad = ws.pad[:b]
        np.copyto(pad[:, 1 : h + 1, 1 : w + 1], images[i0:i1], casting="unsafe")
        y, x, base = plan.coordinates(ws, i0, i1, noise)
        res = _bilinear(ws, pad, y, x, base, h, w)
        if out.dtype == np.uint8:
            # A convex combination of values in [0, 255] plus 0.5 truncates to
            # 0..255 (round half up): no clipping pass is needed.
            res += dtype.type(0.5)
        res = res.reshape(y.shape)
        np.copyto(out[i0:i1], res.transpose(1, 0, 2) if elastic else res, casting="unsafe")
    return out


class _AffinePlan:
    """Coordinates of an affine-only warp, pixels in (n, H, W) order."""

    def __init__(self, maps: np.ndarray, shape: tuple[int, int], sub: int, dtype: np.dtype) -> None:
        h, w = shape
        self.shape = shape
        self.basis = _basis(h, w, dtype.str)
        self.maps = maps.astype(dtype)
        offsets = (np.arange(maps.shape[0]) % sub) * float((h + 3) * (w + 3))
        self.bases = offsets.astype(dtype)[:, None, None]

    def coordinates(
        self, ws: _Workspace, i0: int, i1: int, noise: None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source (y, x) in the padded frame and the per-image flat offsets."""
        h, w = self.shape
        b = i1 - i0
        p = b * h * w
        y = ws.y[:p].reshape(b, h, w)
        x = ws.x[:p].reshape(b, h, w)
        # [y; x] (n, H*W) = maps (n, 3) @ [row; col; 1] (3, H*W)
        np.matmul(self.maps[i0:i1, 0], self.basis, out=y.reshape(b, h * w))
        np.matmul(self.maps[i0:i1, 1], self.basis, out=x.reshape(b, h * w))
        return y, x, self.bases[i0:i1]


class _ElasticPlan:
    """Coordinates of an affine + elastic warp, pixels in (H, n, W) order."""

    def __init__(
        self,
        maps: np.ndarray,
        shape: tuple[int, int],
        sub: int,
        dtype: np.dtype,
        alpha: float,
        sigma: float,
        linear_identity: bool,
    ) -> None:
        h, w = shape
        n = maps.shape[0]
        self.shape = shape
        self.linear_identity = linear_identity
        self.g_left, self.g_right_t = filter_pair(h, w, float(sigma), float(alpha), dtype.str)
        # Per-image coefficients as (N, W) rows so every ufunc runs over
        # contiguous data.  Rows 0-1 / 2-3 give the undisplaced coordinates
        # y = [row, 1] @ [a; c*col + e] and x = [row, 1] @ [f; g*col + k].
        names = ("a", "c_col_e", "f", "g_col_k", "c", "g", "base")
        self.rows = _row_terms(maps, w, (h + 3) * (w + 3), sub, dtype, names)
        self.y_coef = self.rows[0:2].reshape(2, n * w)
        self.x_coef = self.rows[2:4].reshape(2, n * w)
        self.row_basis = np.stack([np.arange(h), np.ones(h)], axis=1).astype(dtype)

    def coordinates(
        self, ws: _Workspace, i0: int, i1: int, noise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source (y, x) in the padded frame and the per-image flat offsets."""
        h, w = self.shape
        b = i1 - i0
        p = b * h * w
        y = ws.y[:p].reshape(h, b, w)
        x = ws.x[:p].reshape(h, b, w)
        disp = ws.disp[: 2 * p].reshape(2, h, b, w)
        tmp = ws.tmp[: 2 * p]
        smooth_into(noise[i0:i1], self.g_left, self.g_right_t, tmp=tmp.reshape(2, h, b * w), out=disp)
        cols = slice(i0 * w, i1 * w)
        np.matmul(self.row_basis, self.y_coef[:, cols], out=y.reshape(h, b * w))
        np.matmul(self.row_basis, self.x_coef[:, cols], out=x.reshape(h, b * w))
        coef_a, coef_f, coef_c, coef_g, base = (self.rows[i, None, i0:i1] for i in (0, 2, 4, 5, 6))
        if self.linear_identity:
            y += disp[0]
            x += disp[1]
        else:
            # The displacement mapped through each image's linear part.
            t = tmp[:p].reshape(h, b, w)
            np.multiply(disp[0], coef_a, out=t)
            y += t
            np.multiply(disp[1], coef_c, out=t)
            y += t
            np.multiply(disp[0], coef_f, out=t)
            x += t
            np.multiply(disp[1], coef_g, out=t)
            x += t
        return y, x, base


def _bilinear(
    ws: _Workspace,
    pad: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    base: np.ndarray,
    h: int,
    w: int,
) -> np.ndarray:
    """Bilinear samples of the padded stack at (y, x); zero outside.

    Parameters
    ----------
    ws : _Workspace
        Scratch buffers (``tmp`` and ``disp`` are overwritten).
    pad : numpy.ndarray, shape (b, H + 3, W + 3)
        Source images with a 1-px zero border before and 2 px after.
    y, x : numpy.ndarray, shape (H, b, W) or (b, H, W)
        Source coordinates in the padded frame; overwritten.
    base : numpy.ndarray, broadcastable to ``y``
        Flat offset of each image in ``pad``.
    h, w : int
        Image size.

    Returns
    -------
    numpy.ndarray, shape (y.size,)
        Samples in the pixel order of ``y`` (a view of ``ws.disp``).
    """
    p = y.size
    wp = w + 3
    y0 = ws.tmp[:p].reshape(y.shape)
    x0 = ws.tmp[p : 2 * p].reshape(y.shape)
    _clamp(y, h + 1)
    _clamp(x, w + 1)
    np.floor(y, out=y0)
    np.floor(x, out=x0)
    y -= y0  # fractional parts
    x -= x0
    # Flat index of the top-left tap (exact in float: < 2**24).
    y0 *= wp
    y0 += x0
    y0 += base
    idx = ws.idx[:p]
    np.copyto(idx, y0.reshape(-1), casting="unsafe")
    flat = pad.reshape(-1)
    g0 = ws.tmp[:p]
    g1 = ws.tmp[p : 2 * p]
    g2 = ws.disp[:p]
    g3 = ws.disp[p : 2 * p]
    flat.take(idx, out=g0, mode="wrap")
    flat[1:].take(idx, out=g1, mode="wrap")
    flat[wp:].take(idx, out=g2, mode="wrap")
    flat[wp + 1 :].take(idx, out=g3, mode="wrap")
    fy = y.reshape(-1)
    fx = x.reshape(-1)
    g1 -= g0  # top = g0 + fx * (g1 - g0)
    g1 *= fx
    g1 += g0
    g3 -= g2  # bottom = g2 + fx * (g3 - g2)
    g3 *= fx
    g3 += g2
    g3 -= g1  # result = top + fy * (bottom - top)
    g3 *= fy
    g3 += g1
    return g3


@functools.lru_cache(maxsize=16)
def _basis(h: int, w: int, dtype_str: str) -> np.ndarray:
    """``[row; col; 1]`` of every pixel, shape (3, H*W), read-only."""
    rows, cols = np.indices((h, w))
    basis = np.stack([rows.ravel(), cols.ravel(), np.ones(h * w)]).astype(dtype_str)
    basis.setflags(write=False)
    return basis


# Each row term is P[n] + Q[n] * col with P, Q columns of the extended map
# table built in _row_terms: 0..5 = a, c, e, f, g, k; 6 = 0; 7 = 1; 8 = n * stride.
_TERMS = {
    "a": (0, 6),
    "c": (1, 6),
    "e": (2, 6),
    "f": (3, 6),
    "g": (4, 6),
    "k": (5, 6),
    "col": (6, 7),
    "base": (8, 6),
    "c_col_e": (2, 1),
    "g_col_k": (5, 4),
    "col_k": (5, 7),
}


def _row_terms(
    c: np.ndarray, w: int, stride: int, sub: int, dtype: np.dtype, names: tuple[str, ...]
) -> np.ndarray:
    """Per-image coefficient rows, one (N, W) slab per name, in ``dtype``.

    Parameters
    ----------
    c : numpy.ndarray, shape (N, 2, 3)
        Maps with ``y = a*row + c*col + e`` and ``x = f*row + g*col + k``.
    w : int
        Image width.
    stride : int
        Elements per padded image: ``base`` holds the flat offset of each
        image inside its sub-batch, ``(n % sub) * stride``.
    sub : int
        Sub-batch size.
    dtype : numpy.dtype
        Result dtype.
    names : tuple of str
        Which rows to build (keys of ``_TERMS``), in order.

    Returns
    -------
    numpy.ndarray, shape (len(names), N, W)
        Contiguous.
    """
    n = c.shape[0]
    table = np.empty((9, n))
    table[:6] = c.reshape(n, 6).T
    table[6] = 0.0
    table[7] = 1.0
    table[8] = (np.arange(n) % sub) * float(stride)
    pi, qi = zip(*(_TERMS[name] for name in names))
    k = len(names)
    # [Q P] (k*N, 2) @ [col; 1] (2, W): one small GEMM instead of a broadcast
    # with a W-element inner loop.
    pq = np.stack([table[list(qi)].reshape(-1), table[list(pi)].reshape(-1)], axis=1)
    basis = np.stack([np.arange(w, dtype=np.float64), np.ones(w)])
    return (pq @ basis).reshape(k, n, w).astype(dtype)
