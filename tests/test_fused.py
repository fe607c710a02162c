"""A fused model trains each member exactly as it would train alone."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.fused import build_fused, fused_stream
from ensemble_cnn.member import build_member, compile_members, plan_member
from ensemble_cnn.train import train_ensemble
from ensemble_cnn.training_data import load_pool


@pytest.mark.parametrize("arch", ["nielsen", "deotte"])
def test_fused_member_matches_member_trained_alone(small_mnist_npz, arch):
    import keras

    cfg = TrainConfig(arch=arch, width=0.25, members=3, epochs=1, limit=500, val_size=50, batch_size=16,
                      data=str(small_mnist_npz), augmentation="none")
    pool = load_pool(data=cfg.data, expanded=None, limit=cfg.limit)
    plans = [plan_member(cfg, i, pool) for i in range(3)]
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


def test_fused_stream_is_each_members_own_stream(small_mnist_npz):
    """Each fused step holds, for every member, the very distorted batch it would get alone."""
    cfg = TrainConfig(members=3, epochs=2, limit=600, val_size=60, batch_size=64, data=str(small_mnist_npz))
    assert cfg.augmentation == "distort"
    pool = load_pool(data=cfg.data, expanded=None, limit=cfg.limit)
    plans = [plan_member(cfg, i, pool) for i in range(3)]
    alone = [list(plan.stream(cfg)) for plan in plans]
    steps = 2 * -(-len(plans[0].x_train) // cfg.batch_size)
    assert all(len(batches) == steps for batches in alone)
    got = list(fused_stream(plans, cfg))
    assert len(got) == steps
    for step, (xs, ys) in enumerate(got):
        for position in range(3):
            np.testing.assert_array_equal(xs[position], alone[position][step][0])
            np.testing.assert_array_equal(ys[position], alone[position][step][1])
    assert not np.array_equal(alone[0][0][0], alone[1][0][0]), "members get different batches"


def test_fused_mode_run_writes_standalone_members(small_mnist_npz, tmp_path):
    import keras

    cfg = TrainConfig(arch="nielsen", width=0.5, members=2, epochs=2, limit=1000, val_size=100, batch_size=32,
                      final_lr_fraction=0.3, data=str(small_mnist_npz), mode="fused")
    result = train_ensemble(cfg, tmp_path / "fused", log=None)
    assert result.complete and sorted(result.trained) == [0, 1]
    x_test = np.load(small_mnist_npz)["x_test"]
    for record in result.records:
        model = keras.saving.load_model(tmp_path / "fused" / record["model"])
        assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)
        assert record["test_accuracy"] > 0.5
        saved = np.load(tmp_path / "fused" / record["probabilities"])
        np.testing.assert_allclose(model.predict(x_test, verbose=0), saved, atol=1e-5)
