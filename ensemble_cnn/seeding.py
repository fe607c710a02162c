"""Seeds derived from the user's root seed: every random draw in a run starts here."""
from __future__ import annotations

import numpy as np


def member_seed(root_seed: int, member_index: int) -> int:
    """A 31-bit seed for member ``member_index``, derived from ``(root_seed, member_index)``.

    Independent of how many members the run has, so member ``i`` of a 3-member run
    equals member ``i`` of a 5-member run with the same root seed.
    """
    state = np.random.SeedSequence(root_seed, spawn_key=(member_index,)).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one purpose within a member, e.g. ``rng_for(seed, EPOCH_STREAM, epoch)``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=tuple(keys))))


def run_rng(root_seed: int, stream: int) -> np.random.Generator:
    """A generator for one purpose of the whole run, from the root seed itself: ``run_rng(seed, HOLDOUT_STREAM)``.

    Its spawn key ``(stream, 0)`` has two entries, and member ``i``'s seed comes from the
    one-entry key ``(i,)`` (:func:`member_seed`): a run-level draw never shares a member's numbers.
    """
    return rng_for(root_seed, stream, 0)


# Stream identifiers: separate purposes never share random numbers.
VALIDATION_STREAM = 0
EPOCH_STREAM = 1
DISTORTION_STREAM = 2
BOOTSTRAP_STREAM = 3
ERASE_STREAM = 4
HOLDOUT_STREAM = 5  # the hold-out every member shares (holdout="shared"): a run-level stream, see run_rng
GAUSSIAN_STREAM = 6  # the training originals a member's feature Gaussian is fitted on (ensemble_cnn.inference.features)
