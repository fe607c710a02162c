"""``ensemble-cnn evaluate``: re-score a trained run's members and their votes."""
from __future__ import annotations

from pathlib import Path

import click

from ensemble_cnn.config import MAX_MEMBERS

from .common import _library_errors, data_option, run_option, tta_option, vote_option


@click.command()
@run_option
@data_option
@vote_option("The vote shown in the confusion matrix and error grid (every vote is scored).")
@click.option("--members", "-k", type=click.IntRange(1, MAX_MEMBERS), default=None,
              help="Score only the first K members [default: every member of the run].")
@click.option("--allow-missing", is_flag=True,
              help="Exit 0 even when members are missing or unusable (they are always listed and left out).")
@tta_option("the scored digits")
@click.option("--ood", type=click.Path(exists=True, path_type=Path), multiple=True, metavar="PATH",
              help="Images that are not digits (repeatable): the report says how well each uncertainty score tells "
                   "them from the test digits (\"not a digit\": AUROC, FPR at 95% TPR, AUPR). Anything predict "
                   "reads (image files, arrays, folders of them, sub-folders included); a folder of MNIST-layout IDX "
                   "files (e.g. /usr/share/datasets/fashion-mnist) gives its test images. Only read.")
@_library_errors
def evaluate(run_dir, data, method, members, allow_missing, tta, ood):
    """Reload a run's saved members, predict the test set, and report members vs the ensemble."""
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    report = evaluate_run(run_dir, data=data, voting=method, members=members, reload=True, tta=tta, ood=ood,
                          log=click.echo)
    click.echo(f"report: {run_dir / 'report.md'}")
    dropped = report["dropped_members"]
    if dropped and not allow_missing:
        raise click.ClickException(
            f"{len(dropped)} of {report['members_asked']} members left out (missing or unusable, listed above); "
            "the report scores the others (--allow-missing to accept)"
        )
