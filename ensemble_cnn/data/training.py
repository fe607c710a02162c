"""What one member trains and validates on: the data split and the batch stream."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

import augment

from ensemble_cnn.data.mnist import DataError, MnistData, load_mnist
from ensemble_cnn.data.reader import read_npz
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.storage.hashing import sha256_arrays
from ensemble_cnn.seeding import (
    BOOTSTRAP_STREAM, DISTORTION_STREAM, EPOCH_STREAM, ERASE_STREAM, HOLDOUT_STREAM, VALIDATION_STREAM, rng_for,
    run_rng,
)

# Extra arrays stored by ``ensemble-cnn augment`` next to the Keras layout.
SOURCE_INDEX_KEY = "train_source_index"  # int32 (M,): which original each row comes from
VARIANT_KEY = "train_variant"  # int16 (M,): 0 = the original, k = k-th distorted copy


@dataclass(frozen=True)
class TrainingPool:
    """Training images with their provenance.

    Attributes
    ----------
    data : MnistData
        ``x_train``/``y_train`` may be an expanded set (M rows); the test split is MNIST's.
    source_index : ndarray of int, shape (M,)
        Index of the original training digit each row derives from.
    variant : ndarray of int, shape (M,)
        0 for an original digit, k >= 1 for its k-th distorted copy.
    n_originals : int
        Number of original training digits.
    """

    data: MnistData
    source_index: np.ndarray
    variant: np.ndarray
    n_originals: int


def load_pool(*, data: str | None, expanded: str | None, limit: int | None) -> TrainingPool:
    """Load MNIST, or a pre-expanded set, keeping the first ``limit`` originals."""
    if expanded is None:
        mnist = load_mnist(data).limit(limit)
        n = len(mnist.x_train)
        return TrainingPool(mnist, np.arange(n), np.zeros(n, dtype=np.int16), n)
    mnist = load_mnist(expanded)
    source_index, variant = _provenance(Path(expanded), len(mnist.x_train))
    if limit is not None:
        keep = source_index < limit
        mnist = MnistData(mnist.x_train[keep], mnist.y_train[keep], mnist.x_test, mnist.y_test, mnist.source)
        source_index, variant = source_index[keep], variant[keep]
    return TrainingPool(mnist, source_index, variant, int(source_index.max()) + 1)


def normalized_pool(pool: TrainingPool, normalize: str) -> TrainingPool:
    """``pool`` with every training and test digit under the input normalization ``normalize``.

    ``"none"`` returns ``pool`` itself; otherwise a new pool (labels and provenance
    shared). See :func:`augment.normalize`.
    """
    if normalize == "none":
        return pool
    data = dataclasses.replace(pool.data, x_train=augment.normalize(pool.data.x_train, normalize),
                               x_test=augment.normalize(pool.data.x_test, normalize))
    return dataclasses.replace(pool, data=data)


def data_fingerprint(pool: TrainingPool) -> str:
    """sha256 of the training and test arrays a run uses."""
    return sha256_arrays(pool.data.x_train, pool.data.y_train, pool.data.x_test, pool.data.y_test)


def _provenance(path: Path, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each row of an expanded set comes from, checked: every original once as variant 0, no wild index."""
    arrays = read_npz(path, (SOURCE_INDEX_KEY, VARIANT_KEY), optional=True)
    if not arrays:
        # A plain Keras-layout file: every row is its own original.
        return np.arange(n_rows), np.zeros(n_rows, dtype=np.int16)
    source_index, variant = arrays[SOURCE_INDEX_KEY], arrays[VARIANT_KEY]
    where = f"{shown(path)}: {SOURCE_INDEX_KEY}/{VARIANT_KEY}"
    if source_index.shape != (n_rows,) or variant.shape != (n_rows,):
        raise DataError(f"{where} must have shape ({n_rows},)")
    if not (np.issubdtype(source_index.dtype, np.integer) and np.issubdtype(variant.dtype, np.integer)):
        raise DataError(f"{where} must hold integers")
    if n_rows and (source_index.min() < 0 or variant.min() < 0):
        raise DataError(f"{where} hold negative values")
    originals = source_index[variant == 0]
    n_originals = len(originals)
    if n_originals == 0:
        raise DataError(f"{where}: no original (variant 0) rows")
    if source_index.max() >= n_originals or len(np.unique(originals)) != n_originals:
        raise DataError(f"{where}: the variant-0 rows must hold each original 0..{n_originals - 1} once, and every "
                        f"row's {SOURCE_INDEX_KEY} must be one of them")
    return source_index.astype(np.int64), variant.astype(np.int16)


@dataclass(frozen=True)
class MemberSplit:
    """Row indices into the pool: what a member trains on and what picks its checkpoint."""

    train_rows: np.ndarray
    val_rows: np.ndarray


def split_for_member(pool: TrainingPool, *, val_size: int, seed: int, bootstrap: bool = False,
                     holdout: str = "member", root_seed: int | None = None) -> MemberSplit:
    """Hold out ``val_size`` originals (capped at a tenth; none for 0), drawn from the member's seed.

    Validation uses the held-out originals undistorted; training uses every row
    (original or variant) whose source digit is not held out, so no distorted copy of
    a validation digit leaks into training. With ``bootstrap`` (bagging) the training
    rows are instead ``n`` draws with replacement from those ``n`` rows (about 63% of
    them distinct), drawn from ``(seed, BOOTSTRAP_STREAM)``; the rows come out sorted.

    Parameters
    ----------
    pool : TrainingPool
    val_size : int
    seed : int
        The member's seed (its hold-out with ``holdout="member"``, its bootstrap draws).
    bootstrap : bool
    holdout : {"member", "shared"}
        ``"member"``: each member holds out its own originals, drawn from ``(seed,
        VALIDATION_STREAM)``. ``"shared"``: every member of the run holds out the same
        originals (:func:`shared_holdout`, drawn from ``root_seed``), so they lie outside
        every member's training data: the run's calibration digits.
    root_seed : int, optional
        The run's root seed; required with ``holdout="shared"``.

    Returns
    -------
    MemberSplit
        ``val_rows`` (V,) and ``train_rows`` (N,) index the pool's rows, sorted.
    """
    if holdout == "shared":
        if root_seed is None:
            raise ValueError("holdout shared needs the run's root seed (root_seed)")
        held_out = _held_out(pool, val_size, run_rng(root_seed, HOLDOUT_STREAM))
    elif holdout == "member":
        held_out = _held_out(pool, val_size, rng_for(seed, VALIDATION_STREAM))
    else:
        raise ValueError(f"holdout must be member or shared, got {holdout!r}")
    in_val = held_out[pool.source_index]
    val_rows = np.flatnonzero(in_val & (pool.variant == 0))
    train_rows = np.flatnonzero(~in_val)
    if bootstrap:
        draws = rng_for(seed, BOOTSTRAP_STREAM).integers(0, len(train_rows), size=len(train_rows))
        train_rows = train_rows[np.sort(draws)]
    return MemberSplit(train_rows=train_rows, val_rows=val_rows)


def shared_holdout(pool: TrainingPool, *, val_size: int, root_seed: int) -> np.ndarray:
    """The pool rows every member of a ``holdout="shared"`` run holds out: the run's calibration digits.

    Returns
    -------
    ndarray of int64, shape (V,)
        Sorted rows of the held-out originals (undistorted), ``V = max(1, min(val_size,
        n_originals // 10))``; the ``val_rows`` of :func:`split_for_member` for every member.
    """
    held_out = _held_out(pool, val_size, run_rng(root_seed, HOLDOUT_STREAM))
    return np.flatnonzero(held_out[pool.source_index] & (pool.variant == 0)).astype(np.int64)


def _held_out(pool: TrainingPool, val_size: int, rng: np.random.Generator) -> np.ndarray:
    """bool (n_originals,): the originals held out, ``val_size`` (capped at a tenth; none for 0) drawn from ``rng``."""
    n_val = max(1, min(val_size, pool.n_originals // 10)) if val_size > 0 else 0
    held_out = np.zeros(pool.n_originals, dtype=bool)
    held_out[rng.choice(pool.n_originals, size=n_val, replace=False)] = True
    return held_out


def batch_stream(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    distortion=None,
    erasing=None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield shuffled (and, with ``distortion`` / ``erasing``, freshly distorted / erased) batches, epoch after epoch.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, 28, 28)
    labels : ndarray, shape (N,) or (N, 10)
        Integer labels, or soft targets (a distilled run's, one row per image).
    batch_size, epochs : int
    seed : int
        The training run's seed. Epoch ``e`` draws its order from
        ``(seed, EPOCH_STREAM, e)`` and batch ``b`` of it its distortions from
        ``(seed, DISTORTION_STREAM, e, b)`` and its erasing squares from
        ``(seed, ERASE_STREAM, e, b)``, so the stream is reproducible and any
        batch can be rebuilt alone (:func:`distorted_views`).
    distortion : augment.Distortion, optional
        Applied to every batch with fresh random draws.
    erasing : augment.Erasing, optional
        Random erasing (Cutout squares set to 0) applied to every batch after the
        distortion, with fresh random draws; it leaves the distortions' draws unchanged.

    Yields
    ------
    (ndarray of uint8, shape (B, 28, 28), ndarray of int32, shape (B,) or of float32, shape (B, 10))
    """
    labels = labels.astype(np.int32) if labels.ndim == 1 else labels.astype(np.float32)
    for epoch in range(epochs):
        order = epoch_order(len(images), seed=seed, epoch=epoch)
        for batch_index, start in enumerate(range(0, len(order), batch_size)):
            rows = np.sort(order[start : start + batch_size])
            batch = images[rows]
            batch = _augmented(batch, seed=seed, epoch=epoch, batch_index=batch_index, distortion=distortion,
                               erasing=erasing)
            yield batch, labels[rows]


def _augmented(batch: np.ndarray, *, seed: int, epoch: int, batch_index: int, distortion, erasing) -> np.ndarray:
    """Batch ``batch_index`` of epoch ``epoch`` distorted, then erased, from its own random streams."""
    if distortion is not None:
        batch = augment.distort(batch, distortion, rng_for(seed, DISTORTION_STREAM, epoch, batch_index))
    if erasing is not None:
        batch = augment.erase(batch, erasing, rng_for(seed, ERASE_STREAM, epoch, batch_index))
    return batch


def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n`` training rows."""
    return rng_for(seed, EPOCH_STREAM, epoch).permutation(n)


def distorted_views(
    images: np.ndarray,
    rows: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    seed: int,
    distortion,
    erasing=None,
) -> np.ndarray:
    """The very distorted (and erased) versions of some training rows that :func:`batch_stream` yields in each epoch.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, 28, 28)
        The run's training images (as given to :func:`batch_stream`).
    rows : ndarray of int, shape (R,)
        Rows of ``images`` to follow.
    batch_size, seed, distortion, erasing : as for :func:`batch_stream`
    epochs : int
        How many epochs to show (the first ones).

    Returns
    -------
    ndarray of uint8, shape (R, epochs, 28, 28)
        ``[r, e]``: row ``rows[r]`` as the run trained on it in epoch ``e``.
    """
    views = np.empty((len(rows), epochs, *images.shape[1:]), dtype=images.dtype)
    for epoch in range(epochs):
        order = epoch_order(len(images), seed=seed, epoch=epoch)
        where = np.empty(len(images), dtype=np.int64)
        where[order] = np.arange(len(order))
        for r, row in enumerate(rows):
            batch_index = where[row] // batch_size
            start = batch_index * batch_size
            batch_rows = np.sort(order[start : start + batch_size])
            batch = _augmented(images[batch_rows], seed=seed, epoch=epoch, batch_index=batch_index,
                               distortion=distortion, erasing=erasing)
            views[r, epoch] = batch[np.searchsorted(batch_rows, row)]
    return views
