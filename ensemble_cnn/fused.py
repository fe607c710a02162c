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
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.member import (
    MemberPlan,
    build_member,
    compile_members,
    configure_tensorflow,
    finish_member,
    load_checked_pool,
    plan_member,
    set_determinism,
    set_precision,
)


def build_fused(cfg: TrainConfig, plans: Sequence[MemberPlan]):
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


def fused_stream(plans: Sequence[MemberPlan], cfg: TrainConfig) -> Iterator[tuple[tuple, tuple]]:
    """Zip the members' own batch streams: ((x_0, …, x_K-1), (y_0, …, y_K-1)) per step."""
    for batches in zip(*(plan.stream(cfg) for plan in plans)):
        yield tuple(b[0] for b in batches), tuple(b[1] for b in batches)


def train_fused(
    config: dict[str, Any],
    indices: Sequence[int],
    run_dir: str,
    *,
    threads: int,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Train members ``indices`` together as one fused model, then save each alone.

    Parameters
    ----------
    config : dict
        :meth:`TrainConfig.to_dict` of the run.
    indices : sequence of int
        The members to train (each with its own seed, split and stream).
    run_dir : str
        The run folder.
    threads : int
        TensorFlow intra-op threads.
    log : callable, optional
        Receives a progress line per member per epoch.

    Returns
    -------
    list of dict
        The members' records, in the order of ``indices``.
    """
    configure_tensorflow(threads, max(1, min(2, threads)))
    from ensemble_cnn.callbacks import BestWeights, EpochLog

    cfg = TrainConfig.from_dict(config)
    set_determinism(cfg.deterministic)
    set_precision(cfg.precision)
    pool = load_checked_pool(cfg)
    plans = [plan_member(cfg, index, pool) for index in indices]
    train_sizes = {len(plan.x_train) for plan in plans}
    val_sizes = {len(plan.x_val) for plan in plans}
    if len(train_sizes) != 1 or len(val_sizes) != 1:
        raise ValueError(f"fused members need equal split sizes, got train {train_sizes}, validation {val_sizes}")
    steps_per_epoch = math.ceil(train_sizes.pop() / cfg.batch_size)
    fused, members = build_fused(cfg, plans)
    compile_members(fused, cfg, steps_per_epoch=steps_per_epoch)
    bests = [BestWeights(m, n_members=len(members), position=p) for p, m in enumerate(members)]
    progress = EpochLog(indices, cfg.epochs, log)
    validation = (tuple(plan.x_val for plan in plans), tuple(plan.y_val for plan in plans))
    start = time.perf_counter()
    history = fused.fit(
        fused_stream(plans, cfg),
        steps_per_epoch=steps_per_epoch,
        epochs=cfg.epochs,
        validation_data=validation,
        validation_batch_size=1000,
        callbacks=[*bests, progress],
        shuffle=False,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    records = []
    for position, (plan, member, best) in enumerate(zip(plans, members, bests)):
        own = _member_history(history.history, position, len(members))
        records.append(
            finish_member(
                member, best, own, plan, cfg, pool, Path(run_dir),
                seconds=seconds, epoch_seconds=progress.epoch_seconds,
            )
        )
    return records


def _member_history(history: dict[str, list], position: int, n_members: int) -> dict[str, list]:
    """The member's own curves, renamed as if it had trained alone."""
    from ensemble_cnn.callbacks import metric_keys

    plain = metric_keys(1, 0)
    own = metric_keys(n_members, position)
    return {p: history[o] for p, o in zip(plain, own) if o in history}
