"""Input normalizations of MNIST-like digits: deskewing and width normalization.

Pure, deterministic (no random numbers) and batch-first: an (N, H, W) uint8 or
floating stack in, a new stack of the same shape and dtype out.  Blank images
(no ink) come back unchanged.

Conventions.  Pixel ``(y, x)`` (row, column) has its centre at integer
coordinates and covers ``[y - 0.5, y + 0.5] x [x - 0.5, x + 0.5]``; the image
centre is ``((H - 1) / 2, (W - 1) / 2)``, (13.5, 13.5) for 28 x 28 (as in
:mod:`augment.affine`).  The "centre of mass" is the intensity-weighted mean
pixel position.  x grows to the right, y downwards.

* :func:`deskew` -- the classic moment deskewing (LeCun's MNIST page): shear each
  digit by ``alpha = cov(x, y) / var(y)`` about its centre of mass so it stands
  upright, and move the centre of mass to the image centre; one bilinear
  resampling through :func:`augment.warp.warp`.
* :func:`width_normalize` -- Ciresan, Meier & Schmidhuber (2012): scale the ink's
  bounding box to ``width`` x 20 pixels (area resampling) and place it with the
  centre of mass at the centre (to within half a pixel: the box lands on whole
  pixels).
* :data:`NORMALIZATIONS`, :func:`get_normalization`, :func:`normalize` -- the
  named normalizations (``none``, ``deskew``, ``width-8`` .. ``width-20``) that a
  member's ``normalize`` option names.

Helpers :func:`ink_moments`, :func:`skew` and :func:`ink_box` give the measures
the transforms use (and that their tests check).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from augment._checks import check_images, check_number, check_out, work_dtype
from augment.warp import warp

__all__ = [
    "INK_THRESHOLD",
    "MNIST_BOX",
    "NORMALIZATIONS",
    "WIDTHS",
    "deskew",
    "get_normalization",
    "ink_box",
    "ink_moments",
    "normalize",
    "skew",
    "width_normalize",
]

#: Side of the box MNIST fitted its digits into (20 x 20): the height of a width-normalized digit.
MNIST_BOX = 20
#: The widths of the named width normalizations, ``width-8`` .. ``width-20``.
WIDTHS: tuple[int, ...] = tuple(range(8, 21))
#: A pixel is ink when brighter than this fraction of its image's brightest pixel.
INK_THRESHOLD = 0.1

# Images per pass: bounds the temporaries (a few MB) and keeps them in cache.
_CHUNK = 512
# Below this row variance (px^2) an image has no vertical extent to shear along.
_MIN_VARIANCE = 1e-6


def _check_ink(images: np.ndarray) -> np.ndarray:
    """:func:`check_images` plus finite, non-negative floating intensities."""
    images = check_images(images)
    if images.dtype != np.uint8 and images.size:
        if not np.isfinite(images).all():
            raise ValueError("images must be finite")
        if images.min() < 0:
            raise ValueError("images must be >= 0 (ink intensities)")
    return images


@functools.lru_cache(maxsize=8)
def _moment_basis(h: int, w: int) -> np.ndarray:
    """``[1, y, x, y^2, x*y, x^2]`` of every pixel about the image centre, shape (H*W, 6)."""
    yy, xx = np.indices((h, w), dtype=np.float64)
    yy = (yy - (h - 1) / 2.0).ravel()
    xx = (xx - (w - 1) / 2.0).ravel()
    basis = np.stack([np.ones_like(yy), yy, xx, yy * yy, xx * yy, xx * xx], axis=1)
    basis.setflags(write=False)
    return basis


def _raw_moments(images: np.ndarray) -> np.ndarray:
    """Sums of ``[1, y, x, y^2, xy, x^2]`` times intensity (centred coordinates), shape (N, 6)."""
    n, h, w = images.shape
    basis = _moment_basis(h, w)
    sums = np.empty((n, 6))
    for i0 in range(0, n, _CHUNK):
        chunk = images[i0 : i0 + _CHUNK].reshape(-1, h * w).astype(np.float64)
        np.matmul(chunk, basis, out=sums[i0 : i0 + _CHUNK])
    return sums


def _central(sums: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass (N,), centre of mass (N, 2) as (y, x), covariance (N, 2, 2); NaN moments for blanks."""
    h, w = shape
    mass = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = sums[:, 1:] / mass[:, None]
    my, mx = m[:, 0], m[:, 1]
    cov = np.empty((len(mass), 2, 2))
    cov[:, 0, 0] = np.maximum(m[:, 2] - my * my, 0.0)
    cov[:, 0, 1] = cov[:, 1, 0] = m[:, 3] - mx * my
    cov[:, 1, 1] = np.maximum(m[:, 4] - mx * mx, 0.0)
    centre = np.stack([my + (h - 1) / 2.0, mx + (w - 1) / 2.0], axis=1)
    return mass, centre, cov


def ink_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intensity moments of each image: mass, centre of mass and covariance.

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack (finite, >= 0).

    Returns
    -------
    mass : numpy.ndarray, shape (N,)
        Sum of the intensities (float64).
    centre : numpy.ndarray, shape (N, 2)
        Centre of mass ``(y, x)`` in pixels (pixel centres at integers); NaN for a blank image.
    cov : numpy.ndarray, shape (N, 2, 2)
        Intensity-weighted covariance ``[[var(y), cov(x, y)], [cov(x, y), var(x)]]``
        in px^2; NaN for a blank image.
    """
    images = _check_ink(images)
    return _central(_raw_moments(images), images.shape[1:])


def skew(images: np.ndarray) -> np.ndarray:
    """The skew ``alpha = cov(x, y) / var(y)`` of each image (0 for a blank or flat image).

    ``alpha`` is the slope of the digit's principal stroke in columns per row:
    positive when the ink leans to the right going down the image (``\\``).

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack (finite, >= 0).

    Returns
    -------
    numpy.ndarray, shape (N,)
        float64 skews.
    """
    images = _check_ink(images)
    mass, _, cov = _central(_raw_moments(images), images.shape[1:])
    return _alpha(mass, cov)


def _alpha(mass: np.ndarray, cov: np.ndarray) -> np.ndarray:
    vyy, vxy = cov[:, 0, 0], cov[:, 0, 1]
    ok = (mass > 0) & (vyy > _MIN_VARIANCE)
    return np.where(ok, vxy / np.where(ok, vyy, 1.0), 0.0)


def deskew(images: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Shear each digit upright about its centre of mass, then centre it.

    The classic moment deskewing (as on LeCun's MNIST page): with the centre of
    mass ``(my, mx)`` and ``alpha = cov(x, y) / var(y)`` (x the column, y the
    row), output pixel ``(y, x)`` samples the source at

        ``(my + (y - cy),  mx + (x - cx) + alpha * (y - cy))``

    where ``(cy, cx) = ((H - 1) / 2, (W - 1) / 2)`` is the image centre (13.5,
    13.5 for 28 x 28).  Row ``y`` of the output is row ``my + y - cy`` of the
    source moved ``alpha`` columns per row back, so afterwards ``cov(x, y) = 0``
    and the centre of mass is at ``(cy, cx)``.  Bilinear interpolation (which
    keeps each row's mass and centre exactly), zero fill outside; ink sheared or
    moved past the border is lost.  No limit on ``alpha``: the digit's own
    moments decide (MNIST digits are 20 px tall, so ``|alpha|`` stays below ~1).

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack (finite, >= 0).
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Deskewed images, same dtype as ``images`` (uint8 rounded); blank images
        are copied unchanged.
    """
    images = _check_ink(images)
    out = check_out(out, images.shape, images.dtype)
    n, h, w = images.shape
    if n == 0:
        return out
    mass, centre, cov = _central(_raw_moments(images), (h, w))
    alpha = _alpha(mass, cov)
    ink = mass > 0
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # source_yx = C[:, :, :2] @ (y, x) + C[:, :, 2]; the identity for blanks.
    coefs = np.zeros((n, 2, 3))
    coefs[:, 0, 0] = coefs[:, 1, 1] = 1.0
    coefs[:, 1, 0] = alpha
    coefs[:, 0, 2] = np.where(ink, centre[:, 0] - cy, 0.0)
    coefs[:, 1, 2] = np.where(ink, centre[:, 1] - cx - alpha * cy, 0.0)
    warp(images, coefs, None, dtype=work_dtype(images.dtype), out=out)
    blank = ~ink
    if blank.any():
        out[blank] = images[blank]
    return out


def ink_box(images: np.ndarray, *, threshold: float = INK_THRESHOLD) -> np.ndarray:
    """Bounding box of each image's ink, in whole pixels.

    A pixel is ink when its value is above ``threshold`` times the brightest
    pixel of its image.

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack (finite, >= 0).
    threshold : float, keyword-only
        Fraction of each image's maximum, in [0, 1).

    Returns
    -------
    numpy.ndarray, shape (N, 4)
        int64 ``(top, bottom, left, right)``, inclusive pixel indices (the box
        is ``bottom - top + 1`` pixels high); all -1 for a blank image.
    """
    images = _check_ink(images)
    threshold = _check_threshold(threshold)
    return _ink_box(images, threshold)


def _check_threshold(threshold: object) -> float:
    threshold = check_number(threshold, name="threshold")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return threshold


def _ink_box(images: np.ndarray, threshold: float) -> np.ndarray:
    n, h, w = images.shape
    box = np.full((n, 4), -1, dtype=np.int64)
    for i0 in range(0, n, _CHUNK):
        chunk = images[i0 : i0 + _CHUNK]
        peak = chunk.reshape(len(chunk), -1).max(axis=1)
        if chunk.dtype == np.uint8:
            # v > t * peak  <=>  v > floor(t * peak) for integer v: a uint8 comparison.
            level = np.floor(threshold * peak.astype(np.float64)).astype(np.uint8)
        else:
            level = (threshold * peak).astype(chunk.dtype)
        ink = chunk > level[:, None, None]
        rows = ink.any(axis=2)
        cols = ink.any(axis=1)
        found = rows.any(axis=1)
        part = np.stack(
            [rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1),
             cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)], axis=1)
        box[i0 : i0 + _CHUNK] = np.where(found[:, None], part, -1)
    return box


def _area_weights(
    edges: np.ndarray, first: np.ndarray, last: np.ndarray, scale: np.ndarray, size: int, dtype: np.dtype
) -> np.ndarray:
    """Area-resampling matrices from the output pixels' edges in source coordinates.

    Parameters
    ----------
    edges : numpy.ndarray, shape (N, M + 1)
        Source coordinate of each output pixel edge (increasing).
    first, last : numpy.ndarray, shape (N,)
        The source pixels read, ``first .. last`` (the ink box); the others weigh 0.
    scale : numpy.ndarray, shape (N,)
        Output pixels per source pixel.
    size : int
        Number of source pixels along the axis.
    dtype : numpy.dtype
        Result dtype.

    Returns
    -------
    numpy.ndarray, shape (N, M, size)
        ``R[n, o, i]``: the share of output pixel ``o`` covered by source pixel ``i``.
    """
    lo = np.arange(size, dtype=np.float64) - 0.5
    covered = np.clip(edges[:, :, None], lo, lo + 1.0)  # (N, M + 1, size)
    weights = np.diff(covered, axis=1)
    inside = (lo >= first[:, None] - 0.5) & (lo <= last[:, None] - 0.5)  # (N, size)
    weights *= (inside * scale[:, None])[:, None, :]
    return weights.astype(dtype, copy=False)


def _placement(
    first: np.ndarray, count: np.ndarray, com: np.ndarray, target: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and source edges of the output pixels along one axis.

    The ink box (pixels ``first`` .. ``first + count - 1``, i.e. the source span
    ``[first - 0.5, first + count - 0.5]``) maps onto ``target`` output pixels
    whose first edge ``L`` is a pixel edge (``k - 0.5``), chosen so the centre of
    mass lands nearest the centre and the box stays inside the image.
    """
    scale = target / count
    start = first - 0.5
    centre = (size - 1) / 2.0
    ideal = centre - scale * (com - start)  # left edge putting the mass at the centre
    left = np.clip(np.floor(ideal + 1.0), 0, size - target) - 0.5
    out_edges = np.arange(size + 1, dtype=np.float64) - 0.5
    edges = start[:, None] + (out_edges[None, :] - left[:, None]) / scale[:, None]
    return scale, edges


def width_normalize(
    images: np.ndarray,
    width: int,
    *,
    height: int = MNIST_BOX,
    threshold: float = INK_THRESHOLD,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Scale each digit's ink box to ``width`` x ``height`` pixels and centre it.

    The width normalization of Ciresan, Meier & Schmidhuber (2012, multi-column
    deep networks): the digit's ink bounding box (:func:`ink_box`, pixels above
    ``threshold`` times the image's maximum) is stretched or squeezed to exactly
    ``width`` pixels across and ``height`` pixels down (MNIST's 20; the aspect
    ratio is not kept), then placed so its centre of mass (taken as it will be
    after the scaling) is at the image centre ((13.5, 13.5) for 28 x 28) to
    within half a pixel: the box's edges land on pixel edges (a tie goes right /
    down), so it covers exactly ``width`` x ``height`` pixels, and a digit
    normalized once comes back unchanged when normalized again.  Where centring
    the mass would push the box over the border, the box is moved back inside
    (no ink is lost).  The faint pixels outside the ink box (all under the
    threshold) are dropped, so nothing lies outside the new box.

    The columns are resampled first (box measured on the source), then the rows
    (box measured on the resampled columns, so a faint border row that the
    horizontal averaging took under the threshold is not stretched into the
    box): measured again, the box is exactly ``height`` high and, on MNIST,
    exactly ``width`` wide for 99.6 % (``width=8``) to 100 % (``width=20``) of
    the digits; the others lost a faint border column under the threshold in
    the averaging (1 px, rarely 2-4) and are not fixed points.

    Resampling is by area (pixel mixing, like OpenCV's ``INTER_AREA``): each
    output pixel is the average of the source image, taken as constant over
    each pixel, over the pixel's footprint.  Squeezing averages (no aliasing
    of thin strokes), stretching repeats pixels with a linear blend at their
    edges, and the ink mass scales by exactly the area ratio.  Separable: two
    batched (H x H) and (W x W) matrix products per image.

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack (finite, >= 0).
    width : int
        Width of the ink box afterwards, in pixels, 8 .. 20 (and <= W).
    height : int, keyword-only
        Height of the ink box afterwards, 1 .. H (default 20, as in MNIST).
    threshold : float, keyword-only
        Ink threshold as a fraction of each image's maximum, in [0, 1).
    out : numpy.ndarray, shape (N, H, W), optional
        Destination with the dtype of ``images``.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Normalized images, same dtype as ``images`` (uint8 rounded); blank
        images are copied unchanged.
    """
    images = _check_ink(images)
    n, h, w = images.shape
    width = check_number(width, name="width", integer=True)
    if not WIDTHS[0] <= width <= WIDTHS[-1]:
        raise ValueError(f"width must be in {WIDTHS[0]}..{WIDTHS[-1]}, got {width}")
    if width > w:
        raise ValueError(f"width must be <= the image width {w}, got {width}")
    height = check_number(height, name="height", integer=True)
    if not 1 <= height <= h:
        raise ValueError(f"height must be in 1..{h} (the image height), got {height}")
    threshold = _check_threshold(threshold)
    out = check_out(out, images.shape, images.dtype)
    dtype = work_dtype(images.dtype)
    ys = np.arange(h, dtype=np.float64)
    xs = np.arange(w, dtype=np.float64)
    for i0 in range(0, n, _CHUNK):
        chunk = images[i0 : i0 + _CHUNK]
        dest = out[i0 : i0 + _CHUNK]
        box = _ink_box(chunk, threshold)
        ink = box[:, 0] >= 0
        if not ink.all():
            dest[~ink] = chunk[~ink]
            if not ink.any():
                continue
            chunk, box = chunk[ink], box[ink]
        # Across first (the box measured on the source), then down, with the rows' box
        # measured on the squeezed/stretched stack: a faint border row that the
        # horizontal averaging takes under the threshold is not stretched into the box.
        cols = chunk.sum(axis=1, dtype=np.float64)  # (b, W)
        left, right = box[:, 2], box[:, 3]
        sx, x_edges = _placement(left, right - left + 1, cols @ xs / cols.sum(axis=1), width, w)
        rx = _area_weights(x_edges, left, right, sx, w, dtype)  # (b, W, W)
        across = np.matmul(chunk.astype(dtype), rx.transpose(0, 2, 1))
        top, bottom = _ink_box(across, threshold)[:, :2].T
        rows = across.sum(axis=2, dtype=np.float64)  # (b, H)
        sy, y_edges = _placement(top, bottom - top + 1, rows @ ys / rows.sum(axis=1), height, h)
        ry = _area_weights(y_edges, top, bottom, sy, h, dtype)  # (b, H, H)
        res = np.matmul(ry, across)
        if images.dtype == np.uint8:
            res += dtype.type(0.5)
            np.clip(res, 0, 255, out=res)
        if ink.all():
            np.copyto(dest, res, casting="unsafe")
        else:
            dest[ink] = res.astype(images.dtype)
    return out


def _identity(images: np.ndarray) -> np.ndarray:
    """The ``none`` normalization: a checked copy of ``images``."""
    return _check_ink(images).copy()


Normalization = Callable[[np.ndarray], np.ndarray]

#: The named normalizations: ``(N, H, W)`` stack in, same shape and dtype out.
NORMALIZATIONS: dict[str, Normalization] = {
    "none": _identity,
    "deskew": deskew,
    **{f"width-{w}": functools.partial(width_normalize, width=w) for w in WIDTHS},
}


def get_normalization(name: str) -> Normalization:
    """The normalization called ``name`` in :data:`NORMALIZATIONS`.

    Parameters
    ----------
    name : str
        ``"none"`` (identity), ``"deskew"`` or ``"width-8"`` .. ``"width-20"``.

    Returns
    -------
    callable
        ``f(images) -> images``, an (N, H, W) stack in, same shape and dtype out.

    Raises
    ------
    ValueError
        For any other name.
    """
    if not isinstance(name, str) or name not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {name!r}")
    return NORMALIZATIONS[name]


def normalize(images: np.ndarray, name: str) -> np.ndarray:
    """``images`` through the normalization called ``name`` (see :func:`get_normalization`).

    Parameters
    ----------
    images : array_like, shape (N, H, W)
        uint8 or floating stack (finite, >= 0).
    name : str
        A key of :data:`NORMALIZATIONS`.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        A new array with the dtype of ``images``.
    """
    return get_normalization(name)(images)
