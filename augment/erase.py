"""Random erasing (Cutout): a square of each image set to the background.

DeVries & Taylor's Cutout: with probability ``p`` per image, a square of side
``S`` pixels (an integer uniform in ``[min_side, max_side]``) centred on a pixel
drawn uniformly from the whole image is set to 0, the background of MNIST
(ink is high values).  The centre may lie anywhere, so a square near the border
is partly outside the image and clipped: fewer than ``S * S`` pixels are erased
(at least ``ceil(S / 2) ** 2`` when the image is at least ``S`` wide).  Square
rows are ``[cy - S // 2, cy - S // 2 + S)``, columns likewise.

As for the distortions, the random draws (:func:`draw_boxes`, from an explicit
``numpy.random.Generator``) are kept apart from the pure transform
(:func:`erase_boxes`); :func:`erase` composes them for training batches, and
:func:`augment.expand` draws them per fixed block of variants so that an
expansion does not depend on its chunking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from augment._checks import check_draw_request, check_images, check_number, check_out, check_per_image

__all__ = ["SIDE_RANGE", "Boxes", "Erasing", "draw_boxes", "erase", "erase_boxes", "parse_sides"]

#: Side lengths (pixels, bounds included) that mean something for 28x28 digits:
#: a 28-pixel square centred anywhere covers at least a quarter of the image.
SIDE_RANGE: tuple[int, int] = (1, 28)

_SIDES = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


@dataclass(frozen=True)
class Erasing:
    """Parameters of random erasing (Cutout squares).

    Attributes
    ----------
    p : float
        Probability that an image is erased, in [0, 1] (0: identity).
    min_side, max_side : int
        The square's side is an integer uniform in ``[min_side, max_side]``
        pixels, ``1 <= min_side <= max_side <= 28`` (see :data:`SIDE_RANGE`).
    """

    p: float = 0.5
    min_side: int = 8
    max_side: int = 16

    def __post_init__(self) -> None:
        p = check_number(self.p, name="p")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        lo, hi = SIDE_RANGE
        min_side = check_number(self.min_side, name="min_side", integer=True)
        if not lo <= min_side <= hi:
            raise ValueError(f"min_side must be in [{lo}, {hi}], got {min_side}")
        max_side = check_number(self.max_side, name="max_side", integer=True)
        if not min_side <= max_side <= hi:
            raise ValueError(f"max_side must be in [min_side, {hi}] = [{min_side}, {hi}], got {max_side}")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "min_side", min_side)
        object.__setattr__(self, "max_side", max_side)

    @property
    def size(self) -> str:
        """The side range as text, ``"MIN-MAX"`` (what :func:`parse_sides` reads)."""
        return f"{self.min_side}-{self.max_side}"

    @classmethod
    def from_size(cls, p: float, size: str) -> Erasing:
        """``Erasing(p, *parse_sides(size))``: the side range given as ``"S"`` or ``"MIN-MAX"``."""
        return cls(p, *parse_sides(size))


def parse_sides(size: str, *, name: str = "size") -> tuple[int, int]:
    """Read a side range: ``"S"`` (a fixed side) or ``"MIN-MAX"``, in pixels.

    Parameters
    ----------
    size : str
        For example ``"12"`` or ``"8-16"``.
    name : str
        Name used in error messages.

    Returns
    -------
    tuple of int
        ``(min_side, max_side)`` with ``1 <= min_side <= max_side <= 28``.
    """
    lo, hi = SIDE_RANGE
    match = _SIDES.fullmatch(size) if isinstance(size, str) else None
    if match is not None:
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if lo <= first <= last <= hi:
            return first, last
    raise ValueError(f"{name} must be a side S or a range MIN-MAX of pixels with {lo} <= MIN <= MAX <= {hi}, "
                     f"got {size!r}")


@dataclass(frozen=True, eq=False)
class Boxes:
    """Per-image erased rectangles.

    A box covers rows ``[top, top + height)`` and columns ``[left, left + width)``,
    possibly partly outside the image (the part outside is ignored).

    Attributes
    ----------
    erased : numpy.ndarray of bool, shape (n,)
        Whether the image is erased at all (its box is ignored otherwise).
    top, left : numpy.ndarray of int64, shape (n,)
        First row and column (may be negative).
    height, width : numpy.ndarray of int64, shape (n,)
        Box size in pixels, >= 0.
    """

    erased: np.ndarray
    top: np.ndarray
    left: np.ndarray
    height: np.ndarray
    width: np.ndarray

    def __len__(self) -> int:
        return int(self.erased.shape[0])

    def __getitem__(self, index: slice) -> Boxes:
        """Boxes of a contiguous range of images (``index`` must be a slice)."""
        if not isinstance(index, slice):
            raise ValueError(f"Boxes can only be sliced, got {type(index).__name__}")
        return Boxes(self.erased[index], self.top[index], self.left[index], self.height[index], self.width[index])

    @staticmethod
    def concatenate(parts: list[Boxes]) -> Boxes:
        """Join boxes along the image axis (``parts`` non-empty)."""
        if len(parts) == 1:
            return parts[0]
        return Boxes(*(np.concatenate([getattr(p, f) for p in parts])
                       for f in ("erased", "top", "left", "height", "width")))


def draw_boxes(erasing: Erasing, rng: np.random.Generator, n: int, shape: tuple[int, int]) -> Boxes:
    """Draw the Cutout squares of ``n`` images of ``shape``.

    Every image consumes the same random numbers whatever is drawn, in the fixed
    order: ``n`` uniforms (erased if below ``p``), ``n`` sides, ``n`` centre rows,
    ``n`` centre columns.

    Parameters
    ----------
    erasing : Erasing
        What to draw.
    rng : numpy.random.Generator
        Source of randomness (advanced by the call).
    n : int
        Number of images.
    shape : tuple of int
        ``(H, W)`` of the images; centres are uniform over its pixels.

    Returns
    -------
    Boxes
        Arrays of length ``n``; ``height == width`` (squares).
    """
    if not isinstance(erasing, Erasing):
        raise ValueError(f"erasing must be an Erasing, got {type(erasing).__name__}")
    n = check_draw_request(rng, n)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got {shape}")
    h, w = (int(v) for v in shape)
    erased = rng.random(n) < erasing.p
    sides = rng.integers(erasing.min_side, erasing.max_side + 1, size=n, dtype=np.int64)
    rows = rng.integers(0, h, size=n, dtype=np.int64)
    cols = rng.integers(0, w, size=n, dtype=np.int64)
    return Boxes(erased, rows - sides // 2, cols - sides // 2, sides, sides.copy())


def erase_boxes(images: np.ndarray, boxes: Boxes, *, out: np.ndarray | None = None) -> np.ndarray:
    """Set each erased image's box to 0, the background (pure: no randomness).

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    boxes : Boxes
        N boxes, from :func:`draw_boxes` or built by hand; the part of a box
        outside the image is ignored.
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images`` (may be ``images`` itself).

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        The images with their boxes zeroed, same dtype; every other pixel is
        copied exactly.
    """
    images = check_images(images)
    n, h, w = images.shape
    if not isinstance(boxes, Boxes):
        raise ValueError(f"boxes must be a Boxes, got {type(boxes).__name__}")
    erased = np.asarray(boxes.erased)
    if erased.shape != (n,) or erased.dtype != bool:
        raise ValueError(f"boxes.erased must be booleans of shape (N,) = ({n},), got {erased.dtype} {erased.shape}")
    top, left, height, width = (check_per_image(getattr(boxes, f), n, (), name=f"boxes.{f}", integer=True)
                                for f in ("top", "left", "height", "width"))
    if (height < 0).any() or (width < 0).any():
        raise ValueError("boxes.height and boxes.width must be >= 0")
    out = check_out(out, images.shape, images.dtype)
    if out is not images:
        np.copyto(out, images)
    y0, y1 = np.clip(top, 0, h), np.clip(top + height, 0, h)
    x0, x1 = np.clip(left, 0, w), np.clip(left + width, 0, w)
    for i in np.flatnonzero(erased):
        out[i, y0[i] : y1[i], x0[i] : x1[i]] = 0
    return out


def erase(
    images: np.ndarray,
    erasing: Erasing,
    rng: np.random.Generator,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Randomly erase a batch: ``erase_boxes(images, draw_boxes(erasing, rng, N, (H, W)))``.

    Meant for on-the-fly augmentation of training batches.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    erasing : Erasing
        What to do.
    rng : numpy.random.Generator
        Source of randomness (advanced by the call).
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images`` (may be ``images`` itself).

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Erased images, same dtype as ``images``.
    """
    images = check_images(images)
    n, h, w = images.shape
    return erase_boxes(images, draw_boxes(erasing, rng, n, (h, w)), out=out)
