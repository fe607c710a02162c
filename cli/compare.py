"""``ensemble-cnn compare``: several runs side by side on the same digits, with paired tests."""
from __future__ import annotations

import click

from .common import Folder, _library_errors, allow_missing_option, data_option, vote_option


@click.command()
@click.argument("runs", nargs=-1, required=True, type=Folder())
@data_option
@vote_option("The vote whose ensembles the paired tests compare (every vote is scored).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of a table.")
@allow_missing_option("in the table, or in each run's left_out in the JSON; the others are compared")
@_library_errors
def compare(runs, data, method, as_json, allow_missing):
    """Compare RUNS (two or more run folders) on the same test digits: accuracies with 95% intervals,
    and an exact McNemar test between every pair of ensembles.

    Without --data each run's saved test probabilities are used (they must be for the same
    test digits); with --data every member is reloaded and scored on that file's test split.
    Either way a member that is missing, corrupt or cannot be loaded is left out and named.
    """
    import json

    from ensemble_cnn.evaluation.compare import compare_runs, format_comparison

    if len(runs) < 2:
        raise click.BadParameter("give at least two run folders", param_hint="'RUNS...'")  # as click names it
    comparison = compare_runs(runs, data=data, voting=method, allow_missing=True)
    click.echo(json.dumps(comparison, indent=2) if as_json else format_comparison(comparison), nl=as_json)
    for row in comparison["runs"]:
        for entry in row["left_out"]:
            click.echo(f"{row['run']}: {entry['member']} left out: {entry['reason']}", err=True)
    missing = [row for row in comparison["runs"] if row["left_out"]]
    if missing and not allow_missing:
        raise click.ClickException(f"{', '.join(row['run'] for row in missing)}: members left out (missing or "
                                   "unusable, listed above); the others were compared (--allow-missing to accept)")
