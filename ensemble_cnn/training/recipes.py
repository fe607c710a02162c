"""Training recipes: how one training run of a member goes, and which weights become members.

A recipe owns the optimizer with its learning-rate schedule and the checkpoint
policy: a Keras callback that watches the run and, at its end, hands back one or
more :class:`Checkpoint` (a snapshot or FGE recipe yields several members
from one run; :attr:`Recipe.members_per_run` says how many). Every member of the
ensemble is a checkpoint of some training run; run ``r`` of a folder yields members
``r * M ... r * M + M - 1`` and draws its seed from ``(root seed, r)``, so a member
never depends on the ensemble's size.

:data:`RECIPES` is the registry the command line and the trainer read. Each recipe is
registered against its rule in :data:`ensemble_cnn.recipe_rules.RECIPE_RULES` (its name,
members per run and what it needs of a config), which the core's config validates with:
adding a recipe is one rule there plus one class and one entry here. Importing this module
does not start TensorFlow (methods import Keras when called, inside the worker).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ensemble_cnn.recipe_rules import RECIPE_RULES, RecipeRule
from ensemble_cnn.training.checkpoint import Checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from ensemble_cnn.config import TrainConfig

__all__ = [
    "RECIPES", "FgeRecipe", "Recipe", "SnapshotRecipe", "StandardRecipe", "SwaRecipe", "get_recipe",
]


# SWA: the last quarter of a run's epochs (at least one) is the averaging phase, at this fraction of --lr.
SWA_FRACTION = 0.25
SWA_LR_FRACTION = 0.1
# FGE: the short cycles after the main one each take this fraction of the epochs (at least one),
# restarting at this fraction of --lr.
FGE_CYCLE_FRACTION = 0.1
FGE_RESTART_FRACTION = 0.1


ONECYCLE_WARMUP = 0.3  # fraction of the steps spent warming up in the one-cycle schedule
ONECYCLE_START = 1 / 25  # one-cycle starts at this fraction of the peak learning rate


class Recipe:
    """Base class: a learning-rate schedule, an optimizer, a loss and a checkpoint policy.

    ``rule`` is the recipe's entry in :data:`~ensemble_cnn.recipe_rules.RECIPE_RULES`: its
    name, members per run and what it needs of a config come from there.
    """

    rule: ClassVar[RecipeRule]  # each recipe class names its own
    description: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def members_per_run(self) -> int:
        """Members one training run yields."""
        return self.rule.members_per_run

    def learning_rate(self, cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
        """A ``keras.optimizers.schedules.LearningRateSchedule`` (or a float)."""
        raise NotImplementedError

    def optimizer(self, cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
        """The Keras optimizer of one training run (fused members share it: Adam's state is per variable).

        With ``cfg.ema`` it keeps a moving average of the weights (per variable, so
        fused members stay independent).
        """
        import keras

        schedule = self.learning_rate(cfg, steps_per_epoch=steps_per_epoch)
        if cfg.ema:
            momentum = ema_momentum(cfg, steps_per_epoch=steps_per_epoch, span_epochs=self.averaging_epochs(cfg))
            return keras.optimizers.Adam(schedule, use_ema=True, ema_momentum=momentum)
        return keras.optimizers.Adam(schedule)

    def check(self, cfg: "TrainConfig") -> None:
        """Raise ``ValueError`` naming the option when ``cfg`` asks for something this recipe cannot do."""
        self.rule.check(cfg)

    def averaging_epochs(self, cfg: "TrainConfig") -> int:
        """Epochs one member's weight average may span at most twice over (the EMA cap's horizon)."""
        return cfg.epochs

    def loss(self, cfg: "TrainConfig") -> Any:
        """The loss of one member's output: sparse cross-entropy (label-smoothed with ``cfg.label_smoothing``).

        A distilled run (``cfg.teacher``) has soft targets: categorical cross-entropy, smoothed alike.
        """
        if cfg.teacher is not None:
            import keras

            return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        if not cfg.label_smoothing:
            return "sparse_categorical_crossentropy"
        from ensemble_cnn.training.callbacks import SmoothedSparseCrossentropy

        return SmoothedSparseCrossentropy(cfg.label_smoothing)

    def training_callbacks(self, cfg: "TrainConfig") -> list[Any]:
        """Callbacks of the whole fit, before the checkpoint policies (e.g. the EMA weight swap)."""
        if not cfg.ema:
            return []
        import keras

        # Averaged weights in the model for validation and at every epoch's end (where
        # the checkpoint policies look), raw weights while training.
        return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]

    def checkpoint_policy(self, cfg: "TrainConfig", model: Any, *, n_outputs: int = 1, position: int = 0) -> Any:
        """A Keras callback with a ``checkpoints() -> list[Checkpoint]`` method, for one member model.

        ``n_outputs`` and ``position`` locate the member's metrics in the logs of a
        fused model (see :func:`ensemble_cnn.training.callbacks.metric_keys`).
        """
        raise NotImplementedError


# The weight average spans at most this fraction of a run's steps (its horizon is 1 / (1 - momentum)).
EMA_MAX_HORIZON = 0.5


def ema_momentum(cfg: "TrainConfig", *, steps_per_epoch: int, span_epochs: int | None = None) -> float:
    """The EMA momentum one run uses: ``cfg.ema``, capped so the average spans at most half the run.

    ``span_epochs`` (default ``cfg.epochs``) is the stretch the cap is taken over: a
    snapshot recipe passes one cycle, so each member averages only its own cycle.

    Keras' average starts at the initial weights and has no warm-up, so on a short run
    (a few hundred steps) momentum 0.999 would keep mostly the untrained initial weights.
    The cap ``1 - 1 / (0.5 * total_steps)`` leaves every run of docs/results.md untouched (the
    default's 30 epochs of 55,000 digits at batch 128 are 12,900 steps: cap 0.99984; the
    recipe study's shortest screen, 2,816 steps: 0.99929) and lets a 2-epoch look learn
    (measured, 2 epochs on 1,800 digits at width 0.5: 81.0% test accuracy with the cap,
    83.3% without EMA; with no cap the average would still hold ~90% initial weights).
    """
    total = max(1, (cfg.epochs if span_epochs is None else span_epochs) * steps_per_epoch)
    cap = 1.0 - 1.0 / max(1.0, EMA_MAX_HORIZON * total)
    return float(min(cfg.ema, cap))


def schedule(cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
    """The learning-rate schedule named by ``cfg.schedule`` (see :class:`ensemble_cnn.config.TrainConfig`)."""
    import keras

    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "exponential":
        decay_rate = cfg.final_lr_fraction ** (1.0 / max(1, cfg.epochs - 1))
        return keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate, decay_steps=steps_per_epoch, decay_rate=decay_rate, staircase=True
        )
    if cfg.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, total, alpha=cfg.final_lr_fraction)
    warmup = max(1, int(ONECYCLE_WARMUP * total))
    return keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate * ONECYCLE_START, max(1, total - warmup), alpha=cfg.final_lr_fraction,
        warmup_target=cfg.learning_rate, warmup_steps=warmup,
    )


class StandardRecipe(Recipe):
    """One member per training run: the config's schedule, optional EMA and label smoothing, best or last epoch."""

    rule = RECIPE_RULES["standard"]
    description = ("Adam with the --schedule learning rate (cosine by default), --ema weight averaging and "
                   "--label-smoothing; the member is its best-validation epoch (--checkpoint best) or its last")

    def learning_rate(self, cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
        return schedule(cfg, steps_per_epoch=steps_per_epoch)

    def checkpoint_policy(self, cfg: "TrainConfig", model: Any, *, n_outputs: int = 1, position: int = 0) -> Any:
        from ensemble_cnn.training.callbacks import BestValidation, LastEpoch

        if cfg.checkpoint == "last":
            return LastEpoch(model, n_outputs=n_outputs, position=position)
        return BestValidation(model, n_outputs=n_outputs, position=position)


class SnapshotRecipe(Recipe):
    """Snapshot ensembling: three members from one training run, at the ends of three cosine cycles.

    The run's epochs are cut into ``members_per_run`` equal cycles; in each the learning
    rate falls from ``--lr`` to ``--lr * final fraction`` along a cosine and then restarts
    (SGDR, Loshchilov & Hutter 2017; snapshot ensembles, Huang et al. 2017). Each cycle's
    last epoch is a member (with ``--ema``: its averaged weights, the average capped to
    half a cycle). Three members cost one run's time, but they share one trajectory.
    """

    rule = RECIPE_RULES["snapshot"]
    description = ("3 members per training run: cosine decay restarted twice (--epochs cut into 3 equal cycles); "
                   "each cycle's last epoch (its --ema weights) is a member. Needs --epochs a multiple of 3, "
                   "--schedule cosine and --checkpoint last")

    def cycle_lengths(self, cfg: "TrainConfig") -> list[int]:
        """Epochs per cycle, one cycle per member: ``[E/3, E/3, E/3]``."""
        return [cfg.epochs // self.members_per_run] * self.members_per_run

    def cycle_ends(self, cfg: "TrainConfig") -> list[int]:
        """The 1-based epochs whose weights become the run's members: ``[E/3, 2E/3, E]``."""
        return [int(end) for end in np.cumsum(self.cycle_lengths(cfg))]

    def averaging_epochs(self, cfg: "TrainConfig") -> int:
        """The last (shortest) cycle: each member's weight average stays within its own cycle."""
        return self.cycle_lengths(cfg)[-1]

    def learning_rate(self, cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
        import keras

        cycle_steps = (cfg.epochs // self.members_per_run) * steps_per_epoch
        return keras.optimizers.schedules.CosineDecayRestarts(
            cfg.learning_rate, cycle_steps, t_mul=1.0, m_mul=1.0, alpha=cfg.final_lr_fraction
        )

    def checkpoint_policy(self, cfg: "TrainConfig", model: Any, *, n_outputs: int = 1, position: int = 0) -> Any:
        from ensemble_cnn.training.callbacks import EpochSnapshots

        return EpochSnapshots(model, self.cycle_ends(cfg), n_outputs=n_outputs, position=position)


class SwaRecipe(Recipe):
    """Stochastic weight averaging (Izmailov et al. 2018) at the end of each member's run.

    The first three quarters of the epochs follow a cosine decay from ``--lr`` to
    ``SWA_LR_FRACTION * --lr``; the last quarter (at least one epoch) keeps that learning
    rate, and the member is the plain average of the weights at the ends of those
    epochs (validation figures in that phase are the average's). The uniform average
    replaces ``--ema``. Non-trainable weights (BatchNorm statistics) are averaged too,
    not recomputed: exact for the ``nielsen`` and ``keras`` nets (no BatchNorm), an
    approximation for ``deotte``.
    """

    rule = RECIPE_RULES["swa"]
    description = ("stochastic weight averaging: cosine decay to 0.1 x --lr over the first 3/4 of --epochs, then "
                   "that rate held while the weights of each epoch's end are averaged; the member is the average. "
                   "Needs --ema 0 (the average replaces it), --schedule cosine, --checkpoint last, --epochs >= 4")

    def averaging_start(self, cfg: "TrainConfig") -> int:
        """The first 1-based epoch whose end enters the average."""
        phase = max(1, round(SWA_FRACTION * cfg.epochs))
        return cfg.epochs - phase + 1

    def learning_rate(self, cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
        from ensemble_cnn.training.callbacks import CosineCycles

        decay_epochs = self.averaging_start(cfg) - 1
        held_epochs = cfg.epochs - decay_epochs
        swa_lr = cfg.learning_rate * SWA_LR_FRACTION
        return CosineCycles([
            (decay_epochs * steps_per_epoch, cfg.learning_rate, swa_lr),
            (held_epochs * steps_per_epoch, swa_lr, swa_lr),
        ])

    def training_callbacks(self, cfg: "TrainConfig") -> list[Any]:
        from ensemble_cnn.training.callbacks import WeightAverage

        return [WeightAverage(self.averaging_start(cfg))]

    def checkpoint_policy(self, cfg: "TrainConfig", model: Any, *, n_outputs: int = 1, position: int = 0) -> Any:
        from ensemble_cnn.training.callbacks import AveragedEnd

        return AveragedEnd(model, n_outputs=n_outputs, position=position)


class FgeRecipe(SnapshotRecipe):
    """Fast geometric ensembling (Garipov et al. 2018): a full run, then short cycles that each end in a member.

    The first cycle is a cosine decay over most of the epochs (the run as the standard
    recipe would train it); then two short cycles (``FGE_CYCLE_FRACTION`` of the epochs
    each, at least one) restart at ``FGE_RESTART_FRACTION * --lr`` and decay again.
    Each cycle's last epoch is a member: three members for the price of one run, close
    to each other in weight space (unlike :class:`SnapshotRecipe`, whose cycles are equal
    and restart at the full rate).
    """

    rule = RECIPE_RULES["fge"]
    description = ("3 members per training run: a cosine decay over most of --epochs, then two short cycles "
                   "(a tenth of the epochs each) restarting at 0.1 x --lr; each cycle's last epoch (its --ema "
                   "weights) is a member. Needs --schedule cosine, --checkpoint last, --epochs >= 5")

    def cycle_lengths(self, cfg: "TrainConfig") -> list[int]:
        """Epochs per cycle: ``[E - 2c, c, c]`` with ``c = max(1, round(FGE_CYCLE_FRACTION * E))``."""
        short = max(1, round(FGE_CYCLE_FRACTION * cfg.epochs))
        return [cfg.epochs - 2 * short, short, short]

    def learning_rate(self, cfg: "TrainConfig", *, steps_per_epoch: int) -> Any:
        from ensemble_cnn.training.callbacks import CosineCycles

        final = cfg.learning_rate * cfg.final_lr_fraction
        restart = cfg.learning_rate * FGE_RESTART_FRACTION
        main, *short = self.cycle_lengths(cfg)
        return CosineCycles([(main * steps_per_epoch, cfg.learning_rate, final),
                             *[(length * steps_per_epoch, restart, final) for length in short]])


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe for recipe in (StandardRecipe(), SnapshotRecipe(), FgeRecipe(), SwaRecipe())
}
"""Every recipe by name (the names and order of :data:`ensemble_cnn.recipe_rules.RECIPE_RULES`): what
``--recipe`` accepts and ``config.json`` stores."""


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {name!r}") from None
