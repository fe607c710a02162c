"""Rotation, elastic and combined affine + elastic warps against scipy.ndimage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from augment import (
    affine_coefficients,
    affine_elastic,
    displacement_fields,
    draw_noise,
    elastic_distort,
    gaussian_matrix,
    rotate_images,
    shift_images,
    smooth_fields,
)


def _reference_warp(img, coefs, disp=None):
    """Per-image scipy reference: sample at M(p + d(p)), bilinear, zero fill."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if disp is not None:
        yy, xx = yy + disp[0], xx + disp[1]
    sy = coefs[0, 0] * yy + coefs[0, 1] * xx + coefs[0, 2]
    sx = coefs[1, 0] * yy + coefs[1, 1] * xx + coefs[1, 2]
    return ndimage.map_coordinates(img.astype(np.float64), [sy, sx], order=1, mode="grid-constant")


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rotate_180_of_arange_is_exact_flip(dtype) -> None:
    img = np.arange(28 * 28, dtype=dtype).reshape(1, 28, 28)
    out = rotate_images(img, [180.0])
    assert out.dtype == dtype
    np.testing.assert_allclose(out[0], img[0, ::-1, ::-1], rtol=0, atol=1e-5)
    odd = np.arange(5 * 7, dtype=dtype).reshape(1, 5, 7)
    np.testing.assert_allclose(rotate_images(odd, [-180.0])[0], odd[0, ::-1, ::-1], rtol=0, atol=1e-5)


def test_rotate_90_is_counter_clockwise_like_rot90() -> None:
    img = np.arange(36, dtype=np.float64).reshape(1, 6, 6)
    assert np.array_equal(rotate_images(img, [90.0])[0], np.rot90(img[0]))
    assert np.array_equal(rotate_images(img, [-90.0])[0], np.rot90(img[0], -1))


def test_rotation_direction_and_values_match_scipy(synthetic_digits) -> None:
    imgs = synthetic_digits[:6].astype(np.float64)
    angles = np.array([15.0, -15.0, 30.0, -7.5, 45.0, 100.0])
    ours = rotate_images(imgs, angles)
    for img, angle, got in zip(imgs, angles, ours):
        ref = ndimage.rotate(img, angle, reshape=False, order=1, mode="constant")
        flipped = ndimage.rotate(img, -angle, reshape=False, order=1, mode="constant")
        # Same direction: far closer to scipy's rotation than to the opposite one.
        assert np.abs(got - ref).max() < 1e-6 < np.abs(got - flipped).max()


def test_rotation_uint8_rounds_and_keeps_range(synthetic_digits) -> None:
    imgs = synthetic_digits[:32]
    angles = np.linspace(-15, 15, 32)
    ours = rotate_images(imgs, angles)
    ref = rotate_images(imgs.astype(np.float64), angles)
    assert ours.dtype == np.uint8
    assert np.abs(ours - ref).max() <= 0.5 + 1e-3


def test_rotate_validation() -> None:
    with pytest.raises(ValueError, match=r"angles must have shape \(N\)"):
        rotate_images(np.zeros((3, 4, 4)), [1.0, 2.0])
    with pytest.raises(ValueError, match="angles must be finite"):
        rotate_images(np.zeros((1, 4, 4)), [np.nan])


# ----------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize(("shape", "sigma"), [((28, 28), 4.0), ((9, 13), 1.5), ((28, 28), 0.7)])
def test_smoothing_equals_gaussian_filter_constant(shape, sigma) -> None:
    rng = np.random.default_rng(3)
    fields = rng.uniform(-1, 1, (5, 2, *shape))
    ours = smooth_fields(fields, sigma, scale=2.5)
    for n in range(5):
        for c in range(2):
            ref = 2.5 * ndimage.gaussian_filter(fields[n, c], sigma, mode="constant")
            np.testing.assert_allclose(ours[n, c], ref, rtol=0, atol=1e-12)
    g = gaussian_matrix(shape[0], sigma)
    column = fields[0, 0][:, 0]
    ref_1d = ndimage.gaussian_filter1d(column, sigma, mode="constant")
    np.testing.assert_allclose(g @ column, ref_1d, rtol=0, atol=1e-12)


def test_displacement_rms_matches_per_image_scipy() -> None:
    noise = draw_noise(np.random.default_rng(11), 300, (28, 28))
    disp = displacement_fields(noise, alpha=34.0, sigma=4.0)
    noise64 = noise.astype(np.float64)
    ref = np.empty_like(noise64)
    for n in range(300):
        for c in range(2):
            ref[n, c] = 34.0 * ndimage.gaussian_filter(noise64[n, c], 4.0, mode="constant")
    rms, rms_ref = np.sqrt(np.mean(disp.astype(np.float64) ** 2)), np.sqrt(np.mean(ref**2))
    assert abs(rms - rms_ref) <= 1e-4 * rms_ref
    assert 1.2 < rms < 1.6  # about 1.4 px per component for alpha 34, sigma 4
    np.testing.assert_allclose(disp, ref, rtol=0, atol=2e-5)


# ----------------------------------------------------------------------------- elastic


def test_elastic_alpha_zero_is_exact_identity(synthetic_digits) -> None:
    imgs = synthetic_digits[:40]
    noise = draw_noise(np.random.default_rng(0), 40, (28, 28))
    assert np.array_equal(elastic_distort(imgs, noise, alpha=0.0), imgs)
    floats = np.random.default_rng(1).normal(size=(7, 28, 28))
    assert np.array_equal(elastic_distort(floats, noise[:7], alpha=0.0), floats)
    f32 = floats.astype(np.float32)
    assert np.array_equal(elastic_distort(f32, noise[:7], alpha=0.0), f32)


def test_elastic_matches_map_coordinates_reference(synthetic_digits) -> None:
    imgs = synthetic_digits[:70].astype(np.float64)  # 70: two sub-batches
    noise = draw_noise(np.random.default_rng(5), 70, (28, 28))
    ours = elastic_distort(imgs, noise, alpha=34.0, sigma=4.0)
    disp = displacement_fields(noise.astype(np.float64), alpha=34.0, sigma=4.0)
    ident = np.tile(np.eye(2, 3), (70, 1, 1))
    for n in range(0, 70, 7):
        np.testing.assert_allclose(ours[n], _reference_warp(imgs[n], ident[n], disp[n]), atol=1e-9)


def test_elastic_on_uint8_and_float32(synthetic_digits) -> None:
    imgs = synthetic_digits[:16]
    noise = draw_noise(np.random.default_rng(6), 16, (28, 28))
    ref = elastic_distort(imgs.astype(np.float64), noise)
    u8 = elastic_distort(imgs, noise)
    assert u8.dtype == np.uint8 and np.abs(u8 - ref).max() <= 0.5 + 1e-3
    f32 = elastic_distort(imgs.astype(np.float32), noise)
    assert f32.dtype == np.float32 and np.abs(f32 - ref).max() < 1e-2


def test_elastic_validation() -> None:
    imgs = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"noise must have shape \(N, 2, H, W\)"):
        elastic_distort(imgs, np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        elastic_distort(imgs, np.zeros((2, 2, 8, 8)), alpha=-1.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        elastic_distort(imgs, np.zeros((2, 2, 8, 8)), sigma=0.0)


# ----------------------------------------------------------------------------- affine + elastic


def test_affine_elastic_is_one_composed_resampling(synthetic_digits) -> None:
    rng = np.random.default_rng(8)
    n = 20
    imgs = synthetic_digits[100 : 100 + n].astype(np.float64)
    angles = rng.uniform(-15, 15, n)
    scales = rng.uniform(0.9, 1.1, n)
    shifts = rng.integers(-2, 3, (n, 2))
    noise = draw_noise(rng, n, (28, 28))
    ours = affine_elastic(imgs, angles, scales, shifts, noise, alpha=34.0, sigma=4.0)
    coefs = affine_coefficients(angles, scales, shifts, (28, 28))
    disp = displacement_fields(noise.astype(np.float64))
    for i in range(n):
        np.testing.assert_allclose(ours[i], _reference_warp(imgs[i], coefs[i], disp[i]), atol=1e-9)


def test_affine_special_cases() -> None:
    rng = np.random.default_rng(9)
    imgs = rng.random((5, 12, 10))
    ones, zeros = np.ones(5), np.zeros(5)
    assert np.array_equal(affine_elastic(imgs, zeros, ones, np.zeros((5, 2))), imgs)
    shifts = rng.integers(-3, 4, (5, 2))
    assert np.array_equal(affine_elastic(imgs, zeros, ones, shifts), shift_images(imgs, shifts))
    # Zoom x2 about the centre of a centred blob keeps the centre value.
    blob = np.zeros((1, 9, 9))
    blob[0, 4, 4] = 1.0
    assert affine_elastic(blob, [0.0], [2.0], [[0, 0]])[0, 4, 4] == 1.0


def test_affine_validation() -> None:
    imgs = np.zeros((2, 6, 6))
    with pytest.raises(ValueError, match="scales must be > 0"):
        affine_elastic(imgs, np.zeros(2), np.array([1.0, 0.0]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"shifts must have shape \(N, 2\)"):
        affine_elastic(imgs, np.zeros(2), np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="out must have dtype"):
        affine_elastic(imgs, np.zeros(2), np.ones(2), np.zeros((2, 2)), out=np.zeros((2, 6, 6), np.float32))
