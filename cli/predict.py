"""``ensemble-cnn predict``: classify your own digits (images, arrays, folders) with a trained run."""
from __future__ import annotations

from pathlib import Path

import click


from .common import (
    OutputFile, _left_out, _library_errors, allow_missing_option, coverage_option, level_option, members_option,
    run_option, tta_option, vote_option,
)


@click.command()
@run_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of folder PATHS.")
@click.option("--preprocess", type=click.Choice(["mnist", "none"]), default="mnist",
              help="Image files: MNIST's own preprocessing (ink light on dark, cropped, fit to 20x20, centre of "
                   "mass at the centre of 28x28), or none (28x28 images taken as they are). Arrays are always "
                   "taken as they are.")
@vote_option("The vote that labels each digit.")
@members_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              help="Output: a table for the terminal, CSV (path,label,confidence,vote_share,member_labels,p0..p9,"
                   "set,unsure,not_a_digit) or JSON.")
@click.option("--out", type=OutputFile(), default=None,
              help="Write the output to this file instead of the terminal.")
@click.option("--preview", type=OutputFile(), default=None,
              help="Also draw a picture (.png, .jpg, .svg or .pdf, by its ending): each input next to the 28x28 "
                   "digit the members saw, with its label.")
@coverage_option
@level_option
@tta_option("each digit")
@allow_missing_option("in the output (JSON: left_out; CSV: a last column left_out; table: a last line); "
                      "the others vote")
@_library_errors
def predict(run_dir, paths, recursive, preprocess, method, members, fmt, out, preview, coverage, level, tta,
            allow_missing):
    """Classify the digits in PATHS: image files (PNG, JPEG, BMP, GIF, TIFF; one digit each), arrays
    (.npy of (28, 28) or (N, 28, 28), .npz with x or x_test, IDX images) and folders of them.

    Each digit also gets its conformal label set and the flags 'unsure' and 'not a digit', with thresholds fixed
    on the run's calibration digits; the label itself is the vote's, whatever the flags say. A summary line
    (N answered, M set aside) ends the table (JSON: summary; with --out: on standard error).

    A file that cannot be read, and a blank image or digit ("no ink found"), is reported in one line and the
    others are still predicted (exit 1 if any failed; --out is not written when nothing was predicted).
    Inputs are never written to, nor is anything in the run folder; --out and --preview go into folders
    that exist.
    """
    from ensemble_cnn.storage import atomic as _atomic
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.paths import expand_paths
    from ensemble_cnn.storage.outputs import check_output_files, shown
    from ensemble_cnn.inference.predict import format_predictions, predict_paths, preview_format, write_preview

    outputs = [(name, path) for name, path in (("--out", out), ("--preview", preview)) if path is not None]
    check_output_files(outputs, inputs=[*expand_paths(paths, recursive=recursive)[0], *paths], input_folders=[run_dir],
                       new_folders=False)
    if preview is not None:
        preview_format(preview)  # an unknown picture type is refused before the model is loaded
    ensemble = Ensemble.load(run_dir, members=members, voting=method, tta=tta, allow_missing=True)
    _left_out(ensemble.left_out_, ensemble.members_asked_, allow_missing=True, done="")
    predictions = predict_paths(ensemble, paths, recursive=recursive, preprocess=preprocess, voting=method,
                                thumbnails=preview is not None, coverage=coverage, level=level)
    for path, reason in predictions.failures:
        click.echo(f"{shown(path)}: {reason}", err=True)
    text = format_predictions(predictions, fmt=fmt)
    if out is None:
        click.echo(text, nl=False)
    elif predictions.items:
        _atomic.write_text(out, text)
        click.echo(f"wrote {len(predictions.items)} predictions to {shown(out)}; {predictions.summary()}", err=True)
    else:  # every input failed: an existing --out keeps its content, and no new file is made
        click.echo(f"no digit predicted: {shown(out)} not written", err=True)
    if preview is not None and predictions.items:
        write_preview(predictions, preview)
    elif preview is not None:
        click.echo(f"no digit predicted: {shown(preview)} not drawn", err=True)
    if predictions.failures:
        raise click.ClickException(f"{len(predictions.failures)} path(s) not predicted (listed above); "
                                   f"{len(predictions.items)} digit(s) predicted")
    if ensemble.left_out_ and not allow_missing:
        raise click.ClickException(f"{len(ensemble.left_out_)} of {ensemble.members_asked_} members left out (missing "
                                   "or unusable, listed above); the others predicted (--allow-missing to accept)")
