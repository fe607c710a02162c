"""Preview pictures of distortions: an expanded set's variants, and what a run's members trained on."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PREVIEW_VARIANTS = 8


def one_per_class(labels: np.ndarray, *, n_classes: int = 10) -> np.ndarray:
    """Row of the first digit of each class present in ``labels``, by class."""
    labels = np.asarray(labels)
    return np.array([int(np.argmax(labels == c)) for c in range(n_classes) if np.any(labels == c)], dtype=np.int64)


def write_preview(images: np.ndarray, labels: np.ndarray, n_original: int, path: str | Path) -> Path:
    """Draw :func:`expanded_preview` into ``path`` (PNG, atomically)."""
    from ensemble_cnn.evaluation.plots import save_figure

    return save_figure(expanded_preview(images, labels, n_original), path)


def expanded_preview(images: np.ndarray, labels: np.ndarray, n_original: int):
    """Figure of an expanded set: one original of each class (a row each), then its first variants.

    Parameters
    ----------
    images : ndarray of uint8, shape ((V + 1) * n_original, 28, 28)
        Block layout of :func:`ensemble_cnn.data.expanded.expand_mnist`: the originals, then
        variant 1 of every digit, and so on.
    labels : ndarray, shape (len(images),)
    n_original : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ensemble_cnn.evaluation.plots import preview_figure

    n_variants = len(images) // n_original - 1
    if n_variants < 1:
        raise ValueError("an expanded set without variants has nothing to preview")
    rows = one_per_class(labels[:n_original])
    shown = min(PREVIEW_VARIANTS, n_variants)
    variants = np.stack([images[rows + k * n_original] for k in range(1, shown + 1)], axis=1)
    return preview_figure(images[rows], variants)


def write_training_preview(config, path: str | Path, *, member: int = 0, epochs: int = PREVIEW_VARIANTS) -> Path:
    """Draw what a run's member trained on: one digit of each class, then its distortion in each epoch.

    The digits and distortions are the member's own (its training split, its seed, its
    batch stream), rebuilt without training (:func:`ensemble_cnn.data.training.distorted_views`).

    Parameters
    ----------
    config : TrainConfig
        The run's config (``augmentation="distort"``).
    path : path-like
        Destination PNG.
    member : int
        Which member's stream to show.
    epochs : int
        How many epochs (columns) to show.
    """
    from augment import Distortion

    from ensemble_cnn.evaluation.plots import plot_preview
    from ensemble_cnn.training.recipes import get_recipe
    from ensemble_cnn.training.member import plan_run, run_config, run_of
    from ensemble_cnn.data.training import distorted_views, load_pool, normalized_pool

    run = run_of(member, get_recipe(config.recipe))
    own = run_config(config, run)  # the member's plan group's settings (its normalization, distortion, ...)
    pool = normalized_pool(load_pool(data=config.data, expanded=config.expanded, limit=config.limit), own.normalize)
    plan = plan_run(own, run, pool)
    rows = one_per_class(plan.y_train)
    shown = min(epochs, own.epochs)
    views = distorted_views(plan.x_train, rows, batch_size=own.batch_size, epochs=shown, seed=plan.seed,
                            distortion=Distortion.from_dict(own.distortion), erasing=plan.erasing)
    titles = ["original"] + [f"epoch {e + 1}" for e in range(shown)]
    return plot_preview(plan.x_train[rows], views, path, titles=titles)
