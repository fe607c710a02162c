"""Offline data-set expansion: originals followed by distorted copies.

Random draws are keyed on fixed blocks of :data:`BLOCK_SIZE` variant indices
(``SeedSequence(seed, spawn_key=(block,))``), never on chunk boundaries, so
the output is byte-identical for a given seed whatever ``chunk_size`` and
``n_jobs`` are.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from augment._checks import check_images, check_number, check_out
from augment.distortion import Distortion
from augment.draws import Draws, draw
from augment.pipeline import apply

__all__ = ["BLOCK_SIZE", "block_generator", "draw_variants", "expand"]

#: Number of consecutive variants sharing one random generator.
BLOCK_SIZE = 256


def block_generator(seed: int, block: int) -> np.random.Generator:
    """Generator of the variants ``[block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE)``.

    Parameters
    ----------
    seed : int
        Non-negative experiment seed.
    block : int
        Block index.

    Returns
    -------
    numpy.random.Generator
        ``Generator(PCG64(SeedSequence(seed, spawn_key=(block,))))``.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(block,))))


def draw_variants(
    distortion: Distortion, seed: int, start: int, stop: int, total: int, shape: tuple[int, int]
) -> Draws:
    """Draws of variants ``start .. stop - 1`` out of ``total``, chunking-independent.

    Parameters
    ----------
    distortion : Distortion
        What to draw.
    seed : int
        Non-negative seed.
    start, stop : int
        Half-open range of variant indices, ``0 <= start < stop <= total``.
    total : int
        Number of variants in the whole expansion (fixes the last block's size).
    shape : tuple of int
        ``(H, W)``.

    Returns
    -------
    Draws
        ``stop - start`` entries.
    """
    first, last = start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE
    parts = [
        draw(
            distortion,
            block_generator(seed, b),
            min(BLOCK_SIZE, total - b * BLOCK_SIZE),
            shape,
        )
        for b in range(first, last + 1)
    ]
    base = first * BLOCK_SIZE
    return Draws.concatenate(parts)[start - base : stop - base]


def expand(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    copies: int,
    distortion: Distortion = Distortion(),
    seed: int = 0,
    chunk_size: int = 256,
    n_jobs: int = 1,
    out: np.ndarray | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Originals followed by ``copies`` randomly distorted variants of each image.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        uint8 or floating stack.
    labels : numpy.ndarray, shape (N,)
        Labels of ``images``.
    copies : int
        Distorted variants per image, >= 0.
    distortion : Distortion
        The random distortion.
    seed : int
        Non-negative seed; equal seeds give byte-identical output for any
        ``chunk_size`` and ``n_jobs``.
    chunk_size : int
        Variants per work item; bounds the temporary memory.
    n_jobs : int
        Worker threads (-1: all CPUs).  NumPy and BLAS release the GIL.
    out : numpy.ndarray, shape ((copies + 1) * N, H, W), optional
        Preallocated destination (may be a ``numpy.memmap``) with the images'
        dtype.
    progress : callable, optional
        Called from the calling thread with the number of output images
        written since the previous call (an increment, as ``tqdm.update`` or
        ``click``'s ``bar.update`` expect); the increments add up to
        ``(copies + 1) * N``.

    Returns
    -------
    images_out : numpy.ndarray, shape ((copies + 1) * N, H, W)
        Blocks ``[originals; variant 1 of every image; ...; variant copies]``.
    labels_out : numpy.ndarray, shape ((copies + 1) * N,)
        ``np.tile(labels, copies + 1)``.
    """
    images = check_images(images)
    n, h, w = images.shape
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape (N,) = ({n},), got {labels.shape}")
    copies = check_number(copies, name="copies", integer=True)
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    if not isinstance(distortion, Distortion):
        raise ValueError(f"distortion must be a Distortion, got {type(distortion).__name__}")
    seed = check_number(seed, name="seed", integer=True)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    chunk_size = check_number(chunk_size, name="chunk_size", integer=True)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_jobs = check_number(n_jobs, name="n_jobs", integer=True)
    if n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be >= 1 or -1, got {n_jobs}")
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if progress is not None and not callable(progress):
        raise ValueError("progress must be callable or None")
    out = check_out(out, ((copies + 1) * n, h, w), images.dtype)

    for i0 in range(0, n, chunk_size):
        i1 = min(n, i0 + chunk_size)
        out[i0:i1] = images[i0:i1]
        if progress is not None:
            progress(i1 - i0)

    total = copies * n
    ranges = [(s, min(total, s + chunk_size)) for s in range(0, total, chunk_size)]

    def source(start: int, stop: int) -> np.ndarray:
        if start // n == (stop - 1) // n:  # within one copy: a view
            return images[start % n : start % n + (stop - start)]
        return images[np.arange(start, stop) % n]

    def work(start: int, stop: int) -> int:
        if distortion.transforms and "elastic" not in distortion.transforms:
            # Small draws: join the blocks and transform the chunk in one call.
            draws = draw_variants(distortion, seed, start, stop, total, (h, w))
            apply(source(start, stop), draws, distortion, out=out[n + start : n + stop])
            return stop - start
        # Elastic noise is large: transform block by block, straight from
        # each block's noise buffer (no concatenation copy).
        for b in range(start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE + 1):
            lo = max(start, b * BLOCK_SIZE)
            hi = min(stop, (b + 1) * BLOCK_SIZE)
            size = min(BLOCK_SIZE, total - b * BLOCK_SIZE)
            draws = draw(distortion, block_generator(seed, b), size, (h, w))
            draws = draws[lo - b * BLOCK_SIZE : hi - b * BLOCK_SIZE]
            apply(source(lo, hi), draws, distortion, out=out[n + lo : n + hi])
        return stop - start

    if n_jobs == 1 or len(ranges) <= 1:
        for s, e in ranges:
            k = work(s, e)
            if progress is not None:
                progress(k)
    else:
        from joblib import Parallel, delayed

        with Parallel(
            n_jobs=n_jobs, backend="threading", return_as="generator_unordered"
        ) as parallel:
            for k in parallel(delayed(work)(s, e) for s, e in ranges):
                if progress is not None:
                    progress(k)
    return out, np.tile(labels, copies + 1)
