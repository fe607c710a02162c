"""Apply a :class:`~augment.distortion.Distortion` to a batch of images."""

from __future__ import annotations

import numpy as np

from augment._checks import check_images, check_out
from augment.affine import _affine_elastic
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
    affine + elastic bilinear resampling.  Only the transforms switched on in
    ``distortion`` are applied, whatever ``draws`` holds for the others.

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
    if not isinstance(distortion, Distortion):
        raise ValueError(f"distortion must be a Distortion, got {type(distortion).__name__}")
    n, h, w = images.shape
    on = distortion.transforms
    elastic = "elastic" in on
    _check_draws(draws, n, (h, w), need_noise=elastic)
    out = check_out(out, images.shape, images.dtype)
    if not on:
        np.copyto(out, images)
        return out
    if distortion.shift_only:
        return shift_images(images, draws.shifts, out=out)
    # Transforms that are off are ignored even if the draws hold values.
    return _affine_elastic(
        images,
        draws.angles if "rotate" in on else np.zeros(n),
        draws.scales if "scale" in on else np.ones(n),
        draws.shifts if "shift" in on else np.zeros((n, 2), dtype=np.int64),
        draws.noise if elastic else None,
        distortion.alpha,
        distortion.sigma,
        out,
    )


def _check_draws(draws: Draws, n: int, shape: tuple[int, int], *, need_noise: bool) -> None:
    """Cheap shape / dtype checks of ``draws`` for ``n`` images of ``shape``."""
    if not isinstance(draws, Draws):
        raise ValueError(f"draws must be a Draws, got {type(draws).__name__}")
    if draws.angles.shape != (n,):
        raise ValueError(f"draws has {draws.angles.shape[0]} entries for {n} images")
    if draws.scales.shape != (n,) or draws.shifts.shape != (n, 2):
        raise ValueError(
            f"draws.scales / draws.shifts must have shapes ({n},) / ({n}, 2), "
            f"got {draws.scales.shape} / {draws.shifts.shape}"
        )
    if not np.issubdtype(draws.shifts.dtype, np.integer):
        raise ValueError(f"draws.shifts must be integers, got dtype {draws.shifts.dtype}")
    if not (np.isfinite(draws.angles).all() and np.isfinite(draws.scales).all()):
        raise ValueError("draws.angles and draws.scales must be finite")
    if (draws.scales <= 0).any():
        raise ValueError("draws.scales must be > 0")
    if need_noise:
        if draws.noise is None:
            raise ValueError("draws.noise is None but the distortion is elastic")
        if draws.noise.shape != (n, 2, *shape):
            raise ValueError(
                f"draws.noise must have shape (N, 2, H, W) = {(n, 2, *shape)}, "
                f"got {draws.noise.shape}"
            )
        if not np.issubdtype(draws.noise.dtype, np.floating):
            raise ValueError(f"draws.noise must be floating, got dtype {draws.noise.dtype}")


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
