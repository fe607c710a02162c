"""Offline data-set expansion: originals followed by distorted copies.

Work goes in chunks of variants written into one preallocated output (which
may be a memmap), optionally by worker threads or processes.  Random draws
are keyed on fixed blocks of :data:`BLOCK_SIZE` variant indices
(``SeedSequence(seed, spawn_key=(block,))``; the erasing squares, when asked
for, from ``SeedSequence(seed, spawn_key=(block, 1))``), never on chunk
boundaries, so the output is byte-identical for a given seed whatever
``chunk_size``, ``n_jobs`` and ``backend`` are.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

from augment._checks import check_images, check_number, check_out
from augment.distortion import Distortion
from augment.draws import Draws, draw
from augment.erase import Boxes, Erasing, draw_boxes, erase_boxes
from augment.pipeline import apply
from augment.warp import sub_batch_size

__all__ = ["BACKENDS", "BLOCK_SIZE", "block_generator", "draw_variant_boxes", "draw_variants", "erase_generator",
           "expand"]

#: Number of consecutive variants sharing one random generator.
BLOCK_SIZE = 256

#: Worker kinds accepted by :func:`expand`.
BACKENDS: tuple[str, ...] = ("threads", "processes")

#: Most variants per task handed to a worker thread or process.
MAX_TASK = 8192

#: Sub-batch size of the warps run by worker threads (see ``sub_batch_size``).
THREAD_SUB_BATCH = 256

_local = threading.local()  # per-thread noise buffer


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


def erase_generator(seed: int, block: int) -> np.random.Generator:
    """Generator of the erasing squares of the variants of block ``block``.

    Separate from :func:`block_generator`, so that erasing leaves the
    distortions of an expansion unchanged.

    Returns
    -------
    numpy.random.Generator
        ``Generator(PCG64(SeedSequence(seed, spawn_key=(block, 1))))``.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(block, 1))))


def draw_variant_boxes(
    erasing: Erasing, seed: int, start: int, stop: int, total: int, shape: tuple[int, int]
) -> Boxes:
    """Erasing squares of variants ``start .. stop - 1`` out of ``total``, chunking-independent.

    Parameters as for :func:`draw_variants`; block ``b`` draws its squares from
    :func:`erase_generator` ``(seed, b)``.

    Returns
    -------
    Boxes
        ``stop - start`` entries.
    """
    first, last = start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE
    parts = [
        draw_boxes(erasing, erase_generator(seed, b), min(BLOCK_SIZE, total - b * BLOCK_SIZE), shape)
        for b in range(first, last + 1)
    ]
    base = first * BLOCK_SIZE
    return Boxes.concatenate(parts)[start - base : stop - base]


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
    erasing: Erasing | None = None,
    seed: int = 0,
    chunk_size: int = 256,
    n_jobs: int = 1,
    backend: str = "threads",
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
    erasing : Erasing, optional
        Random erasing (Cutout squares) applied to every variant after its
        distortion (the originals are kept whole); None: no erasing.
    seed : int
        Non-negative seed; equal seeds give byte-identical output for any
        ``chunk_size`` and ``n_jobs``.
    chunk_size : int
        Variants per work item; bounds the temporary memory.
    n_jobs : int
        Number of workers (-1: all CPUs).
    backend : {"threads", "processes"}
        Workers for ``n_jobs > 1``: threads writing straight into ``out``
        (NumPy and BLAS release the GIL; every array operation takes it back
        briefly, so the threads work on sub-batches of ``THREAD_SUB_BATCH``
        images), or joblib's loky processes returning their work to the
        calling process (no GIL sharing, but the workers take about a second
        to start the first time).  Work is dealt out in tasks of whole chunks,
        about four per worker.  The output is the same in every case.
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
    if erasing is not None and not isinstance(erasing, Erasing):
        raise ValueError(f"erasing must be an Erasing or None, got {type(erasing).__name__}")
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
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if progress is not None and not callable(progress):
        raise ValueError("progress must be callable or None")
    out = check_out(out, ((copies + 1) * n, h, w), images.dtype)

    for i0 in range(0, n, chunk_size):
        i1 = min(n, i0 + chunk_size)
        out[i0:i1] = images[i0:i1]
        if progress is not None:
            progress(i1 - i0)

    total = copies * n
    if n_jobs == 1 or total <= chunk_size:
        for start in range(0, total, chunk_size):
            stop = min(total, start + chunk_size)
            _fill_variants(images, distortion, erasing, seed, start, stop, total, out[n + start : n + stop])
            if progress is not None:
                progress(stop - start)
        return out, np.tile(labels, copies + 1)

    from joblib import Parallel, delayed

    # Tasks of whole chunks, about four per worker (at most MAX_TASK variants):
    # few enough to keep the dispatch cheap, enough to balance the load.
    per_task = min(MAX_TASK, -(-total // (4 * n_jobs)))
    step = chunk_size * max(1, -(-per_task // chunk_size))
    tasks = [(s, min(total, s + step)) for s in range(0, total, step)]
    if backend == "threads":
        # Each thread writes its own slice of ``out``, chunk by chunk, with
        # large sub-batches (fewer GIL round trips).
        def work(start: int, stop: int) -> int:
            dest = out[n + start : n + stop]
            with sub_batch_size(THREAD_SUB_BATCH):
                _fill_chunks(images, distortion, erasing, seed, start, stop, total, chunk_size, dest)
            return stop - start

        with Parallel(n_jobs=n_jobs, backend="threading", return_as="generator_unordered") as par:
            for k in par(delayed(work)(s, e) for s, e in tasks):
                if progress is not None:
                    progress(k)
    else:
        # Processes return their work (joblib memory-maps ``images`` for them).
        with Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered") as par:
            jobs = (delayed(_variants)(images, distortion, erasing, seed, s, e, total, chunk_size) for s, e in tasks)
            for start, chunk in par(jobs):
                out[n + start : n + start + len(chunk)] = chunk
                if progress is not None:
                    progress(len(chunk))
    return out, np.tile(labels, copies + 1)


def _fill_chunks(
    images: np.ndarray,
    distortion: Distortion,
    erasing: Erasing | None,
    seed: int,
    start: int,
    stop: int,
    total: int,
    chunk_size: int,
    out: np.ndarray,
) -> None:
    """:func:`_fill_variants` over ``start .. stop - 1`` in pieces of ``chunk_size``.

    Without elastic noise the draws take 40 bytes per image and the
    transforms bound their own scratch memory, so pieces of at least 4096
    images are used: fewer, larger array operations share the GIL better.
    """
    piece = chunk_size if "elastic" in distortion.transforms else max(chunk_size, 4096)
    for lo in range(start, stop, piece):
        hi = min(stop, lo + piece)
        _fill_variants(images, distortion, erasing, seed, lo, hi, total, out[lo - start : hi - start])


def _fill_variants(
    images: np.ndarray,
    distortion: Distortion,
    erasing: Erasing | None,
    seed: int,
    start: int,
    stop: int,
    total: int,
    out: np.ndarray,
) -> None:
    """Write variants ``start .. stop - 1`` (of ``total``) into ``out``.

    Variant ``v`` distorts (then erases) image ``v % N`` with the draws of block
    ``v // BLOCK_SIZE``, whatever the chunking.

    Parameters
    ----------
    images : numpy.ndarray, shape (N, H, W)
        Source images.
    distortion : Distortion
        The random distortion.
    erasing : Erasing or None
        Random erasing applied after the distortion.
    seed : int
        Non-negative seed.
    start, stop, total : int
        Variant range and total number of variants.
    out : numpy.ndarray, shape (stop - start, H, W)
        Destination.
    """
    n, h, w = images.shape

    def source(lo: int, hi: int) -> np.ndarray:
        if lo // n == (hi - 1) // n:  # within one copy: a view
            return images[lo % n : lo % n + (hi - lo)]
        return images[np.arange(lo, hi) % n]

    if erasing is not None:
        boxes = draw_variant_boxes(erasing, seed, start, stop, total, (h, w))
    if distortion.transforms and "elastic" not in distortion.transforms:
        # Small draws: join the blocks and transform the chunk in one call.
        draws = draw_variants(distortion, seed, start, stop, total, (h, w))
        apply(source(start, stop), draws, distortion, out=out)
        if erasing is not None:
            erase_boxes(out, boxes, out=out)
        return
    # Elastic noise is large: transform block by block, straight from each
    # block's noise buffer (no concatenation copy).
    buffer = _noise_buffer(2 * h * BLOCK_SIZE * w)
    for b in range(start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE + 1):
        lo = max(start, b * BLOCK_SIZE)
        hi = min(stop, (b + 1) * BLOCK_SIZE)
        size = min(BLOCK_SIZE, total - b * BLOCK_SIZE)
        noise_out = buffer[: 2 * h * size * w] if "elastic" in distortion.transforms else None
        draws = draw(distortion, block_generator(seed, b), size, (h, w), noise_out=noise_out)
        draws = draws[lo - b * BLOCK_SIZE : hi - b * BLOCK_SIZE]
        apply(source(lo, hi), draws, distortion, out=out[lo - start : hi - start])
    if erasing is not None:
        erase_boxes(out, boxes, out=out)


def _noise_buffer(size: int) -> np.ndarray:
    """This thread's reusable float32 buffer for one block of elastic noise."""
    buf = getattr(_local, "noise", None)
    if buf is None or buf.size < size:
        buf = _local.noise = np.empty(size, dtype=np.float32)
    return buf[:size]


def _variants(
    images: np.ndarray,
    distortion: Distortion,
    erasing: Erasing | None,
    seed: int,
    start: int,
    stop: int,
    total: int,
    chunk_size: int,
) -> tuple[int, np.ndarray]:
    """Process-worker task: variants ``start .. stop - 1`` as a new array."""
    res = np.empty((stop - start, *images.shape[1:]), dtype=images.dtype)
    _fill_chunks(images, distortion, erasing, seed, start, stop, total, chunk_size, res)
    return start, res
