"""Random draws for a :class:`~augment.distortion.Distortion`.

All randomness of the package lives here and comes from an explicit
``numpy.random.Generator``; the transforms themselves are pure functions of
the images and these arrays, so tests can pin them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from augment._checks import check_draw_request
from augment.distortion import Distortion

__all__ = ["Draws", "draw", "draw_angles", "draw_noise", "draw_scales", "draw_shifts"]


@dataclass(frozen=True, eq=False)
class Draws:
    """Per-image random parameters of a distortion.

    Attributes
    ----------
    shifts : numpy.ndarray of int64, shape (n, 2)
        ``(dy, dx)``; zeros when shifting is off.
    angles : numpy.ndarray of float64, shape (n,)
        Degrees; zeros when rotation is off.
    scales : numpy.ndarray of float64, shape (n,)
        Zoom factors; ones when scaling is off.
    noise : numpy.ndarray of float32, shape (n, 2, H, W), or None
        Elastic noise in [-1, 1); None when elastic is off.
    """

    shifts: np.ndarray
    angles: np.ndarray
    scales: np.ndarray
    noise: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.angles.shape[0])

    def __getitem__(self, index: slice) -> Draws:
        """Draws of a contiguous range of images (``index`` must be a slice)."""
        if not isinstance(index, slice):
            raise ValueError(f"Draws can only be sliced, got {type(index).__name__}")
        noise = None if self.noise is None else self.noise[index]
        return Draws(self.shifts[index], self.angles[index], self.scales[index], noise)

    @staticmethod
    def concatenate(parts: list[Draws]) -> Draws:
        """Join draws along the image axis (keeps the fast noise layout).

        Parameters
        ----------
        parts : list of Draws
            Non-empty; all with noise or all without.

        Returns
        -------
        Draws
            The concatenation.
        """
        if len(parts) == 1:
            return parts[0]
        noise = None
        if parts[0].noise is not None:
            # Concatenate in the (2, H, n, W) memory layout used by draw_noise.
            layout = [p.noise.transpose(1, 2, 0, 3) for p in parts]
            noise = np.concatenate(layout, axis=2).transpose(2, 0, 1, 3)
        return Draws(
            np.concatenate([p.shifts for p in parts]),
            np.concatenate([p.angles for p in parts]),
            np.concatenate([p.scales for p in parts]),
            noise,
        )


def draw_shifts(rng: np.random.Generator, n: int, max_shift: int) -> np.ndarray:
    """Integer shifts, each axis uniform in ``[-max_shift, max_shift]``.

    Returns
    -------
    numpy.ndarray of int64, shape (n, 2)
    """
    return rng.integers(-max_shift, max_shift + 1, size=(n, 2), dtype=np.int64)


def draw_angles(rng: np.random.Generator, n: int, max_rotation: float) -> np.ndarray:
    """Angles in degrees, uniform in ``[-max_rotation, max_rotation)``.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    return rng.uniform(-max_rotation, max_rotation, size=n)


def draw_scales(rng: np.random.Generator, n: int, max_scale: float) -> np.ndarray:
    """Zoom factors uniform in ``[1 - max_scale, 1 + max_scale)``.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    return rng.uniform(1.0 - max_scale, 1.0 + max_scale, size=n)


# Bit generators whose ``random_raw`` yields 64 random bits per call.
_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


def draw_noise(
    rng: np.random.Generator, n: int, shape: tuple[int, int], *, out: np.ndarray | None = None
) -> np.ndarray:
    """Elastic noise fields, i.i.d. uniform in (-1, 1), float32.

    With a 64-bit bit generator (PCG64, the default) every raw 64-bit output
    is cut into four 16-bit integers ``k`` giving ``(k + 1/2) / 2**15 - 1``:
    a uniform distribution on 65,536 levels symmetric about 0 (mean 0,
    variance 1/3 to 2e-10).  That is about 2.5 times faster than
    ``Generator.random(dtype=float32)`` and, once smoothed by the Gaussian,
    indistinguishable from continuous noise (a level is 3e-5 wide).  Other bit
    generators fall back to ``2 * Generator.random(dtype=float32) - 1``.

    The values live in a (2, H, n, W) buffer and are returned as a transposed
    view so that the smoothing GEMMs need no copy.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n : int
        Number of images.
    shape : tuple of int
        ``(H, W)``.
    out : numpy.ndarray of float32, optional
        Contiguous buffer of ``2 * H * n * W`` values to fill (and return a
        view of) instead of allocating one; lets a loop reuse its memory.

    Returns
    -------
    numpy.ndarray of float32, shape (n, 2, H, W)
        ``noise[:, 0]`` displaces rows (dy), ``noise[:, 1]`` columns (dx).
    """
    h, w = shape
    size = 2 * h * n * w
    if out is None:
        buf = np.empty(size, dtype=np.float32)
    else:
        if out.dtype != np.float32 or out.size != size or not out.flags.c_contiguous:
            raise ValueError(f"out must be a contiguous float32 array of {size} values")
        buf = out.reshape(-1)
    if isinstance(rng.bit_generator, _RAW64):
        raw = rng.bit_generator.random_raw((size + 3) // 4)
        np.copyto(buf, raw.view(np.uint16)[:size], casting="safe")
        buf *= np.float32(2.0**-15)
        buf += np.float32(2.0**-16 - 1.0)
    else:
        rng.random(out=buf, dtype=np.float32)
        buf *= np.float32(2.0)
        buf -= np.float32(1.0)
    return buf.reshape(2, h, n, w).transpose(2, 0, 1, 3)


def draw(
    distortion: Distortion,
    rng: np.random.Generator,
    n: int,
    shape: tuple[int, int],
    *,
    noise_out: np.ndarray | None = None,
) -> Draws:
    """Draw the random parameters of ``n`` distortions of (H, W) images.

    Only the enabled transforms consume random numbers, in the fixed order
    shifts, angles, scales, noise.

    Parameters
    ----------
    distortion : Distortion
        What to draw.
    rng : numpy.random.Generator
        Source of randomness.
    n : int
        Number of images.
    shape : tuple of int
        ``(H, W)`` of the images.
    noise_out : numpy.ndarray of float32, optional
        Buffer for the elastic noise (see :func:`draw_noise`).

    Returns
    -------
    Draws
        Arrays of length ``n``.
    """
    if not isinstance(distortion, Distortion):
        raise ValueError(f"distortion must be a Distortion, got {type(distortion).__name__}")
    n = check_draw_request(rng, n)
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape}")
    on = set(distortion.transforms)
    shifts = (
        draw_shifts(rng, n, distortion.max_shift)
        if "shift" in on
        else np.zeros((n, 2), dtype=np.int64)
    )
    angles = draw_angles(rng, n, distortion.max_rotation) if "rotate" in on else np.zeros(n)
    scales = draw_scales(rng, n, distortion.max_scale) if "scale" in on else np.ones(n)
    noise = draw_noise(rng, n, tuple(shape), out=noise_out) if "elastic" in on else None
    return Draws(shifts, angles, scales, noise)
