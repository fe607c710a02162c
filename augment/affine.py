"""Rotation, zoom and shift about the image centre, optionally after elastic noise.

The public entry points build the per-image affine maps and hand them to the
single-pass engine :func:`augment.warp.warp`.
"""

from __future__ import annotations

import numpy as np

from augment._checks import check_images, check_number, check_out, check_per_image, work_dtype
from augment.warp import warp

__all__ = ["affine_coefficients", "affine_elastic", "rotate_images"]


def _snap(v: np.ndarray) -> np.ndarray:
    """Round cos / sin values within 1e-12 of -1, 0 or 1 to that value."""
    r = np.round(v)
    return np.where(np.abs(v - r) < 1e-12, r, v)


def affine_coefficients(
    angles: np.ndarray, scales: np.ndarray, shifts: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Inverse affine maps (output position -> source position) about the centre.

    The forward transform rotates the content counter-clockwise as displayed
    (row axis pointing down) by ``angle`` degrees, zooms it by ``scale`` about
    the centre ``((H-1)/2, (W-1)/2)`` and then moves it by ``(dy, dx)``.  The
    returned map is its inverse, used to sample the source.

    Parameters
    ----------
    angles : numpy.ndarray, shape (N,)
        Degrees, counter-clockwise (same sense as ``scipy.ndimage.rotate``).
    scales : numpy.ndarray, shape (N,)
        Zoom factors, > 0 (> 1 enlarges).
    shifts : numpy.ndarray, shape (N, 2)
        ``(dy, dx)`` translations in pixels.
    shape : tuple of int
        ``(H, W)`` of the images.

    Returns
    -------
    numpy.ndarray, shape (N, 2, 3)
        float64 ``C`` with ``source_yx = C[:, :, :2] @ (y, x) + C[:, :, 2]``.
    """
    h, w = shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rad = np.deg2rad(np.asarray(angles, dtype=np.float64))
    cos = _snap(np.cos(rad))
    sin = _snap(np.sin(rad))
    inv = 1.0 / np.asarray(scales, dtype=np.float64)
    shifts = np.asarray(shifts, dtype=np.float64)
    coefs = np.empty((rad.shape[0], 2, 3), dtype=np.float64)
    coefs[:, 0, 0] = cos * inv
    coefs[:, 0, 1] = sin * inv
    coefs[:, 1, 0] = -sin * inv
    coefs[:, 1, 1] = cos * inv
    # source = c + A (p - t - c)  =>  offset = c - A (t + c)
    ty = shifts[:, 0] + cy
    tx = shifts[:, 1] + cx
    coefs[:, 0, 2] = cy - (coefs[:, 0, 0] * ty + coefs[:, 0, 1] * tx)
    coefs[:, 1, 2] = cx - (coefs[:, 1, 0] * ty + coefs[:, 1, 1] * tx)
    return coefs


def affine_elastic(
    images: np.ndarray,
    angles: np.ndarray,
    scales: np.ndarray,
    shifts: np.ndarray,
    noise: np.ndarray | None = None,
    *,
    alpha: float = 34.0,
    sigma: float = 4.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Random-affine plus elastic distortion in one bilinear resampling.

    Output pixel ``p`` samples the source at ``M(p + d(p))`` where ``d`` is
    Simard's elastic displacement ``alpha * gaussian_filter(noise, sigma,
    mode='constant')`` and ``M`` the inverse of the affine map described in
    :func:`affine_coefficients` (Ciresan et al. style).  Zero fill outside.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    angles : array_like, shape (N,)
        Rotation in degrees, counter-clockwise as displayed.
    scales : array_like, shape (N,)
        Zoom factors, > 0.
    shifts : array_like of int or float, shape (N, 2)
        ``(dy, dx)`` translations in pixels.
    noise : numpy.ndarray, shape (N, 2, H, W), optional
        Elastic noise (dy, dx fields, typically uniform in [-1, 1]); None for a
        purely affine warp.
    alpha : float
        Elastic strength in pixels, >= 0.
    sigma : float
        Gaussian smoothing width in pixels, > 0.
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Same dtype as ``images``; uint8 rounded and clipped to 0..255.
    """
    images = check_images(images)
    n, h, w = images.shape
    angles = check_per_image(angles, n, (), name="angles")
    scales = check_per_image(scales, n, (), name="scales")
    if (scales <= 0).any():
        raise ValueError("scales must be > 0")
    shifts = check_per_image(shifts, n, (2,), name="shifts")
    alpha = check_number(alpha, name="alpha")
    sigma = check_number(sigma, name="sigma")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if noise is not None:
        noise = check_noise(noise, images.shape)
    out = check_out(out, images.shape, images.dtype)
    return _affine_elastic(images, angles, scales, shifts, noise, alpha, sigma, out)


def _affine_elastic(
    images: np.ndarray,
    angles: np.ndarray,
    scales: np.ndarray,
    shifts: np.ndarray,
    noise: np.ndarray | None,
    alpha: float,
    sigma: float,
    out: np.ndarray,
) -> np.ndarray:
    """:func:`affine_elastic` on already validated arguments (package-internal)."""
    n, h, w = images.shape
    if n == 0:
        return out
    coefs = affine_coefficients(angles, scales, shifts, (h, w))
    identity = bool((coefs[:, :, :2] == np.eye(2)).all())
    return warp(
        images,
        coefs,
        noise,
        alpha=alpha,
        sigma=sigma,
        linear_identity=identity,
        dtype=work_dtype(images.dtype),
        out=out,
    )


def rotate_images(
    images: np.ndarray, angles: np.ndarray, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Rotate each image about its centre, bilinear, zero fill.

    Same direction as ``scipy.ndimage.rotate(img, angle, reshape=False,
    order=1)``: counter-clockwise as displayed with the row axis pointing down.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    angles : array_like, shape (N,)
        Degrees.
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Rotated images, same dtype as ``images``.
    """
    images = check_images(images)
    n = images.shape[0]
    angles = check_per_image(angles, n, (), name="angles")
    return affine_elastic(
        images, angles, np.ones(n), np.zeros((n, 2)), None, alpha=0.0, out=out
    )


def check_noise(noise: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Check elastic noise has shape (N, 2, H, W) and a floating dtype.

    Parameters
    ----------
    noise : array_like, shape (N, 2, H, W)
        Noise fields.
    image_shape : tuple of int
        ``(N, H, W)`` of the images it goes with.

    Returns
    -------
    numpy.ndarray, shape (N, 2, H, W)
        The noise as an array (layout kept).
    """
    noise = np.asarray(noise)
    n, h, w = image_shape
    if noise.shape != (n, 2, h, w):
        raise ValueError(f"noise must have shape (N, 2, H, W) = {(n, 2, h, w)}, got {noise.shape}")
    if not np.issubdtype(noise.dtype, np.floating):
        raise ValueError(f"noise must be floating, got dtype {noise.dtype}")
    return noise
