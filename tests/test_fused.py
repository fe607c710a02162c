"""A fused model trains each member exactly as it would train alone, on the very batches it would get alone."""
from __future__ import annotations

import numpy as np
import pytest

import augment
from ensemble_cnn.training.fused import build_fused, fused_stream
from ensemble_cnn.training.member import build_member, compile_members, plan_run
from ensemble_cnn.seeding import DISTORTION_STREAM, EPOCH_STREAM, rng_for
from ensemble_cnn.training.train import train_ensemble
from ensemble_cnn.data.training import load_pool


@pytest.mark.parametrize("arch", ["nielsen", "deotte"])
def test_fused_member_matches_member_trained_alone(tiny_config, arch):
    import keras

    cfg = tiny_config(arch=arch, members=3, batch_size=16)
    pool = load_pool(data=cfg.data, expanded=None, limit=cfg.limit)
    plans = [plan_run(cfg, i, pool) for i in range(3)]
    batches = [next(plan.stream(cfg)) for plan in plans]

    fused, members = build_fused(cfg, plans)
    compile_members(fused, cfg, steps_per_epoch=10)
    for _ in range(3):  # three Adam steps, each member on its own batch
        fused.train_on_batch(tuple(b[0] for b in batches), tuple(b[1] for b in batches))

    for position, (plan, batch) in enumerate(zip(plans, batches)):
        keras.utils.set_random_seed(plan.seed)
        alone = build_member(cfg, name=f"{arch}_{position}")
        compile_members(alone, cfg, steps_per_epoch=10)
        initial = [w.copy() for w in alone.get_weights()]
        for _ in range(3):
            alone.train_on_batch(batch[0], batch[1])
        trained = alone.get_weights()
        assert any(not np.allclose(a, b) for a, b in zip(initial, trained)), "the step changed nothing"
        for got, want in zip(members[position].get_weights(), trained):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fused_steps_hold_each_members_own_distorted_batches(tiny_config):
    """Rebuilt from first principles: member m's step s of epoch e holds the rows its own epoch order puts in
    that batch, distorted with the generator of (its seed, DISTORTION_STREAM, e, b)."""
    cfg = tiny_config(members=3, epochs=2, limit=600, val_size=60, batch_size=64, augmentation="distort")
    pool = load_pool(data=cfg.data, expanded=None, limit=cfg.limit)
    plans = [plan_run(cfg, i, pool) for i in range(3)]
    distortion = augment.Distortion.from_dict(cfg.distortion)
    n = len(plans[0].x_train)
    per_epoch = -(-n // cfg.batch_size)
    steps = list(fused_stream(plans, cfg))
    assert len(steps) == cfg.epochs * per_epoch
    for step, (xs, ys) in enumerate(steps):
        epoch, batch_index = divmod(step, per_epoch)
        for position, plan in enumerate(plans):
            order = rng_for(plan.seed, EPOCH_STREAM, epoch).permutation(n)
            rows = np.sort(order[batch_index * cfg.batch_size:(batch_index + 1) * cfg.batch_size])
            expected = augment.distort(plan.x_train[rows], distortion,
                                       rng_for(plan.seed, DISTORTION_STREAM, epoch, batch_index))
            np.testing.assert_array_equal(xs[position], expected)
            np.testing.assert_array_equal(ys[position], plan.y_train[rows])
    assert not np.array_equal(steps[0][0][0], steps[0][0][1]), "members get different batches"


def test_fused_mode_run_writes_standalone_members_with_their_own_time_share(tiny_config, tmp_path):
    import keras

    cfg = tiny_config(width=0.5, members=2, epochs=2, limit=1000, val_size=100, final_lr_fraction=0.3,
                      mode="fused", augmentation="distort")
    result = train_ensemble(cfg, tmp_path / "fused", log=None)
    assert result.complete and result.trained == [0, 1] and result.execution.mode == "fused"
    with np.load(cfg.data) as npz:
        x_test = npz["x_test"]
    for record in result.records:
        model = keras.saving.load_model(tmp_path / "fused" / record["model"])
        assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)
        assert record["test_accuracy"] > 0.5
        saved = np.load(tmp_path / "fused" / record["probabilities"])
        np.testing.assert_allclose(model.predict(x_test, verbose=0), saved, atol=1e-5)
        # its own share of the group's time (half), not the group's whole time: two shares fit in the call
        assert record["trained_fused_with"] == 2
        assert sum(record["epoch_seconds"]) <= record["train_seconds"] + 0.01
        assert 2 * record["train_seconds"] <= result.seconds
