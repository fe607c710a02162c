"""``ensemble-cnn augment``: write an expanded training set (shifts, rotations, elastic distortions)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .common import (
    AUGMENT_DEFAULTS, DEFAULT_EXPANDED, OutputFile, _distortion, _library_errors, data_option, distortion_options,
    limit_option, seed_option,
)


@click.command()
@data_option
@click.option("--out", type=click.Path(), default=str(DEFAULT_EXPANDED),
              help="Output npz (Keras layout); a JSON manifest is written beside it. A folder (or a path "
                   "ending in /) gets mnist_expanded.npz in it.")
@click.option("--copies", type=click.IntRange(min=0), default=4, help="Distorted variants per training digit.")
@click.option("--nielsen", is_flag=True,
              help="Nielsen's exact expansion instead: each digit plus its 1-px up/down/left/right shifts.")
@distortion_options(AUGMENT_DEFAULTS)
@seed_option
@click.option("--jobs", type=click.IntRange(min=1), default=2, help="Worker threads.")
@limit_option
@click.option("--preview", type=OutputFile(), default=None,
              help="Also draw a PNG grid: one original of each class and its variants.")
@_library_errors
def augment(data, out, copies, nielsen, transforms, max_shift, max_rotation, max_scale, alpha, sigma,
            seed, jobs, limit, preview):
    """Write an expanded MNIST training set (originals + COPIES distorted variants each)."""
    from ensemble_cnn.data.mnist import check_expansion_size, data_files, load_mnist
    from ensemble_cnn.data.expanded import manifest_path, write_expanded
    from ensemble_cnn.storage.outputs import check_output_files

    distortion = None if nielsen else _distortion(transforms, max_shift, max_rotation, max_scale, alpha, sigma)
    if preview is not None and copies == 0 and not nielsen:
        raise click.BadParameter("needs at least one variant to draw (--copies 0 makes none)", param_hint="--preview")
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        out = Path(out) / DEFAULT_EXPANDED.name  # a folder: the default file name in it
    out = Path(out)
    outputs = [("--out", out), ("--out", manifest_path(out))] + ([("--preview", preview)] if preview else [])
    check_output_files(outputs, inputs=data_files(data))
    mnist = load_mnist(data).limit(limit)
    check_expansion_size(len(mnist.x_train), 4 if nielsen else copies, option="--copies")
    for path in (out, preview):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    total = len(mnist.x_train) * ((4 if nielsen else copies) + 1)
    with click.progressbar(length=total, label="expanding", file=sys.stderr) as bar:
        manifest = write_expanded(
            mnist, out, copies=copies, distortion=distortion, nielsen=nielsen, seed=seed, jobs=jobs,
            preview=preview, progress=bar.update,
        )
    click.echo(
        f"wrote {manifest['n_train']:,} training images ({manifest['n_original']:,} originals x "
        f"{manifest['copies'] + 1}) to {out} in {manifest['seconds']:.1f} s\n"
        f"manifest {manifest_path(out)}  sha256 {manifest['sha256']}"
        + (f"\npreview {preview}" if preview is not None else "")
    )
