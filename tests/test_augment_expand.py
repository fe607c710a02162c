"""Chunked, threaded, seed-reproducible expansion."""

from __future__ import annotations

import numpy as np
import pytest

from augment import BLOCK_SIZE, Distortion, apply, block_generator, draw, expand


@pytest.fixture(scope="module")
def digits(synthetic_digits):
    return synthetic_digits, np.arange(len(synthetic_digits), dtype=np.uint8) % 10


def test_layout_labels_and_originals(digits) -> None:
    x, y = digits
    out, lab = expand(x, y, copies=2, seed=1)
    assert out.shape == (900, 28, 28) and out.dtype == np.uint8
    assert np.array_equal(lab, np.tile(y, 3))
    assert np.array_equal(out[:300], x)
    assert not np.array_equal(out[300:600], x) and not np.array_equal(out[300:600], out[600:])


def test_variants_follow_the_block_generators(digits) -> None:
    x, y = digits
    d = Distortion(transforms=("rotate",), max_rotation=15.0)
    out, _ = expand(x, y, copies=1, distortion=d, seed=5)
    block0 = draw(d, block_generator(5, 0), min(BLOCK_SIZE, 300), (28, 28))
    assert np.array_equal(out[300 : 300 + len(block0)], apply(x[: len(block0)], block0, d))


@pytest.mark.parametrize(
    "distortion",
    [Distortion(), Distortion(transforms=("shift",)), Distortion(transforms=("rotate", "scale"))],
    ids=["all", "shift", "rotate+scale"],
)
def test_same_seed_same_bytes_for_any_chunking_and_jobs(digits, distortion) -> None:
    x, y = digits
    ref, _ = expand(x, y, copies=2, distortion=distortion, seed=3, chunk_size=256, n_jobs=1)
    for chunk_size, n_jobs in [(37, 1), (64, 2), (1000, 1), (37, 2), (256, 2)]:
        got, _ = expand(x, y, copies=2, distortion=distortion, seed=3, chunk_size=chunk_size, n_jobs=n_jobs)
        assert got.tobytes() == ref.tobytes(), (chunk_size, n_jobs)
    procs, _ = expand(x, y, copies=2, distortion=distortion, seed=3, chunk_size=100, n_jobs=2, backend="processes")
    assert procs.tobytes() == ref.tobytes()
    other, _ = expand(x, y, copies=2, distortion=distortion, seed=4)
    assert other[300:].tobytes() != ref[300:].tobytes()


def test_out_memmap_and_progress(digits, tmp_path) -> None:
    x, y = digits
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(600, 28, 28))
    steps: list[int] = []
    out, _ = expand(x, y, copies=1, out=mm, chunk_size=128, n_jobs=2, progress=steps.append)
    assert out is mm
    assert sum(steps) == 600 and all(s > 0 for s in steps)
    ref, _ = expand(x, y, copies=1)
    mm.flush()
    assert np.array_equal(np.load(tmp_path / "x.npy"), ref)


def test_copies_zero_and_float_images(digits) -> None:
    x, y = digits
    out, lab = expand(x, y, copies=0)
    assert np.array_equal(out, x) and np.array_equal(lab, y)
    xf = x[:50].astype(np.float32) / 255
    outf, _ = expand(xf, y[:50], copies=1, seed=2)
    assert outf.dtype == np.float32 and outf.shape == (100, 28, 28)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"copies": -1}, "copies must be >= 0"),
        ({"copies": 1, "chunk_size": 0}, "chunk_size must be >= 1"),
        ({"copies": 1, "n_jobs": 0}, "n_jobs must be >= 1 or -1"),
        ({"copies": 1, "seed": -3}, "seed must be >= 0"),
        ({"copies": 1, "out": np.zeros((10, 28, 28), np.uint8)}, "out must have shape"),
        ({"copies": 1, "distortion": "elastic"}, "distortion must be a Distortion"),
        ({"copies": 1, "backend": "dask"}, "backend must be one of"),
    ],
)
def test_expand_validation(digits, kwargs, message) -> None:
    x, y = digits
    with pytest.raises(ValueError, match=message):
        expand(x, y, **kwargs)


def test_expand_label_mismatch(digits) -> None:
    x, y = digits
    with pytest.raises(ValueError, match="labels must have shape"):
        expand(x, y[:10], copies=1)
