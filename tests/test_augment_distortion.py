"""Distortion parameters, random draws and the draw / apply / distort pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from augment import (
    TRANSFORMS,
    Distortion,
    Draws,
    apply,
    distort,
    draw,
    draw_noise,
    rotate_images,
    shift_images,
)

ALL_MODES = [
    ("shift",),
    ("rotate",),
    ("scale",),
    ("elastic",),
    ("shift", "rotate", "scale", "elastic"),
]


def test_defaults_and_canonical_order() -> None:
    d = Distortion()
    assert d.transforms == TRANSFORMS == ("shift", "rotate", "scale", "elastic")
    assert (d.max_shift, d.max_rotation, d.max_scale, d.alpha, d.sigma) == (2, 12.0, 0.1, 34.0, 4.0)
    assert Distortion(transforms=["elastic", "shift", "shift"]).transforms == ("shift", "elastic")
    assert Distortion(transforms=("elastic", "shift")) == Distortion(transforms=("shift", "elastic"))
    assert Distortion(transforms=("shift",)).shift_only


def test_dict_round_trip_is_json_friendly() -> None:
    d = Distortion(transforms=("rotate", "elastic"), max_rotation=15, alpha=30.0, sigma=5)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["transforms"] == ["rotate", "elastic"]
    assert Distortion.from_dict(data) == d
    assert Distortion.from_dict({}) == Distortion()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_rotation": 200}, r"max_rotation must be in \[0, 180\], got 200"),
        ({"max_rotation": -1.0}, "max_rotation must be in"),
        ({"max_scale": 1.0}, r"max_scale must be in \[0, 1\)"),
        ({"max_scale": -0.1}, "max_scale must be in"),
        ({"max_shift": -1}, r"max_shift must be in \[0, 14\]"),
        ({"max_shift": 15}, r"max_shift must be in \[0, 14\]"),
        ({"max_shift": 1.5}, "max_shift must be an integer"),
        ({"alpha": -1.0}, r"alpha must be in \[0, 100\]"),
        ({"alpha": 1e39}, r"alpha must be in \[0, 100\], got 1e\+39"),
        ({"sigma": 0.0}, r"sigma must be in \[0.5, 28\]"),
        ({"sigma": 1e-300}, r"sigma must be in \[0.5, 28\]"),
        ({"sigma": 1e300}, r"sigma must be in \[0.5, 28\]"),
        ({"sigma": float("nan")}, "sigma must be finite"),
        ({"alpha": "34"}, "alpha must be a number"),
        ({"transforms": ("shear",)}, "transforms has unknown name 'shear'"),
        ({"transforms": "shift"}, "transforms must be a sequence"),
    ],
)
def test_validation_names_the_field(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Distortion(**kwargs)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown Distortion field 'max_zoom'"):
        Distortion.from_dict({"max_zoom": 0.2})


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Distortion().alpha = 1.0  # type: ignore[misc]


def test_draw_shapes_ranges_and_disabled_transforms() -> None:
    d = Distortion(max_shift=3, max_rotation=20.0, max_scale=0.2)
    dr = draw(d, np.random.default_rng(0), 500, (28, 28))
    assert len(dr) == 500
    assert dr.shifts.shape == (500, 2) and dr.shifts.dtype == np.int64
    assert dr.shifts.min() == -3 and dr.shifts.max() == 3
    assert np.abs(dr.angles).max() <= 20.0 and np.abs(dr.angles).max() > 15.0
    assert np.all((dr.scales >= 0.8) & (dr.scales <= 1.2))
    assert dr.noise.shape == (500, 2, 28, 28) and dr.noise.dtype == np.float32
    assert dr.noise.min() > -1.0 and dr.noise.max() < 1.0
    assert abs(float(dr.noise.mean())) < 0.01 and abs(float(dr.noise.std()) - 3**-0.5) < 0.01
    off = draw(Distortion(transforms=("rotate",)), np.random.default_rng(0), 4, (28, 28))
    assert not off.shifts.any() and np.all(off.scales == 1.0) and off.noise is None


def test_draw_is_reproducible_from_the_generator() -> None:
    d = Distortion()
    a = draw(d, np.random.default_rng(42), 10, (28, 28))
    b = draw(d, np.random.default_rng(42), 10, (28, 28))
    for name in ("shifts", "angles", "scales", "noise"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    c = draw(d, np.random.default_rng(43), 10, (28, 28))
    assert not np.array_equal(a.noise, c.noise)


def test_draw_noise_into_a_buffer_and_other_bit_generators() -> None:
    buf = np.empty(2 * 5 * 3 * 7, dtype=np.float32)
    a = draw_noise(np.random.default_rng(9), 3, (5, 7), out=buf)
    assert np.shares_memory(a, buf)
    assert np.array_equal(a, draw_noise(np.random.default_rng(9), 3, (5, 7)))
    mt = draw_noise(np.random.Generator(np.random.MT19937(0)), 50, (28, 28))
    assert mt.dtype == np.float32 and -1 <= mt.min() and mt.max() < 1 and abs(float(mt.mean())) < 0.02
    with pytest.raises(ValueError, match="out must be a contiguous float32 array of 210 values"):
        draw_noise(np.random.default_rng(0), 3, (5, 7), out=np.empty(10, np.float32))


def test_draw_validation() -> None:
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        draw(Distortion(), np.random.RandomState(0), 3, (28, 28))
    with pytest.raises(ValueError, match="distortion must be a Distortion"):
        draw({"alpha": 1.0}, np.random.default_rng(0), 3, (28, 28))


def test_apply_is_pure_and_distort_is_apply_of_draw(synthetic_digits) -> None:
    x = synthetic_digits[:64]
    d = Distortion()
    dr = draw(d, np.random.default_rng(7), 64, (28, 28))
    first = apply(x, dr, d)
    assert np.array_equal(first, apply(x, dr, d))
    assert np.array_equal(distort(x, d, np.random.default_rng(7)), first)
    assert not np.array_equal(distort(x, d, np.random.default_rng(8)), first)


def test_shift_only_and_rotation_only_paths(synthetic_digits) -> None:
    x = synthetic_digits[:20]
    d = Distortion(transforms=("shift",), max_shift=2)
    dr = draw(d, np.random.default_rng(1), 20, (28, 28))
    assert np.array_equal(apply(x, dr, d), shift_images(x, dr.shifts))
    r = Distortion(transforms=("rotate",), max_rotation=15.0)
    dr = draw(r, np.random.default_rng(1), 20, (28, 28))
    assert np.array_equal(apply(x, dr, r), rotate_images(x, dr.angles))
    assert np.array_equal(apply(x, dr, Distortion(transforms=())), x)
    full = draw(Distortion(), np.random.default_rng(2), 20, (28, 28))
    assert np.array_equal(apply(x, full, r), rotate_images(x, full.angles))  # shifts, scales, noise ignored


@pytest.mark.parametrize("transforms", ALL_MODES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_invariants_on_digits(synthetic_digits, transforms, dtype) -> None:
    x = synthetic_digits[:256]
    images = x if dtype == np.uint8 else x.astype(np.float32) / 255.0
    before = images.copy()
    d = Distortion(transforms=transforms)
    out = distort(images, d, np.random.default_rng(3))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert np.array_equal(images, before), "the input is never written to"
    top = 255 if dtype == np.uint8 else 1.0
    assert out.min() >= 0 and out.max() <= top + 1e-6
    mean_in, mean_out = float(images.mean()), float(out.mean())
    assert abs(mean_out - mean_in) <= 0.15 * mean_in
    assert not np.array_equal(out, images)


def test_apply_validation(synthetic_digits) -> None:
    x = synthetic_digits[:4]
    d = Distortion()
    dr = draw(d, np.random.default_rng(0), 3, (28, 28))
    with pytest.raises(ValueError, match="draws has 3 entries for 4 images"):
        apply(x, dr, d)
    no_noise = Draws(np.zeros((4, 2), np.int64), np.zeros(4), np.ones(4), None)
    with pytest.raises(ValueError, match="draws.noise is None"):
        apply(x, no_noise, d)
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\), got \(4, 784\)"):
        distort(x.reshape(4, -1), d, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Draws can only be sliced"):
        dr[0]
