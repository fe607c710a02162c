"""Simard et al. (2003) elastic distortion.

Noise fields ``dx, dy ~ U(-1, 1)`` per pixel are smoothed by a Gaussian of
width ``sigma`` (zero boundary), scaled by ``alpha`` and used as a per-pixel
displacement: output ``(y, x)`` samples the source at ``(y + dy, x + dx)``
bilinearly with zero fill.
"""

from __future__ import annotations

import numpy as np

from augment._checks import check_images, check_number
from augment.affine import affine_elastic, check_noise
from augment.smoothing import smooth_fields

__all__ = ["displacement_fields", "elastic_distort"]


def elastic_distort(
    images: np.ndarray,
    noise: np.ndarray,
    *,
    alpha: float = 34.0,
    sigma: float = 4.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Elastically distort each image with its own noise fields.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    noise : numpy.ndarray, shape (N, 2, H, W)
        Raw noise, ``noise[:, 0]`` for dy (rows) and ``noise[:, 1]`` for dx;
        see :func:`augment.draws.draw_noise`.
    alpha : float
        Displacement scale in pixels, >= 0; 0 returns the images unchanged.
    sigma : float
        Gaussian smoothing width in pixels, > 0.
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Distorted images, same dtype as ``images``.
    """
    images = check_images(images)
    n = images.shape[0]
    noise = check_noise(noise, images.shape)
    return affine_elastic(
        images, np.zeros(n), np.ones(n), np.zeros((n, 2)), noise, alpha=alpha, sigma=sigma, out=out
    )


def displacement_fields(
    noise: np.ndarray, *, alpha: float = 34.0, sigma: float = 4.0
) -> np.ndarray:
    """Elastic displacement ``alpha * gaussian_filter(noise, sigma, mode='constant')``.

    Parameters
    ----------
    noise : numpy.ndarray, shape (N, 2, H, W)
        Raw noise fields.
    alpha : float
        Scale in pixels, >= 0.
    sigma : float
        Gaussian width in pixels, > 0.

    Returns
    -------
    numpy.ndarray, shape (N, 2, H, W)
        (dy, dx) displacement in pixels, float32 (float64 for float64 noise),
        exactly as used by :func:`elastic_distort`.
    """
    noise = np.asarray(noise)
    if noise.ndim != 4 or noise.shape[1] != 2:
        raise ValueError(f"noise must have shape (N, 2, H, W), got {noise.shape}")
    alpha = check_number(alpha, name="alpha")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return smooth_fields(noise, sigma, scale=alpha)
