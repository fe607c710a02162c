"""``ensemble-cnn run``: train + evaluate with good defaults (the one-shot job)."""
from __future__ import annotations

import click

from .common import _library_errors, _train_config, training_options
from .train import _run_dir, _train_and_report


@click.command()
@training_options
@_library_errors
def run(**opts):
    """The one-shot job: train an augmented ensemble with good defaults, then evaluate it.

    Same options as `train`; also draws what member 00 trained on (preview.png in the
    run folder: one digit of each class and its distortion in each of the first epochs).
    """
    config = _train_config(opts)
    _train_and_report(config, _run_dir(config, opts), preview=True)
