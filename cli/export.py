"""``ensemble-cnn export``: one Keras model (or SavedModel) holding every member and the vote."""
from __future__ import annotations

from pathlib import Path

import click

from .common import (
    _left_out, _library_errors, allow_missing_option, coverage_option, level_option, members_option, run_option,
    vote_option,
)


@click.command()
@run_option
@click.option("--out", "out_text", type=click.Path(), required=True,
              help="The model to write: a .keras file, or a SavedModel folder with --format saved_model.")
@vote_option("The vote in the model's `vote` output.")
@members_option
@click.option("--format", "fmt", type=click.Choice(["keras", "saved_model"]), default="keras",
              help="keras: one .keras file (keras.saving.load_model, safe_mode, no custom objects); saved_model: "
                   "a TensorFlow SavedModel folder for tf.saved_model.load / TensorFlow Serving.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out: a .keras file, or a SavedModel folder of a previous export (one "
                   "holding saved_model.pb). Without it an existing --out is refused, whatever the format.")
@coverage_option
@level_option
@allow_missing_option("in the model's ensemble_cnn.json (left_out); the others are exported")
@_library_errors
def export(run_dir, out_text, method, members, fmt, overwrite, coverage, level, allow_missing):
    """Export every member and the vote as ONE model: input uint8 (N, 28, 28); outputs `vote` (N, 10),
    the vote's probabilities, `members` (N, K, 10), and `unsure_score` and `not_a_digit_score` (N,), whose
    thresholds (fixed on the run's calibration digits at --coverage and --level) are in ensemble_cnn.json.

    --out goes into a folder that exists, never into the run folder nor around it, and never replaces
    an existing file or folder unless --overwrite is given (the same rule for both formats). The model
    carries ensemble_cnn.json (run, vote, members, left-out members, thresholds)."""
    from ensemble_cnn.inference.export import export_ensemble, read_export_metadata
    from ensemble_cnn.storage.outputs import check_output_files, check_output_folder

    out = Path(out_text)
    if fmt == "keras":
        if out.suffix != ".keras":
            raise click.BadParameter(f"{out} must end in .keras (Keras' own format)", param_hint="--out")
        check_output_files([("--out", out_text)], input_folders=[run_dir], new_folders=False, overwrite=overwrite)
    else:
        check_output_folder("--out", out, input_folders=[run_dir], overwrite=overwrite, replaceable="saved_model.pb")
    path = export_ensemble(run_dir, out, voting=method, fmt=fmt, members=members, allow_missing=True,
                           overwrite=overwrite, coverage=coverage, level=level)
    metadata = read_export_metadata(path)
    click.echo(f"wrote {path} ({fmt}, {method} vote, {len(metadata['members'])} members)")
    _left_out({int(e["member"].removeprefix("member_")): e["reason"] for e in metadata["left_out"]},
              metadata["members_asked"], allow_missing=allow_missing,
              done=f"{path} holds the other {len(metadata['members'])}")
