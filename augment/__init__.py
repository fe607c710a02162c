"""Fast, reproducible data augmentation for MNIST-like image stacks.

Batch-first transforms on (N, H, W) uint8 or floating stacks (same shape and
dtype out), pure functions kept apart from the random draws:

* :func:`shift_images`, :func:`nielsen_expand` -- exact integer shifts;
* :func:`rotate_images`, :func:`elastic_distort`, :func:`affine_elastic` --
  one bilinear resampling of a composed affine + Simard elastic map;
* :class:`Distortion`, :func:`draw`, :func:`apply`, :func:`distort` -- random
  distortions with explicit ``numpy.random.Generator`` draws;
* :class:`Erasing`, :func:`draw_boxes`, :func:`erase_boxes`, :func:`erase` --
  random erasing (Cutout squares set to the background 0) with explicit draws;
* :func:`expand` -- chunked, multi-threaded, seed-reproducible expansion;
* :func:`view_stack`, :data:`TTA_VIEWS` -- fixed views for test-time augmentation;
* :func:`deskew`, :func:`width_normalize`, :data:`NORMALIZATIONS`,
  :func:`normalize` -- deterministic input normalizations (moment deskewing,
  Ciresan et al.'s width normalization).

Only NumPy, SciPy and (optionally) joblib are used.
"""

from augment.affine import affine_coefficients, affine_elastic, rotate_images
from augment.distortion import ALPHA_RANGE, LIMITS, MAX_SHIFT_RANGE, SIGMA_RANGE, TRANSFORMS, Distortion
from augment.draws import Draws, draw, draw_angles, draw_noise, draw_scales, draw_shifts
from augment.elastic import displacement_fields, elastic_distort
from augment.erase import SIDE_RANGE, Boxes, Erasing, draw_boxes, erase, erase_boxes, parse_sides
from augment.expand import (
    BACKENDS,
    BLOCK_SIZE,
    block_generator,
    draw_variant_boxes,
    draw_variants,
    erase_generator,
    expand,
)
from augment.normalize import (
    INK_THRESHOLD,
    MNIST_BOX,
    NORMALIZATIONS,
    WIDTHS,
    deskew,
    get_normalization,
    ink_box,
    ink_moments,
    normalize,
    skew,
    width_normalize,
)
from augment.pipeline import apply, distort
from augment.shift import NIELSEN_SHIFTS, nielsen_expand, shift_images
from augment.smoothing import gaussian_matrix, smooth_fields
from augment.views import TTA_VIEWS, View, apply_view, view_stack

__all__ = [
    "ALPHA_RANGE",
    "BACKENDS",
    "LIMITS",
    "MAX_SHIFT_RANGE",
    "SIDE_RANGE",
    "SIGMA_RANGE",
    "BLOCK_SIZE",
    "INK_THRESHOLD",
    "MNIST_BOX",
    "NIELSEN_SHIFTS",
    "NORMALIZATIONS",
    "TRANSFORMS",
    "TTA_VIEWS",
    "WIDTHS",
    "View",
    "Boxes",
    "Distortion",
    "Draws",
    "Erasing",
    "affine_coefficients",
    "affine_elastic",
    "apply",
    "apply_view",
    "block_generator",
    "deskew",
    "displacement_fields",
    "distort",
    "draw",
    "draw_angles",
    "draw_boxes",
    "draw_noise",
    "draw_scales",
    "draw_shifts",
    "draw_variant_boxes",
    "draw_variants",
    "elastic_distort",
    "erase",
    "erase_boxes",
    "erase_generator",
    "expand",
    "gaussian_matrix",
    "get_normalization",
    "ink_box",
    "ink_moments",
    "nielsen_expand",
    "normalize",
    "parse_sides",
    "rotate_images",
    "shift_images",
    "skew",
    "smooth_fields",
    "view_stack",
    "width_normalize",
]
