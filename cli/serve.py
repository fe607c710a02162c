"""``ensemble-cnn serve``: a local web page: draw a digit and watch the members vote."""
from __future__ import annotations

import click

from .common import (
    _left_out, _library_errors, allow_missing_option, coverage_option, level_option, members_option, run_option,
    tta_option, vote_option,
)


@click.command()
@run_option
@click.option("--host", default="127.0.0.1", help="Address to listen on (only this machine by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, help="Port (0: any free port).")
@vote_option("The vote the page shows.")
@members_option
@coverage_option
@level_option
@tta_option("each drawn digit")
@allow_missing_option("in /api/info (left_out); the others vote", without="serve refuses to start (exit 1)")
@_library_errors
def serve(run_dir, host, port, method, members, coverage, level, tta, allow_missing):
    """Serve a page where you draw a digit (mouse, pen or touch) and see the 28x28 digit the members saw,
    each member's guess and the vote, with the label set and an 'unsure' or 'this does not look like a digit'
    note (thresholds fixed on the run's calibration digits). Ctrl-C stops it."""
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.predict import ImagePredictor
    from ensemble_cnn.inference.serve import serve as serve_forever

    ensemble = Ensemble.load(run_dir, members=members, voting=method, tta=tta, allow_missing=True)
    _left_out(ensemble.left_out_, ensemble.members_asked_, allow_missing=allow_missing, done="not serving")
    predictor = ImagePredictor(ensemble, voting=method, coverage=coverage, level=level)
    try:
        serve_forever(predictor, host=host, port=port, log=click.echo)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None
