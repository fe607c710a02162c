"""``ensemble-cnn``: expand MNIST, train an ensemble of ConvNets, evaluate its vote.

The group and its commands, one module each (click's ``examples/complex`` shape); what they
share (error translation, option sets, the training config) is in :mod:`.common`. The
command line only parses options and wires library calls; TensorFlow is imported only by
the commands that train or evaluate, inside their functions. Every training default is read
from :class:`ensemble_cnn.config.TrainConfig`, every vote from
:data:`ensemble_cnn.inference.vote.VOTES`.
"""
from __future__ import annotations

import click

from .augment import augment
from .compare import compare
from .evaluate import evaluate
from .export import export
from .predict import predict
from .run import run
from .serve import serve
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="ensemble-cnn")
@click.option("--verbose", is_flag=True,
              help="Show TensorFlow's own start-up lines (also ENSEMBLE_CNN_VERBOSE=1).")
def main(verbose: bool) -> None:
    """Near-perfect MNIST with an ensemble of ReLU + dropout ConvNets.

    \b
    augment   write an expanded training set (shifts, rotations, elastic distortions)
    train     train K ConvNets (resumable, growable), then report members vs the ensemble
    evaluate  re-score a trained run's members and their votes
    compare   several runs side by side on the same digits, with paired tests
    run       train + evaluate with good defaults (the one-shot job)
    predict   classify your own digits (images, arrays, folders) with a trained run
    export    one Keras model (or SavedModel) holding every member and the vote
    serve     a local web page: draw a digit and watch the members vote
    """
    from ensemble_cnn.runtime import prepare_environment

    prepare_environment(verbose=True if verbose else None)


for command in (augment, train, evaluate, compare, run, predict, export, serve):
    main.add_command(command)
