"""Apply a :class:`~augment.distortion.Distortion` to a batch of images."""

from __future__ import annotations

import numpy as np

from augment._checks import check_images, check_out
from augment.affine import affine_elastic
from augment.distortion import Distortion
from augment.draws import Draws, draw
from augment.shift import shift_images

__all__ = ["apply", "distort"]


def apply(
    images: np.ndarray,
    draws: Draws,
    distortion: Distortion,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Apply drawn distortions to a batch (pure: no randomness).

    A pure shift uses the exact slice path; anything else goes through one
    affine + elastic bilinear resampling.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    draws : Draws
        Parameters of length N, from :func:`augment.draws.draw`.
    distortion : Distortion
        Which transforms are on, plus ``alpha`` and ``sigma``.
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Distorted images, same dtype as ``images``.
    """
    images = check_images(images)
    if not isinstance(draws, Draws):
        raise ValueError(f"draws must be a Draws, got {type(draws).__name__}")
    if not isinstance(distortion, Distortion):
        raise ValueError(f"distortion must be a Distortion, got {type(distortion).__name__}")
    if len(draws) != images.shape[0]:
        raise ValueError(f"draws has {len(draws)} entries for {images.shape[0]} images")
    on = set(distortion.transforms)
    if not on:
        out = check_out(out, images.shape, images.dtype)
        np.copyto(out, images)
        return out
    if distortion.shift_only:
        return shift_images(images, draws.shifts, out=out)
    noise = draws.noise if "elastic" in on else None
    if "elastic" in on and noise is None:
        raise ValueError("draws.noise is None but the distortion is elastic")
    return affine_elastic(
        images,
        draws.angles,
        draws.scales,
        draws.shifts,
        noise,
        alpha=distortion.alpha,
        sigma=distortion.sigma,
        out=out,
    )


def distort(
    images: np.ndarray,
    distortion: Distortion,
    rng: np.random.Generator,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Randomly distort a batch: ``apply(images, draw(distortion, rng, N, (H, W)), distortion)``.

    Meant for on-the-fly augmentation of training batches.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    distortion : Distortion
        What to do.
    rng : numpy.random.Generator
        Source of randomness (advanced by the call).
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Distorted images, same dtype as ``images``.
    """
    images = check_images(images)
    n, h, w = images.shape
    return apply(images, draw(distortion, rng, n, (h, w)), distortion, out=out)
