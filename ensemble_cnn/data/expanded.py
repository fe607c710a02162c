"""Writing an expanded training set (``ensemble-cnn augment``) with its manifest and preview."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.data.mnist import MnistData
from ensemble_cnn.storage.hashing import sha256_arrays, sha256_file
from ensemble_cnn.data.training import SOURCE_INDEX_KEY, VARIANT_KEY


def manifest_path(npz_path: str | Path) -> Path:
    """The JSON manifest written beside an expanded npz."""
    return Path(npz_path).with_suffix(".json")


def expand_mnist(
    mnist: MnistData,
    *,
    copies: int,
    distortion=None,
    nielsen: bool = False,
    seed: int = 0,
    jobs: int = 1,
    chunk_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Expand the training split.

    Parameters
    ----------
    mnist : MnistData
    copies : int
        Distorted variants per image (ignored with ``nielsen=True``, which makes 4).
    distortion : augment.Distortion, optional
        The random distortion; default ``augment.Distortion()``.
    nielsen : bool
        Nielsen's exact expansion instead: each digit plus its 1-px
        down/up/right/left shifts (no randomness).
    seed, jobs, chunk_size : int
        Passed to :func:`augment.expand`.
    progress : callable, optional
        Receives the number of images done since the last call.

    Returns
    -------
    images : ndarray of uint8, shape ((copies + 1) * N, 28, 28)
        Block layout: the N originals, then variant 1 of every digit, and so on.
    labels : ndarray of uint8, shape ((copies + 1) * N,)
    source_index : ndarray of int32, shape ((copies + 1) * N,)
        The original each row derives from.
    variant : ndarray of int16, shape ((copies + 1) * N,)
        0 for originals, k for the k-th variant.
    """
    import augment

    from ensemble_cnn.data.mnist import check_expansion_size

    n = len(mnist.x_train)
    check_expansion_size(n, 4 if nielsen else copies)
    if nielsen:
        images, labels = augment.nielsen_expand(mnist.x_train, mnist.y_train)
        copies = 4
        if progress is not None:
            progress(len(images))
    else:
        if copies < 0:
            raise ValueError(f"copies must be >= 0, got {copies}")
        images, labels = augment.expand(
            mnist.x_train,
            mnist.y_train,
            copies=copies,
            distortion=distortion if distortion is not None else augment.Distortion(),
            seed=seed,
            chunk_size=chunk_size,
            n_jobs=jobs,
            progress=progress,
        )
    source_index = np.tile(np.arange(n, dtype=np.int32), copies + 1)
    variant = np.repeat(np.arange(copies + 1, dtype=np.int16), n)
    return images, labels, source_index, variant


def write_expanded(
    mnist: MnistData,
    out: str | Path,
    *,
    copies: int,
    distortion=None,
    nielsen: bool = False,
    seed: int = 0,
    jobs: int = 1,
    preview: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Expand MNIST's training split and write it, with a manifest (and a preview).

    Writes ``out`` (Keras npz layout: ``x_train, y_train`` expanded, ``x_test,
    y_test`` copied through, plus ``train_source_index`` and ``train_variant``),
    ``out`` with suffix ``.json`` (the manifest) and the preview, as one transaction:
    all three are renamed into place at the end, or none is. The same inputs and
    seed give a byte-identical npz.

    Returns
    -------
    dict
        The manifest.
    """
    out = Path(out)
    started = time.perf_counter()
    images, labels, source_index, variant = expand_mnist(
        mnist, copies=copies, distortion=distortion, nielsen=nielsen, seed=seed, jobs=jobs, progress=progress
    )
    arrays = dict(x_train=images, y_train=labels, x_test=mnist.x_test, y_test=mnist.y_test,
                  **{SOURCE_INDEX_KEY: source_index, VARIANT_KEY: variant})
    targets = [out, manifest_path(out)] + ([Path(preview)] if preview is not None else [])
    # One transaction: the npz, its manifest and the preview appear together or not at all.
    with _atomic.atomic_paths(*targets) as temporaries:
        _atomic.write_npz_file(temporaries[0], **arrays)
        seconds = time.perf_counter() - started
        manifest = {
            "source": mnist.source,
            "source_train_sha256": sha256_arrays(mnist.x_train, mnist.y_train),
            "method": "nielsen-shifts" if nielsen else "random-distortion",
            "distortion": None if nielsen else (distortion.to_dict() if distortion is not None else _default_distortion()),
            "seed": None if nielsen else seed,
            "copies": int(variant.max()),
            "n_original": int(len(mnist.x_train)),
            "n_train": int(len(images)),
            "n_test": int(len(mnist.x_test)),
            "layout": "block: rows [k*N, (k+1)*N) hold variant k of original digits 0..N-1 (k=0: originals)",
            "file": out.name,
            "sha256": sha256_file(temporaries[0]),
            "seconds": round(seconds, 2),
        }
        if preview is not None:
            from ensemble_cnn.evaluation.plots import render_png
            from ensemble_cnn.evaluation.preview import expanded_preview

            render_png(expanded_preview(images, labels, len(mnist.x_train)), temporaries[2])
            manifest["preview"] = str(preview)
        temporaries[1].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _default_distortion() -> dict[str, Any]:
    import augment

    return augment.Distortion().to_dict()
