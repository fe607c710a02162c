"""``ensemble-cnn train``: train K ConvNets (resumable, growable), then report members vs the ensemble."""
from __future__ import annotations

from pathlib import Path

import click

from .common import DEFAULT_ARTIFACTS, _library_errors, _train_config, training_options


def _run_dir(config, opts: dict) -> Path:
    """The run folder (``--out`` or the default name), checked before anything is read: not a file, and not
    being, holding or inside what the run reads (``--data``, ``--expanded``, ``--plan``, ``--teacher``)."""
    from ensemble_cnn.storage.outputs import check_run_folder_target

    kind = "plan" if config.plan is not None else config.arch
    run_dir = opts["out"] or DEFAULT_ARTIFACTS / "runs" / f"{kind}-k{config.members}-s{config.seed}"
    check_run_folder_target(run_dir, inputs=[opts[name] for name in ("data", "expanded", "plan", "teacher")
                                             if opts[name] is not None])
    return run_dir


def _train_and_report(config, run_dir: Path, *, preview: bool = False) -> None:
    from ensemble_cnn.training.job import train_and_evaluate

    click.echo(f"run folder {run_dir}")
    job = train_and_evaluate(config, run_dir, preview=preview, log=click.echo)
    result = job.train
    click.echo(f"training took {result.seconds:.1f} s (trained {len(result.trained)}, kept {len(result.reused)})")
    if job.report is not None:
        click.echo(f"report: {run_dir / 'report.md'}")
    if result.failures:
        for index, reason in sorted(result.failures.items()):
            click.echo(f"member {index:02d} failed: {reason}", err=True)
        raise click.ClickException(
            f"{len(result.failures)} of {config.members} members failed; the others are saved in {run_dir} "
            "(run the same command again to retry)"
        )


@click.command()
@training_options
@_library_errors
def train(**opts):
    """Train K ConvNets (resuming or growing a run) and report members vs their votes."""
    config = _train_config(opts)
    _train_and_report(config, _run_dir(config, opts))
