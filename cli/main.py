"""``ensemble-cnn``: expand MNIST, train an ensemble of ConvNets, evaluate its vote.

This module only parses options and wires library calls; TensorFlow is imported
only by the commands that train or evaluate. Every training default is read from
:class:`ensemble_cnn.config.TrainConfig`, every vote from
:data:`ensemble_cnn.inference.vote.VOTES`.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from augment import LIMITS, TRANSFORMS as TRANSFORM_NAMES
from augment import TTA_VIEWS, Distortion
from ensemble_cnn.config import (
    AUGMENTATIONS, BACKENDS, CHECKPOINTS, MAX_MEMBERS, MAX_SEED, MODES, PRECISIONS, PRESETS, SCHEDULES,
    field_default, option_name,
)
from ensemble_cnn.models import ARCHITECTURES
from ensemble_cnn.training.recipes import RECIPES
from ensemble_cnn.inference.vote import VOTES

DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_EXPANDED = DEFAULT_ARTIFACTS / "mnist_expanded.npz"


def _library_errors(func):
    """Turn the library's errors into one-line click errors: bad output paths exit 2, bad data or folders 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ensemble_cnn.data.mnist import DataError
        from ensemble_cnn.errors import BackendError, RunFolderError
        from ensemble_cnn.storage.outputs import OutputPathError, shown

        try:
            return func(*args, **kwargs)
        except OutputPathError as exc:
            raise click.BadParameter(_one_line(exc), param_hint=exc.option) from None
        except (DataError, RunFolderError, BackendError) as exc:
            raise click.ClickException(_one_line(exc)) from None
        except MemoryError:
            raise click.ClickException("out of memory (try a smaller --limit or --copies)") from None
        except OSError as exc:
            where = f"{shown(exc.filename)}: " if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None

    return wrapper


def _one_line(exc: BaseException) -> str:
    """The message as one line (a library message is one line; control characters are escaped, never cut)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return "".join(c if ord(c) >= 32 and ord(c) != 127 else repr(c)[1:-1] for c in text)


def _transforms(ctx, param, value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [n for n in names if n not in TRANSFORM_NAMES]
    if not names or unknown:
        raise click.BadParameter(
            f"expected a comma-separated subset of {','.join(TRANSFORM_NAMES)}, got {value!r}", ctx, param
        )
    return names


# Simard et al. 2003 for `augment`; for training, the milder, smoother fields of
# Ciresan et al.'s MNIST committees (sigma 6, alpha 36) with a slightly larger zoom range.
AUGMENT_DEFAULTS = {key: value for key, value in Distortion().to_dict().items() if key != "transforms"}
TRAIN_DEFAULTS = {key: value for key, value in field_default("distortion").items() if key != "transforms"}


def distortion_options(defaults: dict):
    """The random-distortion options shared by ``augment``, ``train`` and ``run``."""

    def decorate(func):
        options = [
            click.option("--transforms", default=",".join(TRANSFORM_NAMES), show_default=True, callback=_transforms,
                         help="Comma-separated transforms composed into each distortion."),
            click.option("--max-shift", type=click.IntRange(*LIMITS["max_shift"]), default=defaults["max_shift"],
                         show_default=True, help="Largest integer shift in pixels, per axis."),
            click.option("--max-rotation", type=click.FloatRange(*LIMITS["max_rotation"]),
                         default=defaults["max_rotation"], show_default=True,
                         help="Largest rotation in degrees (uniform in ±max)."),
            click.option("--max-scale", type=click.FloatRange(0, 1, max_open=True), default=defaults["max_scale"],
                         show_default=True, help="Largest zoom change (factor uniform in 1±max)."),
            click.option("--alpha", type=click.FloatRange(*LIMITS["alpha"]), default=defaults["alpha"],
                         show_default=True, help="Elastic strength in pixels (Simard's alpha; 0 = off; above 100 "
                                                 "a digit no longer looks like one)."),
            click.option("--sigma", type=click.FloatRange(*LIMITS["sigma"]), default=defaults["sigma"],
                         show_default=True, help="Elastic smoothness: Gaussian width in pixels (Simard's sigma)."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _distortion(transforms, max_shift, max_rotation, max_scale, alpha, sigma):
    try:
        return Distortion(
            transforms=transforms, max_shift=max_shift, max_rotation=max_rotation,
            max_scale=max_scale, alpha=alpha, sigma=sigma,
        )
    except ValueError as exc:
        raise click.UsageError(_option_message(_one_line(exc))) from None


data_option = click.option(
    "--data", type=click.Path(path_type=Path), default=None,
    help="MNIST as a Keras mnist.npz or a folder of the four IDX files. Default: Keras' download/cache.",
)
limit_option = click.option(
    "--limit", type=click.IntRange(min=20), default=None, help="Use only the first N training images (quick runs).",
)
seed_option = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=field_default("seed"),
                           show_default=True, help="Root seed of every random draw (0 .. 2**63 - 1).")
def allow_missing_option(where: str, *, without: str = "it still does its work, then exits 1"):
    """``--allow-missing``: accept a run whose members are not all usable (they are named whatever the flag)."""
    return click.option(
        "--allow-missing", is_flag=True,
        help=f"Members that are missing or unusable (never trained, corrupt, not loadable) are left out and named "
             f"on stderr and {where}. Without this flag {without}.")


def _left_out(left_out: dict[int, str], asked: int, *, allow_missing: bool, done: str) -> None:
    """Name every left-out member on stderr; exit 1 (``done`` says what was still done) unless ``allow_missing``."""
    for index, reason in sorted(left_out.items()):
        click.echo(f"member {index:02d} left out: {reason}", err=True)
    if left_out and not allow_missing:
        raise click.ClickException(f"{len(left_out)} of {asked} members left out (missing or unusable, listed above); "
                                   f"{done} (--allow-missing to accept)")


def vote_option(help_text: str):
    """``--vote``: one of the rules in :data:`ensemble_cnn.inference.vote.VOTES`."""
    return click.option("--vote", "method", type=click.Choice(list(VOTES)), default="majority",
                        help=help_text + " " + "; ".join(f"{name}: {rule.description}" for name, rule in VOTES.items()))


def tta_option(what: str):
    """``--tta``: a view set of :data:`augment.TTA_VIEWS` (test-time augmentation)."""
    return click.option(
        "--tta", type=click.Choice(list(TTA_VIEWS)), default="none",
        help=f"Test-time augmentation for {what}: each member's probabilities averaged over fixed views of each "
             "digit (shift: itself + 1-pixel shifts down/up/right/left, 5 views; rotate: itself and +-5 degrees, "
             "3 views; shift-rotate: 7 views). V views cost V times the prediction time.")


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


# --------------------------------------------------------------------------- augment
@main.command()
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
@click.option("--preview", type=click.Path(path_type=Path), default=None,
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


# --------------------------------------------------------------------------- train
# TrainConfig fields whose command-line parameter has another name.
FIELD_PARAMS = {"learning_rate": "lr"}


def _preset_options(name: str) -> str:
    """A preset as the ordinary options it sets, e.g. ``--members 3 --epochs 10``."""
    return " ".join(f"{option_name(key)} {value}" for key, value in PRESETS[name].items()) or "(TrainConfig's defaults)"


def training_options(func):
    """Every option of ``train`` and ``run``; defaults from TrainConfig."""
    d = field_default
    options = [
        click.option("--preset", type=click.Choice(list(PRESETS)), default="default",
                     help="A named set of ordinary options, which options given here override: "
                          + "; ".join(f"{name} = {_preset_options(name)}" for name in PRESETS)
                          + ". Saved in config.json."),
        data_option,
        click.option("--expanded", type=click.Path(path_type=Path), default=None,
                     help="Train on a pre-expanded npz written by `ensemble-cnn augment` instead of --data."),
        click.option("--members", "-k", type=click.IntRange(1, MAX_MEMBERS), default=d("members"),
                     help="Ensemble members K. On a finished run, a larger K keeps its members and trains the rest."),
        click.option("--arch", type=click.Choice(ARCHITECTURES), default=d("arch"),
                     help="Member architecture (see the README's Models)."),
        click.option("--recipe", type=click.Choice(list(RECIPES)), default=d("recipe"),
                     help="How one member trains: " + "; ".join(f"{n}: {r.description}" for n, r in RECIPES.items())),
        click.option("--epochs", "-e", type=click.IntRange(min=1), default=d("epochs"), help="Epochs per member."),
        click.option("--batch-size", type=click.IntRange(min=1), default=d("batch_size"), help="Mini-batch size."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=d("learning_rate"),
                     help="Adam's initial learning rate."),
        click.option("--final-lr-fraction", type=click.FloatRange(0, 1, min_open=True), default=d("final_lr_fraction"),
                     help="The learning rate ends at this fraction of --lr."),
        click.option("--schedule", type=click.Choice(SCHEDULES), default=d("schedule"),
                     help="Learning-rate schedule: exponential decay per epoch, cosine decay, or one cycle "
                          "(linear warm-up over 30% of the steps from --lr/25, then cosine)."),
        click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=d("ema"),
                     help="Moving average of the weights with this momentum per step (e.g. 0.999; 0 = off); "
                          "validation, checkpoints and the saved member use the averaged weights."),
        click.option("--label-smoothing", type=click.FloatRange(0, 0.5, max_open=True), default=d("label_smoothing"),
                     help="Smooth the training labels by this amount (0 = off)."),
        click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default=d("checkpoint"),
                     help="The member is its best-validation epoch, or its last epoch (with --val-size 0: "
                          "trained on every digit)."),
        click.option("--width", type=click.FloatRange(min=0, min_open=True), default=d("width"),
                     help="Channel/unit multiplier."),
        click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=d("dropout"),
                     help="Dropout rate everywhere [default: the architecture's own]."),
        click.option("--augment", "augmentation", type=click.Choice(AUGMENTATIONS), default=d("augmentation"),
                     help="On-the-fly augmentation: fresh random distortions every epoch, or none."),
        click.option("--val-size", type=click.IntRange(min=0), default=d("val_size"),
                     help="Training digits held out per member to pick its best epoch (max a tenth; 0 needs "
                          "--checkpoint last)."),
        click.option("--bootstrap/--no-bootstrap", default=d("bootstrap"),
                     help="Bagging: each member trains on a bootstrap sample (draws with replacement) of its "
                          "training digits instead of each digit once."),
        seed_option,
        limit_option,
        click.option("--jobs", "-j", type=click.IntRange(min=1), default=d("jobs"),
                     help="Parallel worker processes [default: as the mode measured fastest: one per core on "
                          "CPUs, 1 on a GPU]."),
        click.option("--mode", type=click.Choice(MODES), default=d("mode"),
                     help="Member scheduling: one after another, in worker processes, or side by side in fused "
                          "models; auto = processes on CPUs, fused on a GPU (measured fastest)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=d("precision"),
                     help="Compute precision; auto = mixed_bfloat16 on CPUs with AMX/AVX512-BF16 and on GPUs with "
                          "bfloat16 tensor cores (compute capability >= 8.0), else float32."),
        click.option("--backend", type=click.Choice(BACKENDS), default=d("backend"),
                     help="Where worker tasks run: local loky processes, a dask cluster or a ray cluster "
                          "(the run folder and data must be on storage every worker sees)."),
        click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="Address of a running dask scheduler (tcp://host:8786) or ray cluster (ray://host:10001, "
                          "auto) [default: start a local cluster of --jobs workers]."),
        click.option("--deterministic", is_flag=True,
                     help="TensorFlow op determinism in the workers: the same command and thread count give "
                          "bit-identical members."),
        click.option("--out", type=click.Path(path_type=Path), default=None,
                     help="Run folder [default: artifacts/runs/<arch>-k<members>-s<seed>]."),
    ]
    func = distortion_options(TRAIN_DEFAULTS)(func)
    for option in reversed(options):
        func = option(func)
    return func


def _apply_preset(opts: dict) -> dict:
    """The options with the preset's values where the command line did not set them."""
    ctx = click.get_current_context()
    opts = dict(opts)
    for key, value in PRESETS[opts["preset"]].items():
        param = FIELD_PARAMS.get(key, key)
        if ctx.get_parameter_source(param) in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            opts[param] = value
    return opts


def _train_config(opts: dict):
    from ensemble_cnn.config import TrainConfig

    opts = _apply_preset(opts)
    if opts["data"] is not None and opts["expanded"] is not None:
        raise click.UsageError("give either --data or --expanded, not both")
    if opts["scheduler"] is not None and opts["backend"] == "loky":
        raise click.BadParameter("needs --backend dask or --backend ray", param_hint="--scheduler")
    if opts["backend"] != "loky" and opts["mode"] == "sequential":
        raise click.BadParameter(f"sequential trains in this process; --backend {opts['backend']} needs "
                                 "--mode processes or fused", param_hint="--mode")
    distortion = _distortion(opts["transforms"], opts["max_shift"], opts["max_rotation"], opts["max_scale"],
                             opts["alpha"], opts["sigma"])
    try:
        return TrainConfig(
            arch=opts["arch"], members=opts["members"], recipe=opts["recipe"], epochs=opts["epochs"],
            batch_size=opts["batch_size"], learning_rate=opts["lr"], final_lr_fraction=opts["final_lr_fraction"],
            schedule=opts["schedule"], ema=opts["ema"], label_smoothing=opts["label_smoothing"],
            checkpoint=opts["checkpoint"],
            width=opts["width"], dropout=opts["dropout"], augmentation=opts["augmentation"],
            distortion=distortion.to_dict(), val_size=opts["val_size"], bootstrap=opts["bootstrap"],
            seed=opts["seed"], limit=opts["limit"],
            data=None if opts["data"] is None else str(opts["data"]),
            expanded=None if opts["expanded"] is None else str(opts["expanded"]),
            precision=opts["precision"], jobs=opts["jobs"], mode=opts["mode"],
            backend=opts["backend"], scheduler=opts["scheduler"], deterministic=opts["deterministic"],
            preset=opts["preset"],
        )
    except ValueError as exc:
        raise click.UsageError(_option_message(_one_line(exc))) from None


def _option_message(message: str) -> str:
    """``val_size must be ...`` -> ``--val-size must be ...``: name the option the user typed."""
    from ensemble_cnn.config import TrainConfig, option_name

    fields = set(TrainConfig.__dataclass_fields__) | set(Distortion.__dataclass_fields__)
    head, _, rest = message.partition(" ")
    message = f"{option_name(head)} {rest}" if head in fields else message
    return message.replace("with checkpoint last", "with --checkpoint last")


def _run_dir(config, out: Path | None) -> Path:
    if out is not None:
        return out
    return DEFAULT_ARTIFACTS / "runs" / f"{config.arch}-k{config.members}-s{config.seed}"


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


@main.command()
@training_options
@_library_errors
def train(**opts):
    """Train K ConvNets (resuming or growing a run) and report members vs their votes."""
    config = _train_config(opts)
    _train_and_report(config, _run_dir(config, opts["out"]))


# --------------------------------------------------------------------------- evaluate
@main.command()
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
              help="A run folder written by `ensemble-cnn train`.")
@data_option
@vote_option("The vote shown in the confusion matrix and error grid (every vote is scored).")
@click.option("--members", "-k", type=click.IntRange(1, MAX_MEMBERS), default=None,
              help="Score only the first K members [default: every member of the run].")
@click.option("--allow-missing", is_flag=True,
              help="Exit 0 even when members are missing or unusable (they are always listed and left out).")
@tta_option("the scored digits")
@_library_errors
def evaluate(run_dir, data, method, members, allow_missing, tta):
    """Reload a run's saved members, predict the test set, and report members vs the ensemble."""
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    if not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} is not a folder", param_hint="--run")
    report = evaluate_run(run_dir, data=data, voting=method, members=members, reload=True, tta=tta,
                          log=click.echo)
    click.echo(f"report: {run_dir / 'report.md'}")
    dropped = report["dropped_members"]
    if dropped and not allow_missing:
        raise click.ClickException(
            f"{len(dropped)} of {report['members_asked']} members left out (missing or unusable, listed above); "
            "the report scores the others (--allow-missing to accept)"
        )


# --------------------------------------------------------------------------- compare
@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
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
    """
    import json

    from ensemble_cnn.evaluation.compare import compare_runs, format_comparison

    if len(runs) < 2:
        raise click.BadParameter("give at least two run folders", param_hint="RUNS")
    for run_dir in runs:
        if not run_dir.is_dir():
            raise click.BadParameter(f"{run_dir} is not a folder", param_hint="RUNS")
    comparison = compare_runs(runs, data=data, voting=method, allow_missing=True)
    click.echo(json.dumps(comparison, indent=2) if as_json else format_comparison(comparison), nl=as_json)
    for row in comparison["runs"]:
        for entry in row["left_out"]:
            click.echo(f"{row['run']}: {entry['member']} left out: {entry['reason']}", err=True)
    missing = [row for row in comparison["runs"] if row["left_out"]]
    if missing and not allow_missing:
        raise click.ClickException(f"{', '.join(row['run'] for row in missing)}: members left out (missing or "
                                   "unusable, listed above); the others were compared (--allow-missing to accept)")


# --------------------------------------------------------------------------- predict
run_option = click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
                          help="A run folder written by `ensemble-cnn train`.")
members_option = click.option("--members", "-k", type=click.IntRange(1, MAX_MEMBERS), default=None,
                              help="Use only the first K members [default: every member of the run].")


@main.command()
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
              help="Output: a table for the terminal, CSV (path,label,confidence,vote_share,member_labels,p0..p9) "
                   "or JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the output to this file instead of the terminal.")
@click.option("--preview", type=click.Path(path_type=Path), default=None,
              help="Also draw a picture (.png, .jpg, .svg or .pdf, by its ending): each input next to the 28x28 "
                   "digit the members saw, with its label.")
@tta_option("each digit")
@allow_missing_option("in the output (JSON: left_out; CSV: a last column left_out; table: a last line); "
                      "the others vote")
@_library_errors
def predict(run_dir, paths, recursive, preprocess, method, members, fmt, out, preview, tta, allow_missing):
    """Classify the digits in PATHS: image files (PNG, JPEG, BMP, GIF, TIFF; one digit each), arrays
    (.npy of (28, 28) or (N, 28, 28), .npz with x or x_test, IDX images) and folders of them.

    A file that cannot be read, and a blank image or digit ("no ink found"), is reported in one line and the
    others are still predicted (exit 1 if any failed; --out is not written when nothing was predicted).
    Inputs are never written to, nor is anything in the run folder; --out and --preview go into folders
    that exist.
    """
    from ensemble_cnn.storage import atomic as _atomic
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.inputs import expand_paths
    from ensemble_cnn.storage.outputs import check_output_files, shown
    from ensemble_cnn.inference.predict import format_predictions, predict_paths, preview_format, write_preview

    if not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} is not a folder", param_hint="--run")
    outputs = [(name, path) for name, path in (("--out", out), ("--preview", preview)) if path is not None]
    check_output_files(outputs, inputs=[*expand_paths(paths, recursive=recursive)[0], *paths], input_folders=[run_dir],
                       new_folders=False)
    if preview is not None:
        preview_format(preview)  # an unknown picture type is refused before the model is loaded
    ensemble = Ensemble.load(run_dir, members=members, voting=method, tta=tta, allow_missing=True)
    _left_out(ensemble.left_out_, ensemble.members_asked_, allow_missing=True, done="")
    predictions = predict_paths(ensemble, paths, recursive=recursive, preprocess=preprocess, voting=method,
                                thumbnails=preview is not None)
    for path, reason in predictions.failures:
        click.echo(f"{shown(path)}: {reason}", err=True)
    text = format_predictions(predictions, fmt=fmt)
    if out is None:
        click.echo(text, nl=False)
    elif predictions.items:
        _atomic.write_text(out, text)
        click.echo(f"wrote {len(predictions.items)} predictions to {shown(out)}", err=True)
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


# --------------------------------------------------------------------------- export
@main.command()
@run_option
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="The model to write: a .keras file, or a SavedModel folder with --format saved_model.")
@vote_option("The vote in the model's `vote` output.")
@members_option
@click.option("--format", "fmt", type=click.Choice(["keras", "saved_model"]), default="keras",
              help="keras: one .keras file (keras.saving.load_model, safe_mode, no custom objects); saved_model: "
                   "a TensorFlow SavedModel folder for tf.saved_model.load / TensorFlow Serving.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out: a .keras file, or a SavedModel folder of a previous export (one "
                   "holding saved_model.pb). Without it an existing --out is refused, whatever the format.")
@allow_missing_option("in the model's ensemble_cnn.json (left_out); the others are exported")
@_library_errors
def export(run_dir, out, method, members, fmt, overwrite, allow_missing):
    """Export every member and the vote as ONE model: input uint8 (N, 28, 28); outputs `vote` (N, 10),
    the vote's probabilities, and `members` (N, K, 10).

    --out goes into a folder that exists, never into the run folder, and never replaces an existing
    file or folder unless --overwrite is given (the same rule for both formats). The model carries
    ensemble_cnn.json (run, vote, members, left-out members)."""
    from ensemble_cnn.inference.export import export_ensemble, read_export_metadata
    from ensemble_cnn.storage.outputs import check_output_files, check_output_folder

    if not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} is not a folder", param_hint="--run")
    if fmt == "keras":
        if out.suffix != ".keras":
            raise click.BadParameter(f"{out} must end in .keras (Keras' own format)", param_hint="--out")
        check_output_files([("--out", out)], input_folders=[run_dir], new_folders=False, overwrite=overwrite)
    else:
        check_output_folder("--out", out, input_folders=[run_dir], overwrite=overwrite, replaceable="saved_model.pb")
    path = export_ensemble(run_dir, out, voting=method, fmt=fmt, members=members, allow_missing=True,
                           overwrite=overwrite)
    metadata = read_export_metadata(path)
    click.echo(f"wrote {path} ({fmt}, {method} vote, {len(metadata['members'])} members)")
    _left_out({int(e["member"].removeprefix("member_")): e["reason"] for e in metadata["left_out"]},
              metadata["members_asked"], allow_missing=allow_missing,
              done=f"{path} holds the other {len(metadata['members'])}")


# --------------------------------------------------------------------------- serve
@main.command()
@run_option
@click.option("--host", default="127.0.0.1", help="Address to listen on (only this machine by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, help="Port (0: any free port).")
@vote_option("The vote the page shows.")
@members_option
@tta_option("each drawn digit")
@allow_missing_option("in /api/info (left_out); the others vote", without="serve refuses to start (exit 1)")
@_library_errors
def serve(run_dir, host, port, method, members, tta, allow_missing):
    """Serve a page where you draw a digit (mouse, pen or touch) and see the 28x28 digit the members saw,
    each member's guess and the vote. Ctrl-C stops it."""
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.predict import ImagePredictor
    from ensemble_cnn.inference.serve import serve as serve_forever

    if not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} is not a folder", param_hint="--run")
    ensemble = Ensemble.load(run_dir, members=members, voting=method, tta=tta, allow_missing=True)
    _left_out(ensemble.left_out_, ensemble.members_asked_, allow_missing=allow_missing, done="not serving")
    predictor = ImagePredictor(ensemble, voting=method)
    try:
        serve_forever(predictor, host=host, port=port, log=click.echo)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- run
@main.command()
@training_options
@_library_errors
def run(**opts):
    """The one-shot job: train an augmented ensemble with good defaults, then evaluate it.

    Same options as `train`; also draws what member 00 trained on (preview.png in the
    run folder: one digit of each class and its distortion in each of the first epochs).
    """
    config = _train_config(opts)
    _train_and_report(config, _run_dir(config, opts["out"]), preview=True)
