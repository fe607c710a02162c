"""The resampling engine: one coordinate map, one bilinear lookup per pixel.

Output pixel ``p = (y, x)`` samples the source at ``A_n (p + d(p)) + b_n`` where
``d`` is an optional elastic displacement (``alpha`` times the Gaussian-smoothed
noise) and ``(A_n, b_n)`` a per-image affine map.  Samples outside the image
read zeros (bilinear interpolation against a zero border, like
``scipy.ndimage.map_coordinates(order=1, mode='grid-constant')``).

Speed notes.  Images are processed in sub-batches of :data:`SUB_BATCH` so the
working set stays in the L2 cache, with per-thread scratch buffers reused
across calls (no page faults in the hot loop).  Pixels are laid out (H, n, W)
so the smoothed fields come out of the GEMMs without a transpose.  Coordinates
are clipped to the one-pixel border of a stack padded 1 px before and 2 px
after, so the four bilinear taps are gathers from four offset views of the
same flat buffer with one index array and no masks.
"""

from __future__ import annotations

import threading

import numpy as np

from augment.smoothing import filter_pair, smooth_into

__all__ = ["SUB_BATCH", "warp"]

#: Images per inner pass; keeps about 2 MB of float32 scratch per thread.
SUB_BATCH = 64

_local = threading.local()


class _Workspace:
    """Per-thread scratch buffers for one (H, W, dtype, batch) combination."""

    def __init__(self, h: int, w: int, dtype: np.dtype, batch: int) -> None:
        p = batch * h * w
        self.pad = np.zeros((batch, h + 3, w + 3), dtype=dtype)  # borders stay 0
        self.disp = np.empty(2 * p, dtype=dtype)
        self.smooth_tmp = np.empty(2 * p, dtype=dtype)
        self.y = np.empty(p, dtype=dtype)
        self.x = np.empty(p, dtype=dtype)
        self.y0 = np.empty(p, dtype=dtype)
        self.x0 = np.empty(p, dtype=dtype)
        self.idx = np.empty(p, dtype=np.intp)


def _workspace(h: int, w: int, dtype: np.dtype, batch: int) -> _Workspace:
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
    hp, wp = h + 3, w + 3
    sub = min(SUB_BATCH, max(n, 1))
    ws = _workspace(h, w, dtype, sub)
    to_uint8 = out.dtype == np.uint8
    elastic = noise is not None and alpha != 0.0
    if elastic:
        g_left, g_right_t = filter_pair(h, w, float(sigma), float(alpha), dtype.str)
    row_grid = np.arange(h, dtype=dtype)[:, None, None]  # (H, 1, 1)
    # +1: coordinates are taken in the padded frame (1 px of zeros before).
    shifted = coefs.copy()
    shifted[:, :, 2] += 1.0
    if not elastic:
        names = ("a", "f", "c_col_e", "g_col_k", "base")
    elif linear_identity:
        names = ("e", "col_k", "base")
    else:
        names = ("a", "c", "e", "f", "g", "k", "col", "base")
    all_terms = _row_terms(shifted, w, hp * wp, sub, dtype, names)
    for i0 in range(0, n, sub):
        i1 = min(n, i0 + sub)
        b = i1 - i0
        p = b * h * w
        pad = ws.pad[:b]
        np.copyto(pad[:, 1 : h + 1, 1 : w + 1], images[i0:i1], casting="unsafe")
        y = ws.y[:p].reshape(h, b, w)
        x = ws.x[:p].reshape(h, b, w)
        y0 = ws.y0[:p].reshape(h, b, w)
        x0 = ws.x0[:p].reshape(h, b, w)
        # Per-image coefficients expanded to (1, b, W) rows, so that every
        # ufunc below runs over contiguous b * W (or H * b * W) elements.
        terms = {name: v[:, i0:i1] for name, v in all_terms.items()}
        if not elastic:
            # y = a * row + (c * col + e): two passes per coordinate.
            np.multiply(row_grid, terms["a"], out=y)
            y += terms["c_col_e"]
            np.multiply(row_grid, terms["f"], out=x)
            x += terms["g_col_k"]
        else:
            disp = ws.disp[: 2 * p].reshape(2, h, b, w)
            smooth_into(
                noise[i0:i1],
                g_left,
                g_right_t,
                tmp=ws.smooth_tmp[: 2 * p].reshape(2, h, b * w),
                out=disp,
            )
            if linear_identity:
                # y = (row + dy) + e, x = dx + (col + k)
                np.add(disp[0], row_grid, out=y)
                y += terms["e"]
                np.add(disp[1], terms["col_k"], out=x)
            else:
                # q = (row + dy, col + dx); y = a qy + c qx + e; x = f qy + g qx + k
                qy = disp[0]
                qx = disp[1]
                qy += row_grid
                qx += terms["col"]
                tmp = y0
                np.multiply(qy, terms["a"], out=y)
                np.multiply(qx, terms["c"], out=tmp)
                y += tmp
                y += terms["e"]
                np.multiply(qy, terms["f"], out=x)
                np.multiply(qx, terms["g"], out=tmp)
                x += tmp
                x += terms["k"]
        np.clip(y, 0, h + 1, out=y)
        np.clip(x, 0, w + 1, out=x)
        np.floor(y, out=y0)
        np.floor(x, out=x0)
        y -= y0  # fractional parts
        x -= x0
        # Flat index of the top-left tap in the padded stack (exact in float).
        y0 *= wp
        y0 += x0
        y0 += terms["base"]
        idx = ws.idx[:p]
        np.copyto(idx, y0.reshape(-1), casting="unsafe")
        flat = pad.reshape(-1)
        g0 = ws.smooth_tmp[:p]
        g1 = ws.smooth_tmp[p : 2 * p]
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
        if to_uint8:
            g3 += 0.5
            np.clip(g3, 0.0, 255.0, out=g3)  # then truncation = round half up
        np.copyto(out[i0:i1], g3.reshape(h, b, w).transpose(1, 0, 2), casting="unsafe")
    return out


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
) -> dict[str, np.ndarray]:
    """Per-image coefficient rows of shape (1, N, W) in ``dtype``.

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
        Which rows to build (keys of ``_TERMS``).

    Returns
    -------
    dict of str to numpy.ndarray, each shape (1, N, W)
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
    rows = (pq @ basis).reshape(k, n, w).astype(dtype)
    return {name: rows[i][None] for i, name in enumerate(names)}
