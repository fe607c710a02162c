"""Fixed, non-random views of a stack for test-time augmentation (TTA).

A view is a whole-pixel shift ``(dy, dx)`` followed by a rotation of ``angle``
degrees about the centre. A classifier's probabilities are averaged over the views
of each digit; which views help is measured on validation digits (see docs/results.md).
Nothing here draws random numbers: the same images give the same views.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from augment._checks import check_images
from augment.affine import rotate_images
from augment.shift import NIELSEN_SHIFTS, shift_images

__all__ = ["TTA_ANGLE", "TTA_VIEWS", "View", "apply_view", "view_stack"]


class View(NamedTuple):
    """One deterministic view: shift by ``(dy, dx)`` pixels, then rotate by ``angle`` degrees."""

    dy: int = 0
    dx: int = 0
    angle: float = 0.0


IDENTITY = View()
#: Rotation of the rotated views, in degrees (inside the training distortion's 8).
TTA_ANGLE = 5.0

#: The named view sets; the first view of each is the digit itself.
TTA_VIEWS: dict[str, tuple[View, ...]] = {
    "none": (IDENTITY,),
    "shift": (IDENTITY, *(View(dy, dx) for dy, dx in NIELSEN_SHIFTS)),
    "rotate": (IDENTITY, View(angle=-TTA_ANGLE), View(angle=TTA_ANGLE)),
    "shift-rotate": (IDENTITY, *(View(dy, dx) for dy, dx in NIELSEN_SHIFTS),
                     View(angle=-TTA_ANGLE), View(angle=TTA_ANGLE)),
}


def apply_view(images: np.ndarray, view: View) -> np.ndarray:
    """``images`` seen through ``view``.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    view : View
        The shift (exact, zero fill) and rotation (bilinear, zero fill) to apply.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        A new array with the dtype of ``images`` (the identity view is a copy).
    """
    images = check_images(images)
    n = images.shape[0]
    out = shift_images(images, np.tile(np.array([[view.dy, view.dx]]), (n, 1)))
    if view.angle:
        out = rotate_images(out, np.full(n, float(view.angle)))
    return out


def view_stack(images: np.ndarray, views: str | tuple[View, ...] = "shift") -> np.ndarray:
    """Every view of every image, shape (V, N, H, W).

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    views : str or tuple of View, default "shift"
        A name in :data:`TTA_VIEWS` or the views themselves.

    Raises
    ------
    ValueError
        An unknown view-set name, or no views.
    """
    if isinstance(views, str):
        if views not in TTA_VIEWS:
            raise ValueError(f"views must be one of {', '.join(TTA_VIEWS)}, got {views!r}")
        views = TTA_VIEWS[views]
    if not views:
        raise ValueError("views must hold at least one view")
    return np.stack([apply_view(images, view) for view in views])

