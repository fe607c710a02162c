"""Fused training: several members side by side in one Keras model.

The fused model holds K members with disjoint weights. Each member is fed its own
shuffled, freshly distorted batch (the very stream it would get alone), the loss is
the sum of the members' losses, and nothing couples them (no global-norm clipping,
no shared loss scaling, no callback watching the summed loss), so each member's
gradient and Adam update are exactly those it would get alone. One graph step for K
members amortises Python and per-step overhead and gives TensorFlow bigger, parallel
work: the way to fill many cores or a GPU. Afterwards each member is saved as a
standalone ``.keras`` model, identical in form to one trained alone.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator, Sequence

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.training.member import (
    RunPlan,
    WorkerSettings,
    build_member,
    compile_members,
    PoolCache,
    estimate_for,
    load_checked_pool,
    plan_run,
    run_config,
    run_label,
    save_checkpoints,
    start_worker,
    teacher_targets,
)
from ensemble_cnn.training.recipes import get_recipe
from ensemble_cnn.storage.run_folder import RunFolder


def build_fused(cfg: TrainConfig, plans: Sequence[RunPlan]):
    """Build the members (each seeded as if alone) and the fused model over them.

    Returns
    -------
    fused : keras.Model
        Inputs ``member_0 … member_{K-1}`` (each (B, 28, 28) uint8), one output per member.
    members : list of keras.Model
        The member models; training the fused model trains these.
    """
    import keras

    members, inputs, outputs = [], [], []
    for position, plan in enumerate(plans):
        keras.utils.set_random_seed(plan.seed)  # same initial weights and dropout seeds as alone
        member = build_member(cfg, name=f"{cfg.arch}_{position}")
        inp = keras.Input(shape=member.input_shape[1:], dtype="uint8", name=f"member_{position}_digits")
        members.append(member)
        inputs.append(inp)
        outputs.append(keras.layers.Identity(dtype="float32", name=f"member_{position}")(member(inp)))
    fused = keras.Model(inputs, outputs, name="fused")
    return fused, members


def fused_stream(plans: Sequence[RunPlan], cfg: TrainConfig) -> Iterator[tuple[tuple, tuple]]:
    """Zip the runs' own batch streams: ((x_0, …, x_K-1), (y_0, …, y_K-1)) per step."""
    for batches in zip(*(plan.stream(cfg) for plan in plans)):
        yield tuple(b[0] for b in batches), tuple(b[1] for b in batches)


def train_fused(
    config: dict[str, Any],
    runs: Sequence[tuple[int, Sequence[int]]],
    run_dir: str,
    *,
    settings: WorkerSettings,
    log: Callable[[str], None] | None = print,
    round_index: int = 0,
    announce: bool = True,
) -> list[dict[str, Any]]:
    """Train the given training runs together as one fused model, then save each member alone.

    Parameters
    ----------
    config : dict
        :meth:`TrainConfig.to_dict` of the run.
    runs : sequence of (int, sequence of int)
        The training runs (each with its own seed, split and stream) and the member
        indices to save from each.
    run_dir : str
        The run folder.
    settings : WorkerSettings
    log : callable, optional
        Receives a progress line per member per epoch.
    round_index : int
        The scheduling round of this group (finish estimate).
    announce : bool
        Whether this group prints the run's estimated finish time.

    Returns
    -------
    list of dict
        The members' records, in the order of ``runs``.
    """
    base = start_worker(config, settings)  # first: TensorFlow starts here, quietly, with its threads
    from ensemble_cnn.training.callbacks import EpochLog

    recipe = get_recipe(base.recipe)
    cfg = run_config(base, runs[0][0])  # one plan group per fused model (train.plan_groups)
    if any(run_config(base, run) != cfg for run, _ in runs[1:]):
        raise ValueError("a fused model trains members of one plan group only")
    pools = PoolCache(load_checked_pool(base))
    pool = pools.get(cfg.normalize)
    teacher = teacher_targets(base, run_dir, pools.get("none"))
    plans = [plan_run(cfg, run, pool, teacher=teacher) for run, _ in runs]
    train_sizes = {len(plan.x_train) for plan in plans}
    val_sizes = {len(plan.x_val) for plan in plans}
    if len(train_sizes) != 1 or len(val_sizes) != 1:
        raise ValueError(f"fused members need equal split sizes, got train {train_sizes}, validation {val_sizes}")
    steps_per_epoch = math.ceil(train_sizes.pop() / cfg.batch_size)
    fused, members = build_fused(cfg, plans)
    compile_members(fused, cfg, steps_per_epoch=steps_per_epoch)
    policies = [recipe.checkpoint_policy(cfg, m, n_outputs=len(members), position=p) for p, m in enumerate(members)]
    progress = EpochLog([run_label(plan.run, recipe) for plan in plans], cfg.epochs, log,
                        estimate=estimate_for(settings, round_index, announce=announce))
    validation = (tuple(plan.x_val for plan in plans), tuple(plan.y_val for plan in plans)) if val_sizes != {0} else None
    start = time.perf_counter()
    history = fused.fit(
        fused_stream(plans, cfg),
        steps_per_epoch=steps_per_epoch,
        epochs=cfg.epochs,
        validation_data=validation,
        validation_batch_size=1000,
        callbacks=[*recipe.training_callbacks(cfg), *policies, progress],
        shuffle=False,
        verbose=0,
    )
    # Each member's own share of the group's time (they trained side by side).
    share = len(plans)
    timing = {
        "train_seconds": round((time.perf_counter() - start) / share, 2),
        "epoch_seconds": [round(s / share, 3) for s in progress.epoch_seconds],
        "trained_fused_with": share,
    }
    folder = RunFolder(run_dir)
    records = []
    for position, ((_, wanted), plan, member, policy) in enumerate(zip(runs, plans, members, policies)):
        own = _member_history(history.history, position, len(members))
        records += save_checkpoints(
            member, policy.checkpoints(), plan, wanted, cfg, pool, folder,
            history=own, timing=timing, precision=settings.precision, spec_of=base.member_spec,
        )
    return records


def _member_history(history: dict[str, list], position: int, n_members: int) -> dict[str, list]:
    """The member's own curves, renamed as if it had trained alone."""
    from ensemble_cnn.training.callbacks import metric_keys

    plain = metric_keys(1, 0)
    own = metric_keys(n_members, position)
    return {p: history[o] for p, o in zip(plain, own) if o in history}
