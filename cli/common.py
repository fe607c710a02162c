"""What the commands share: error translation, option sets, and turning options into library objects.

Only click and TensorFlow-free library modules are imported here (every library call that
may start TensorFlow is imported inside a command's function).
"""
from __future__ import annotations

import functools
from pathlib import Path

import click
from click.core import ParameterSource

from augment import LIMITS, TRANSFORMS as TRANSFORM_NAMES
from augment import NORMALIZATIONS, TTA_VIEWS, Distortion
from ensemble_cnn.config import (
    AUGMENTATIONS, BACKENDS, CHECKPOINTS, HOLDOUT_CHOICES, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_MEMBERS, MAX_SEED,
    MAX_VAL_SIZE,
    MAX_WIDTH, MODES, PRECISIONS, PRESETS, SCHEDULES, field_default, option_name,
)
from ensemble_cnn.errors import EnsembleCnnError, OutputPathError
from ensemble_cnn.models import ARCHITECTURES
from ensemble_cnn.training.recipes import RECIPES
from ensemble_cnn.inference.trust import DEFAULT_COVERAGE, DEFAULT_LEVEL
from ensemble_cnn.inference.vote import VOTES

DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_EXPANDED = DEFAULT_ARTIFACTS / "mnist_expanded.npz"


def _library_errors(func):
    """Turn the library's errors into one-line click errors: bad output paths exit 2, every other library error 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ensemble_cnn.storage.outputs import shown

        try:
            return func(*args, **kwargs)
        except OutputPathError as exc:
            raise click.BadParameter(_one_line(exc), param_hint=exc.option) from None
        except EnsembleCnnError as exc:
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


class Folder(click.Path):
    """``click.Path(exists=True, file_okay=False, dir_okay=True)`` for a folder the command reads (a run).

    Refused in one line, exit 2: ``Invalid value for '--run': X is not a folder``, also for
    a device or FIFO (click.Path's ``file_okay=False`` refuses only regular files). The
    metavar stays ``PATH``; readability is left to the library, as before.
    """

    def __init__(self) -> None:
        super().__init__(exists=True, file_okay=False, dir_okay=True, readable=False, path_type=Path)
        self.name = "path"  # the metavar in --help (click.Path would say DIRECTORY)

    def convert(self, value, param, ctx) -> Path:
        from ensemble_cnn.storage.outputs import shown

        try:
            path = super().convert(value, param, ctx)
        except click.BadParameter:
            path = None
        if path is None or not path.is_dir():
            self.fail(f"{shown(Path(value))} is not a folder", param, ctx)
        return path


class OutputFile(click.Path):
    """``click.Path(path_type=Path)`` for a file the command writes; a folder's name (``x/``) is refused, exit 2.

    click.Path turns ``x/`` into ``Path("x")``, which names the FILE ``x``: the text as typed
    is checked first (:func:`ensemble_cnn.storage.outputs.check_file_name`), so ``--out x/``
    never writes ``x``. Everything else about the path is checked by the command.
    """

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value, param, ctx) -> Path:
        from ensemble_cnn.storage.outputs import check_file_name

        if isinstance(value, str):
            try:
                check_file_name(param.opts[0] if param is not None else "path", value)
            except OutputPathError as exc:
                self.fail(_one_line(exc), param, ctx)
        return super().convert(value, param, ctx)


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


run_option = click.option("--run", "run_dir", type=Folder(), required=True,
                          help="A run folder written by `ensemble-cnn train`.")
members_option = click.option("--members", "-k", type=click.IntRange(1, MAX_MEMBERS), default=None,
                              help="Use only the first K members [default: every member of the run].")


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
                     help="Member architecture (see docs/design.md, Models)."),
        click.option("--recipe", type=click.Choice(list(RECIPES)), default=d("recipe"),
                     help="How one member trains: " + "; ".join(f"{n}: {r.description}" for n, r in RECIPES.items())),
        click.option("--epochs", "-e", type=click.IntRange(1, MAX_EPOCHS), default=d("epochs"),
                     help="Epochs per member."),
        click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=d("batch_size"),
                     help="Mini-batch size."),
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
        click.option("--width", type=click.FloatRange(0, MAX_WIDTH, min_open=True), default=d("width"),
                     help=f"Channel/unit multiplier (at most {MAX_WIDTH:g}: 16x the cost of width 1)."),
        click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=d("dropout"),
                     help="Dropout rate everywhere [default: the architecture's own]."),
        click.option("--normalize", type=click.Choice(list(NORMALIZATIONS)), default=d("normalize"),
                     help="Input normalization of every digit the members see (training and every prediction): "
                          "none, deskew (sheared upright by its moments) or width-W (the ink's box W x 20 pixels)."),
        click.option("--plan", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="A member plan (TOML): [[members]] groups, each with a count and member settings (arch, "
                          "width, normalize, epochs, ...) over these options; --members is then the plan's total. "
                          "See docs/plan.md."),
        click.option("--teacher", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                     help="Distil from a finished run (born-again members): every member trains on soft targets, "
                          "the label blended with that run's mean probabilities on the same training digit. "
                          "It must have trained on the same digits. See docs/distill.md."),
        click.option("--teacher-weight", type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
                     default=d("teacher_weight"), help="The teacher's share of each soft target (with --teacher)."),
        click.option("--augment", "augmentation", type=click.Choice(AUGMENTATIONS), default=d("augmentation"),
                     help="On-the-fly augmentation: fresh random distortions every epoch, or none."),
        click.option("--erase", type=click.FloatRange(0, 1), default=d("erase"), metavar="P",
                     help="Random erasing (Cutout): each training image, after its distortion, has a square of "
                          "--erase-size set to the background with probability P, afresh every epoch "
                          "(0 = off)."),
        click.option("--erase-size", default=d("erase_size"), metavar="MIN-MAX",
                     help="Side of the --erase square in pixels, uniform in MIN..MAX (or one side S; 1..28); its "
                          "centre is anywhere in the image, so it may be clipped at the border."),
        click.option("--val-size", type=click.IntRange(0, MAX_VAL_SIZE), default=d("val_size"),
                     help=f"Training digits held out per member to pick its best epoch (at most {MAX_VAL_SIZE}, and "
                          "a tenth of the training digits; 0 needs --checkpoint last)."),
        click.option("--holdout", type=click.Choice(HOLDOUT_CHOICES), default=d("holdout"),
                     help="member: each member holds out its own --val-size digits; shared: every member holds out "
                          "the same ones (drawn from --seed), the run's calibration digits, which no member trains "
                          "on; their labels and each member's probabilities on them are kept in the run folder, "
                          "and fix the 'unsure' and 'not a digit' thresholds of evaluate, predict, serve and "
                          "export. auto: shared when --val-size >= 1 (and every --plan group holds out as many), "
                          "else member. A setting of the whole run (not of a --plan group); shared needs "
                          "--val-size >= 1."),
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
    from ensemble_cnn.plan import PlanError, read_plan

    opts = _apply_preset(opts)
    if opts["data"] is not None and opts["expanded"] is not None:
        raise click.UsageError("give either --data or --expanded, not both")
    if opts["scheduler"] is not None and opts["backend"] == "loky":
        raise click.BadParameter("needs --backend dask or --backend ray", param_hint="--scheduler")
    if opts["backend"] != "loky" and opts["mode"] == "sequential":
        raise click.BadParameter(f"sequential trains in this process; --backend {opts['backend']} needs "
                                 "--mode processes or fused", param_hint="--mode")
    if opts["teacher"] is None and click.get_current_context().get_parameter_source("teacher_weight") \
            == ParameterSource.COMMANDLINE:
        raise click.BadParameter("needs --teacher (the run whose committee teaches)", param_hint="--teacher-weight")
    distortion = _distortion(opts["transforms"], opts["max_shift"], opts["max_rotation"], opts["max_scale"],
                             opts["alpha"], opts["sigma"])
    plan, members = None, opts["members"]
    if opts["plan"] is not None:
        try:
            plan = read_plan(opts["plan"])
        except PlanError as exc:
            raise click.BadParameter(_one_line(exc), param_hint="--plan") from None
        total = sum(group["count"] for group in plan if isinstance(group.get("count"), int))
        if click.get_current_context().get_parameter_source("members") == ParameterSource.COMMANDLINE \
                and members != total:
            raise click.UsageError(f"--members {members} differs from the plan's total ({total} in {opts['plan']}); "
                                   "leave --members out with --plan")
        members = total
    # every TrainConfig field that is an option (FIELD_PARAMS: the few spelled otherwise), then the composed ones
    fields = {name: opts[FIELD_PARAMS.get(name, name)] for name in TrainConfig.__dataclass_fields__
              if FIELD_PARAMS.get(name, name) in opts}
    fields.update(members=members, plan=plan, distortion=distortion.to_dict())
    try:
        return TrainConfig(**fields)
    except PlanError as exc:
        raise click.BadParameter(f"{opts['plan']}: {_one_line(exc)}", param_hint="--plan") from None
    except ValueError as exc:
        raise click.UsageError(_option_message(_one_line(exc))) from None


def _option_message(message: str) -> str:
    """``val_size must be ...`` -> ``--val-size must be ...``: name the option the user typed."""
    from ensemble_cnn.config import TrainConfig, option_name

    fields = set(TrainConfig.__dataclass_fields__) | set(Distortion.__dataclass_fields__)
    head, _, rest = message.partition(" ")
    message = f"{option_name(head)} {rest}" if head in fields else message
    return message.replace("with checkpoint last", "with --checkpoint last").replace("with holdout shared",
                                                                                      "with --holdout shared")


# The thresholds of the 'unsure' flag and the label sets (ensemble_cnn.inference.trust), for predict and serve.
_SHARE = click.FloatRange(0, 1, min_open=True, max_open=True)
coverage_option = click.option(
    "--coverage", type=_SHARE, default=DEFAULT_COVERAGE, show_default=True,
    help="Flag a digit 'unsure' when the committee is less sure of it than of all but the least sure (1 - COVERAGE) "
         "of the run's calibration digits: about COVERAGE of real digits are answered. Needs a run trained with "
         "--holdout shared (the default).")
level_option = click.option(
    "--level", type=_SHARE, default=DEFAULT_LEVEL, show_default=True,
    help="Conformal level of each digit's label set: it holds the true label with at least this probability, for "
         "digits drawn like the calibration digits; an empty set ('-') is shown as unsure.")
