"""What a recipe hands back as one member: its weights and where they came from.

Its own module so that the callbacks (which import Keras) and the recipes (which must not
at import time: :mod:`ensemble_cnn.config` reads the recipe registry) both use it
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """Weights a recipe hands back as one member.

    Attributes
    ----------
    weights : list of ndarray
        ``model.get_weights()`` of the member.
    epoch : int
        1-based epoch the weights come from.
    val_accuracy, val_loss : float
        The member's validation figures at that epoch.
    policy : str
        How it was chosen (e.g. ``"best-validation"``).
    """

    weights: list[np.ndarray]
    epoch: int
    val_accuracy: float
    val_loss: float
    policy: str
