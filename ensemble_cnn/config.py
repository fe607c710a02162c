"""The settings of one training run, saved as ``config.json`` in the run folder.

``TrainConfig()`` is the command line's default recipe, on every machine: the
execution settings that depend on the hardware (``mode``, ``jobs``, ``precision``)
default to ``"auto"`` / ``None`` and are resolved when training starts
(:func:`ensemble_cnn.training.execution.resolve_execution`), never stored as a recipe.

A run's *identity* is what changes a member's weights (architecture, recipe,
distortion, seed, the data's fingerprint, ...): :meth:`TrainConfig.identity`. The
member count, the data path and the execution settings are not part of it, so a run
can grow (``--members 15`` on a finished 5-member run trains 10 more) and be resumed
on another machine or engine.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.erase import parse_sides
from augment.normalize import NORMALIZATIONS
from ensemble_cnn.data.reader import RUN_CONFIG, read_json
from ensemble_cnn.errors import first_line
from ensemble_cnn.models import ARCHITECTURES
from ensemble_cnn.plan import MEMBER_FIELDS, PlanError, canonical_plan, member_groups, plan_differences
from ensemble_cnn.recipe_rules import RECIPE_NAMES, RECIPE_RULES

AUGMENTATIONS = ("distort", "none")
SCHEDULES = ("exponential", "cosine", "onecycle")
CHECKPOINTS = ("best", "last")
HOLDOUTS = ("member", "shared")
# "auto" (the default) is resolved when a config is made: "shared" when the run holds out digits, else "member".
HOLDOUT_CHOICES = ("auto", *HOLDOUTS)
MODES = ("auto", "sequential", "processes", "fused")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
BACKENDS = ("loky", "dask", "ray")
# The most members a run may have (member indices 0 .. MAX_MEMBERS - 1): a bound for config.json and
# every --members, so that a count read from a file or typed by mistake cannot make a command loop for hours.
MAX_MEMBERS = 1000
# The largest root seed: the seeding (numpy's SeedSequence) takes any integer, but a seed is stored in
# config.json and manifests, and tools reading those (or numpy int64 columns) hold signed 64-bit integers.
MAX_SEED = 2**63 - 1
# Bounds of the numeric training settings, by what a person would run on MNIST (a larger value, typed by
# mistake or read from a file, would only fail in TensorFlow out of memory, or train for years):
# width 4 is 16x the published nets' cost (an3: 2.8 G multiply-adds per digit; docs/results.md goes to 2);
# 1000 epochs of 60,000 digits; a batch of 4096 digits (the studies use 128 to 512).
MAX_WIDTH = 4.0
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
# The largest hold-out: a member holds out at most a tenth of its training originals, a tenth of MNIST's
# 60,000 (on fewer digits the hold-out is a tenth of them; each member's record says how many it held out).
MAX_VAL_SIZE = 6000

# On-the-fly training distortion: smooth elastic fields (sigma 6, as in Ciresan et al.'s MNIST
# committees) with a mild random affine. Chosen on validation by benchmarks/recipe_study.py
# among mild (this), medium (rotation 12, zoom 0.12, alpha 36) and strong (15, 0.15, 38).
TRAIN_DISTORTION = {
    "transforms": ["shift", "rotate", "scale", "elastic"],
    "max_shift": 2,
    "max_rotation": 8.0,
    "max_scale": 0.08,
    "alpha": 30.0,
    "sigma": 6.0,
}

# Named presets: each is a set of ordinary scalar TrainConfig fields (what `--preset NAME` sets, unless
# an option given on the command line says otherwise; in Python: TrainConfig(**PRESETS[name], preset=name)).
# "default" is TrainConfig() itself. The figures behind them are in docs/results.md (benchmarks/recipe_study.py,
# decided on validation): "best" is round 4's BatchNorm net, 2 deotte members x 30 epochs without the weight
# EMA (BatchNorm's moving statistics belong to the raw weights), K = 2 chosen on study validation.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"members": 2, "epochs": 16},
    "default": {},
    "best": {"arch": "deotte", "ema": 0.0, "members": 2},
}

# Settings that change how a run executes but not what it computes (and the informative preset
# name): they may differ between a run and its resumption. (Precision and thread count change the last bits
# of the weights, not the recipe; each member's record says which precision it used.)
EXECUTION_FIELDS = ("jobs", "mode", "backend", "scheduler", "deterministic", "precision", "jit_compile", "preset")
# Neither recipe nor execution: how many members the folder holds, and where the data
# was read from (its content is in ``data_fingerprint``).
SIZE_AND_PATH_FIELDS = ("members", "data", "expanded", "plan", "teacher")
# What a member's record and report entry say of its settings (beside its group's name).
SPEC_FIELDS = ("arch", "width", "dropout", "normalize", "epochs")

# The command-line option of each field, for messages.
OPTION_NAMES = {
    "learning_rate": "--lr",
    "augmentation": "--augment",
    "data_fingerprint": "the training data (its sha256)",
    "teacher_fingerprint": "the teacher's members (their sha256)",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes
    ----------
    arch : str
        Architecture name, one of :data:`ensemble_cnn.models.ARCHITECTURES`.
    members : int
        Number of ensemble members K (1 .. :data:`MAX_MEMBERS`).
    recipe : str
        How one member is trained, one of :data:`ensemble_cnn.recipe_rules.RECIPE_NAMES`
        (implemented by :data:`ensemble_cnn.training.recipes.RECIPES`: its learning-rate
        schedule and checkpoint policy).
    epochs : int
        Training epochs per member (1 .. :data:`MAX_EPOCHS`).
    batch_size : int
        Mini-batch size (1 .. :data:`MAX_BATCH_SIZE`).
    learning_rate : float
        Adam's initial learning rate.
    final_lr_fraction : float
        The learning rate ends at ``learning_rate * final_lr_fraction``.
    schedule : {"exponential", "cosine", "onecycle"}
        Learning-rate schedule: decayed exponentially once per epoch; cosine decay per
        step; or one cycle (per step: a linear warm-up from ``learning_rate / 25``
        over the first 30% of the steps, then cosine decay).
    ema : float
        Keep an exponential moving average of the weights with this momentum per
        step (e.g. 0.999; 0 = off), capped so the average spans at most half of a
        run's steps (see :func:`ensemble_cnn.training.recipes.ema_momentum`). Validation
        scores, checkpoints and the saved member use the averaged weights.
    label_smoothing : float
        Cross-entropy against labels smoothed by this amount (0 = off).
    checkpoint : {"best", "last"}
        Which weights become the member: its best-validation epoch, or its last
        epoch (then ``val_size=0`` trains on every training digit).
    width, dropout : float, float or None
        Model width multiplier in (0, :data:`MAX_WIDTH`] and dropout override (see :func:`build_model`).
    normalize : str
        Input normalization of every digit the member sees, in training and in every
        prediction: ``none``, ``deskew`` (shear upright by the second moments) or
        ``width-W`` for W in 8..20 (the ink's box scaled to W x 20 pixels), a name in
        :data:`augment.NORMALIZATIONS`. Applied before the training distortions.
    augmentation : {"distort", "none"}
        On-the-fly augmentation: fresh random distortions (``distortion``) of every
        training image in every epoch, or none.
    distortion : dict
        Parameters of :class:`augment.Distortion` used when ``augmentation="distort"``
        (validated and stored in canonical form; empty when ``augmentation="none"``).
    erase : float
        Random erasing (Cutout, :class:`augment.Erasing`): the probability, in [0, 1], that
        a training image has a square set to the background (0) after its distortion, drawn
        afresh in every epoch; 0 = off. Independent of ``augmentation``.
    erase_size : str
        The erased square's side in pixels: ``"S"`` or ``"MIN-MAX"`` (uniform, 1 <= MIN <=
        MAX <= 28), its centre anywhere in the image (clipped at the border); stored as
        ``"MIN-MAX"``. Used only when ``erase > 0``.
    val_size : int
        Training images held out per member for checkpoint selection (never the
        test set), at most :data:`MAX_VAL_SIZE` (a tenth of MNIST's training digits); on
        fewer training originals, capped at a tenth of them (each member's record says
        how many it held out). 0 (only with ``checkpoint="last"``): no hold-out.
    holdout : {"auto", "member", "shared"}
        Which originals are held out: each member its own, drawn from its seed; or the
        same ``val_size`` originals for every member, drawn from the root seed, so they lie
        outside every member's training data: the run's *calibration digits* (their labels and
        every member's probabilities on them are kept in the run folder, see
        :mod:`ensemble_cnn.storage.calibration`; ``evaluate``, ``predict``, ``serve`` and
        ``export`` fix their "unsure" and "not a digit" thresholds on them). ``"shared"`` needs
        ``val_size >= 1``. ``"auto"`` (the default) becomes ``"shared"`` when ``val_size >= 1``
        and every plan group holds out as many digits as the run, else ``"member"``; the config
        keeps the resolved value (measured on the study's validation digits, the shared
        hold-out costs the vote nothing measurable: docs/uncertainty.md). A
        run-level setting (never a plan group's), part of the run's identity. With
        ``checkpoint="best"`` the same digits also pick each member's epoch, so they are then
        not entirely untouched (the default is ``"last"``). A ``config.json`` written before
        this setting existed loads as ``"member"``, how those runs were trained.
    bootstrap : bool
        Bagging: each training run samples its training digits with replacement
        (as many draws as digits, after the hold-out) instead of using each once.
    seed : int
        Root seed, 0 .. :data:`MAX_SEED` (2**63 - 1); member ``i`` derives its own seed from ``(seed, i)``.
    limit : int or None
        Use only the first ``limit`` original training images.
    data : str or None
        MNIST source (npz or IDX folder); ``None`` means Keras' download/cache.
    expanded : str or None
        A pre-expanded training set written by ``ensemble-cnn augment``.
    data_fingerprint : str
        sha256 of the training arrays actually used (filled in by the trainer).
    precision : {"auto", "float32", "mixed_bfloat16"}
        Keras dtype policy (execution only): ``auto`` picks bfloat16 compute on CPUs
        with AMX/AVX512-BF16 and on GPUs with bfloat16 tensor cores, else float32.
    jobs : int or None
        Parallel worker processes (execution only); ``None``: one per core for
        ``processes``, else 1.
    mode : {"auto", "sequential", "processes", "fused"}
        How members are scheduled (execution only): one after another with all cores;
        in ``jobs`` worker processes; or side by side in one fused model (split over
        ``jobs`` processes when ``jobs > 1``). ``auto``: processes on CPUs, fused on a
        GPU (measured fastest), processes on a cluster backend.
    backend : {"loky", "dask", "ray"}
        The joblib backend that runs the worker tasks (execution only): local loky
        processes, a dask.distributed cluster or a ray cluster. ``dask`` and ``ray``
        need ``mode`` ``processes`` or ``fused`` and send every member to the cluster.
    scheduler : str or None
        Address of a running dask scheduler (``tcp://host:8786``) or ray cluster
        (``ray://host:10001``, ``auto``); ``None`` starts a local one (execution only).
    deterministic : bool
        Switch on TensorFlow's op determinism in the member workers, so the same
        config and thread count give bit-identical members (execution only).
    jit_compile : bool
        XLA-compile the training step (execution only; measured several times slower
        on CPUs, see ``benchmarks/bench_train.py``).
    preset : str or None
        The preset the run was started from (:data:`PRESETS`; informative: the fields
        themselves say what was trained).
    teacher : str or None
        A finished run folder whose committee teaches this run (distillation, "born-again"
        members): every member then trains on soft targets, ``(1 - teacher_weight)`` of the
        one-hot label plus ``teacher_weight`` of the teacher's mean probabilities on the same
        (undistorted) training digit, every distorted view of the digit keeping its digit's
        target. The teacher must have trained on the same digits (equal ``data_fingerprint``)
        and have every member complete; stored resolved. ``None``: hard labels.
    teacher_weight : float
        The teacher's share of each soft target, in (0, 0.5): the label keeps the larger
        share, so every target's largest class is the digit's label (what accuracy counts).
    teacher_fingerprint : str
        sha256 of the teacher members' file hashes (filled in by the trainer; the run's
        identity: a grown or retrained teacher gives other targets).
    plan : list of dict or None
        A member plan (:mod:`ensemble_cnn.plan`): groups ``{"name", "count", **settings}``
        whose members differ from the base options in the settings given
        (:data:`ensemble_cnn.plan.MEMBER_FIELDS`); ``members`` is then the plan's total.
        ``None``: every member is the base config. Stored canonical: every group named,
        numbers as floats where the field is one, ``distortion`` as the fields given.
    """

    arch: str = "nielsen"
    members: int = 5
    recipe: str = "standard"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.02
    schedule: str = "cosine"
    ema: float = 0.999
    label_smoothing: float = 0.1
    checkpoint: str = "last"
    width: float = 1.0
    dropout: float | None = None
    normalize: str = "none"
    augmentation: str = "distort"
    distortion: dict = field(default_factory=lambda: dict(TRAIN_DISTORTION))
    erase: float = 0.0
    erase_size: str = "8-16"
    val_size: int = 5000
    holdout: str = "auto"
    bootstrap: bool = False
    seed: int = 0
    limit: int | None = None
    data: str | None = None
    expanded: str | None = None
    data_fingerprint: str = ""
    precision: str = "auto"
    jobs: int | None = None
    mode: str = "auto"
    backend: str = "loky"
    scheduler: str | None = None
    deterministic: bool = False
    jit_compile: bool = False
    preset: str | None = None
    plan: list | None = None
    teacher: str | None = None
    teacher_weight: float = 0.4
    teacher_fingerprint: str = ""

    def __post_init__(self) -> None:
        for name in ("data", "expanded", "teacher"):  # a Path in Python, a string in config.json
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        _check_types(self)
        if self.plan is not None:  # the plan's own shape and counts first: they decide what members must be
            canonical_plan(self.plan, max_members=MAX_MEMBERS)
        _check(self.arch in ARCHITECTURES, "arch", f"one of {', '.join(ARCHITECTURES)}", self.arch)
        _check(self.recipe in RECIPE_RULES, "recipe", f"one of {', '.join(RECIPE_NAMES)}", self.recipe)
        _check(_is_int(self.members) and 1 <= self.members <= MAX_MEMBERS, "members",
               f"an integer from 1 to {MAX_MEMBERS}", self.members)
        _check(_is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS, "epochs",
               f"an integer from 1 to {MAX_EPOCHS}", self.epochs)
        _check(_is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE, "batch_size",
               f"an integer from 1 to {MAX_BATCH_SIZE}", self.batch_size)
        _check(_finite(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a finite number > 0",
               self.learning_rate)
        _check(_finite(self.final_lr_fraction) and 0 < self.final_lr_fraction <= 1, "final_lr_fraction",
               "in (0, 1]", self.final_lr_fraction)
        _check(_finite(self.width) and 0 < self.width <= MAX_WIDTH, "width", f"a number in (0, {MAX_WIDTH:g}]",
               self.width)
        _check(self.dropout is None or (_finite(self.dropout) and 0 <= self.dropout < 1), "dropout", "in [0, 1)",
               self.dropout)
        _check(self.augmentation in AUGMENTATIONS, "augmentation", f"one of {', '.join(AUGMENTATIONS)}",
               self.augmentation)
        _check(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}", self.schedule)
        _check(_finite(self.ema) and 0 <= self.ema < 1, "ema", "in [0, 1)", self.ema)
        _check(_finite(self.label_smoothing) and 0 <= self.label_smoothing < 0.5, "label_smoothing", "in [0, 0.5)",
               self.label_smoothing)
        _check(self.checkpoint in CHECKPOINTS, "checkpoint", f"one of {', '.join(CHECKPOINTS)}", self.checkpoint)
        _check(_is_int(self.val_size) and (0 if self.checkpoint == "last" else 1) <= self.val_size <= MAX_VAL_SIZE,
               "val_size", f"an integer >= 1 (0 only with checkpoint last) and at most {MAX_VAL_SIZE} (a tenth of "
               "MNIST's training digits)", self.val_size)
        _check(self.holdout in HOLDOUT_CHOICES, "holdout", f"one of {', '.join(HOLDOUT_CHOICES)}", self.holdout)
        if self.holdout == "auto":
            object.__setattr__(self, "holdout", self._auto_holdout())
        _check(self.holdout == "member" or self.val_size >= 1, "val_size",
               "an integer >= 1 with holdout shared (the calibration digits every member holds out)", self.val_size)
        _check(isinstance(self.bootstrap, bool), "bootstrap", "true or false", self.bootstrap)
        _check(_is_int(self.seed) and 0 <= self.seed <= MAX_SEED, "seed", f"an integer in 0..{MAX_SEED} (2**63 - 1)",
               self.seed)
        _check(self.limit is None or (_is_int(self.limit) and self.limit >= 20), "limit", "an integer >= 20",
               self.limit)
        _check(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        _check(self.jobs is None or (_is_int(self.jobs) and self.jobs >= 1), "jobs", "an integer >= 1", self.jobs)
        _check(self.mode in MODES, "mode", f"one of {', '.join(MODES)}", self.mode)
        _check(self.backend in BACKENDS, "backend", f"one of {', '.join(BACKENDS)}", self.backend)
        _check(self.backend == "loky" or self.mode != "sequential", "mode",
               f"processes or fused with backend {self.backend}", self.mode)
        _check(self.scheduler is None or (self.backend != "loky" and bool(self.scheduler.strip())), "scheduler",
               "the address of a dask or ray cluster (with backend dask or ray)", self.scheduler)
        _check(self.preset is None or self.preset in PRESETS, "preset", f"one of {', '.join(PRESETS)}", self.preset)
        _check(self.normalize in NORMALIZATIONS, "normalize", f"none, deskew or width-W for W in 8..20",
               self.normalize)
        _check(self.teacher is None or bool(self.teacher.strip()), "teacher", "a run folder", self.teacher)
        _check(_finite(self.teacher_weight) and 0 < self.teacher_weight < 0.5, "teacher_weight", "in (0, 0.5)",
               self.teacher_weight)
        RECIPE_RULES[self.recipe].check(self)
        object.__setattr__(self, "distortion", self._canonical_distortion())
        _check(_finite(self.erase) and 0 <= self.erase <= 1, "erase", "in [0, 1]", self.erase)
        object.__setattr__(self, "erase_size", "%d-%d" % parse_sides(self.erase_size, name="erase_size"))
        if self.plan is not None:
            self._check_plan()

    # ------------------------------------------------------------------ the member plan
    def _check_plan(self) -> None:
        """Canonicalize the plan; check its total against ``members`` and every group's settings."""
        plan = canonical_plan(self.plan, max_members=MAX_MEMBERS, canonical=self._canonical_settings)
        total = sum(group["count"] for group in plan)
        if self.members != total:
            raise PlanError(f"members must be the plan's total ({total}), got {self.members}")
        per_run = RECIPE_RULES[self.recipe].members_per_run
        for group in plan:
            if group["count"] % per_run:
                raise PlanError(f"plan group {group['name']!r}: count must be a multiple of {per_run} "
                                f"(recipe {self.recipe} gives {per_run} members per training run)")
        object.__setattr__(self, "plan", plan)

    def _auto_holdout(self) -> str:
        """What ``holdout="auto"`` means for this run: "shared" (calibration digits) when it holds out digits and
        every plan group holds out as many as the run; else "member" (nothing to share, or groups differ)."""
        sizes = [group.get("val_size", self.val_size) for group in (self.plan or []) if isinstance(group, dict)]
        return "shared" if self.val_size >= 1 and all(size == self.val_size for size in sizes) else "member"

    def _group_config(self, settings: dict[str, Any]) -> "TrainConfig":
        """The base config with a group's settings (``distortion``: merged over the base's)."""
        changes = dict(settings)
        if "distortion" in changes:
            changes["distortion"] = {**(self.distortion or TRAIN_DISTORTION), **changes["distortion"]}
        elif changes.get("augmentation") == "distort" and not self.distortion:
            changes["distortion"] = dict(TRAIN_DISTORTION)
        return dataclasses.replace(self, plan=None, **changes)

    def _canonical_settings(self, position: int, settings: dict[str, Any]) -> dict[str, Any]:
        """A group's settings checked (its member config built) and in canonical form."""
        try:
            member = self._group_config(settings)
        except (ValueError, TypeError) as exc:
            raise PlanError(f"plan group {position}: {first_line(exc)}") from None
        canonical = {}
        if settings.get("distortion") == {}:
            settings = {k: v for k, v in settings.items() if k != "distortion"}  # nothing merged: no setting
        if "distortion" in settings and member.augmentation == "none":
            raise PlanError(f"plan group {position}: distortion needs augmentation distort (the group's members "
                            "train without distortion)")
        if self.holdout == "shared" and member.val_size != self.val_size:
            raise PlanError(f"plan group {position}: val_size must be the run's ({self.val_size}) with holdout shared "
                            "(every member holds out the same digits)")
        for key, value in settings.items():
            if key == "distortion":
                canonical[key] = {name: member.distortion[name] for name in value if name in member.distortion}
            else:
                value = getattr(member, key)
                is_float = "float" in str(TrainConfig.__dataclass_fields__[key].type)
                canonical[key] = float(value) if is_float and _is_int(value) else value
        return canonical

    def member_config(self, index: int) -> "TrainConfig":
        """Member ``index``'s own config: the base with its plan group's settings (the config itself without a plan)."""
        if self.plan is None:
            return self
        group = self.plan[member_groups(self.plan)[index]]
        return self._group_config({k: v for k, v in group.items() if k not in ("name", "count")})

    def group_of(self, index: int) -> str:
        """The name of member ``index``'s plan group (``base`` without a plan)."""
        return "base" if self.plan is None else self.plan[member_groups(self.plan)[index]]["name"]

    def member_spec(self, index: int) -> dict[str, Any]:
        """What member ``index`` is: its group and its :data:`SPEC_FIELDS` (for its record and the report)."""
        member = self.member_config(index)
        return {"group": self.group_of(index), **{key: getattr(member, key) for key in SPEC_FIELDS}}

    def plan_differences(self, other: "TrainConfig") -> list[str]:
        """Why a folder holding ``other`` cannot hold this run's members (see :func:`ensemble_cnn.plan.plan_differences`)."""
        return plan_differences(self.plan, self.members, other.plan, other.members)

    def _canonical_distortion(self) -> dict:
        """The distortion validated now (not inside a worker), in canonical form; ``{}`` without augmentation."""
        if self.augmentation == "none":
            return {}
        from augment import Distortion

        if not isinstance(self.distortion, dict):
            raise ValueError(f"distortion must be a dict of augment.Distortion fields, got {self.distortion!r}")
        try:
            return Distortion.from_dict(self.distortion).to_dict()
        except ValueError as exc:
            raise ValueError(f"distortion: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a run config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        # A config.json written before --holdout existed: its members each held out their own digits. Filled in
        # explicitly (not from the field's default), so that such a run stays what it was if the default changes.
        data = {"holdout": "member", **data}
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """The config saved at ``path`` (a run's ``config.json``), read through the one guarded open.

        Raises
        ------
        ValueError
            One line naming the file: missing, not a regular file (a FIFO, a device), over
            :data:`~ensemble_cnn.data.reader.MAX_JSON_BYTES`, not UTF-8, not JSON, nested
            deeper than :data:`~ensemble_cnn.data.reader.MAX_JSON_DEPTH`, or not a valid config.
        """
        path = Path(path)
        data = read_json(path, what="run config", voice=RUN_CONFIG)  # its refusals say "not a valid run config"
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            reason = first_line(exc)
            raise ValueError(f"{path}: not a valid run config ({reason})") from None

    def identity(self) -> dict[str, Any]:
        """The settings that determine the members' weights: everything but size, data path and execution."""
        excluded = set(EXECUTION_FIELDS) | set(SIZE_AND_PATH_FIELDS)
        return {k: v for k, v in self.to_dict().items() if k not in excluded}

    def identity_differences(self, other: "TrainConfig") -> list[str]:
        """Human-readable differences in identity, e.g. ``"epochs (30 in the folder, 3 asked)"``."""
        mine, theirs = self.identity(), other.identity()
        return [
            f"{option_name(key)} ({_show(theirs.get(key))} in the folder, {_show(value)} asked)"
            for key, value in mine.items()
            if theirs.get(key) != value
        ] + self.plan_differences(other)


def option_name(field_name: str) -> str:
    """The command-line spelling of a config field (``learning_rate`` -> ``--lr``)."""
    return OPTION_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def field_default(name: str) -> Any:
    """The default of a :class:`TrainConfig` field (the command line reads its defaults here)."""
    spec = TrainConfig.__dataclass_fields__[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"  # a sha256
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value) if isinstance(value, str) else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {_brief(got)}")


# A field's annotation (a string: ``from __future__ import annotations``) -> the JSON types it takes.
_TYPE_TESTS = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", _is_int),
    "float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "dict": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "None": ("null", lambda v: v is None),
}


def _check_types(config: "TrainConfig") -> None:
    """Refuse a field of the wrong JSON type (``"data": 3``, ``"expanded": []``) in one line naming it.

    Numeric fields are left to their own checks in ``__post_init__``, which test the type
    and the range in one message (``members must be an integer from 1 to 1000, got '5'``).
    """
    for spec in dataclasses.fields(config):
        words = [word.strip() for word in str(spec.type).split("|")]
        if "int" in words or "float" in words:
            continue
        kinds = [_TYPE_TESTS[word] for word in words]
        value = getattr(config, spec.name)
        if not any(test(value) for _, test in kinds):
            raise ValueError(f"{spec.name} must be {' or '.join(word for word, _ in kinds)}, got {_brief(value)}")


def _brief(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
