"""Recipe options: learning-rate schedules, weight EMA, label smoothing, last-epoch members, new architectures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.training.recipes import ONECYCLE_START, ONECYCLE_WARMUP, RECIPES, schedule
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import train_ensemble

STEPS = 10  # steps per epoch in the schedule tests


def rate(cfg: TrainConfig, step: int) -> float:
    return float(schedule(cfg, steps_per_epoch=STEPS)(step))


def test_exponential_schedule_decays_per_epoch_to_the_final_fraction():
    cfg = TrainConfig(epochs=5, learning_rate=1e-3, final_lr_fraction=0.0625, schedule="exponential")  # 0.5 per epoch
    assert [rate(cfg, e * STEPS + 3) for e in range(5)] == pytest.approx([1e-3 * 0.5 ** e for e in range(5)])


def test_cosine_schedule_starts_at_the_rate_and_ends_at_the_fraction():
    cfg = TrainConfig(epochs=4, learning_rate=2e-3, final_lr_fraction=0.1, schedule="cosine")
    total = 4 * STEPS
    assert rate(cfg, 0) == pytest.approx(2e-3)
    assert rate(cfg, total // 2) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))
    assert rate(cfg, total) == pytest.approx(2e-4)


def test_onecycle_warms_up_then_decays():
    cfg = TrainConfig(epochs=10, learning_rate=1e-3, final_lr_fraction=0.01, schedule="onecycle")
    total, warmup = 10 * STEPS, int(ONECYCLE_WARMUP * 10 * STEPS)
    assert rate(cfg, 0) == pytest.approx(1e-3 * ONECYCLE_START)
    assert rate(cfg, warmup // 2) == pytest.approx(1e-3 * (ONECYCLE_START + 1) / 2, rel=1e-3)
    assert rate(cfg, warmup) == pytest.approx(1e-3)
    assert rate(cfg, total) == pytest.approx(1e-5)
    assert max(rate(cfg, s) for s in range(total + 1)) == pytest.approx(1e-3)


def test_label_smoothing_loss_matches_the_formula():
    from ensemble_cnn.training.callbacks import SmoothedSparseCrossentropy

    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([0, 1])
    loss = SmoothedSparseCrossentropy(0.3, n_classes=3)
    # smoothed targets: 0.8 on the label, 0.1 on each other class
    expected = np.mean([-(0.8 * math.log(0.7) + 0.1 * math.log(0.2) + 0.1 * math.log(0.1)),
                        -(0.1 * math.log(0.1) + 0.8 * math.log(0.1) + 0.1 * math.log(0.8))])
    assert float(loss(labels, probabilities)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [({"schedule": "step"}, "schedule must be one of"), ({"ema": 1.0}, "ema must be in"),
     ({"label_smoothing": 0.5}, "label_smoothing must be in"), ({"checkpoint": "first"}, "checkpoint must be one of"),
     ({"val_size": 0, "checkpoint": "best"}, "val_size must be an integer >= 1 (0 only with checkpoint last)")],
)
def test_recipe_options_are_validated(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**change)


def test_last_epoch_member_without_hold_out_trains_on_every_digit(tiny_config, tmp_path):
    cfg = tiny_config(members=1, epochs=2, checkpoint="last", val_size=0, schedule="cosine", label_smoothing=0.1)
    result = train_ensemble(cfg, tmp_path / "run", log=None)
    assert result.complete
    record = result.records[0]
    assert record["train_size"] == 500 and record["val_size"] == 0 and record["val_accuracy"] is None
    assert record["checkpoint"] == "last-epoch" and record["best_epoch"] == 2
    assert record["test_accuracy"] > 0.3


@pytest.mark.parametrize("ema, epochs, steps, expected", [
    (0.999, 30, 430, 0.999),  # the default run (12,900 steps): the cap 0.99984 does not bite
    (0.999, 2, 15, 1 - 1 / 15.0),  # 30 steps: the average spans 15
    (0.9, 2, 15, 0.9),
    (0.999, 1, 1, 0.0),  # one step: the average is the weights
])
def test_ema_momentum_is_capped_to_half_the_run(tiny_config, ema, epochs, steps, expected):
    from ensemble_cnn.training.recipes import ema_momentum

    assert ema_momentum(tiny_config(ema=ema, epochs=epochs), steps_per_epoch=steps) == pytest.approx(expected)


def test_ema_member_is_the_averaged_weights(tiny_config, tmp_path, monkeypatch):
    """With a momentum so close to 1 that the average barely moves (the run-length cap lifted), the saved
    member is ~ its initial weights: the same run that learns with the capped default is at chance level."""
    from ensemble_cnn.training import recipes
    trained = train_ensemble(tiny_config(epochs=2, checkpoint="last", width=0.5, limit=1000), tmp_path / "plain",
                             log=None)
    monkeypatch.setattr(recipes, "EMA_MAX_HORIZON", 1e12)
    frozen = train_ensemble(tiny_config(epochs=2, checkpoint="last", width=0.5, limit=1000, ema=0.999999),
                            tmp_path / "ema",
                            log=None)
    assert frozen.records[0]["checkpoint"] == "last-epoch+ema"
    assert trained.records[0]["test_accuracy"] > 0.45
    assert frozen.records[0]["test_accuracy"] < 0.25, "the averaged weights are still the initial ones"


def test_best_checkpoint_with_ema_validates_the_averaged_weights(tiny_config, tmp_path):
    result = train_ensemble(tiny_config(epochs=2, ema=0.9, checkpoint="best", mode="fused", members=2), tmp_path / "run", log=None)
    assert result.complete and all(r["checkpoint"] == "best-validation+ema" for r in result.records)
    history = json.loads(RunFolder(tmp_path / "run").files(0).history.read_text())
    best = result.records[0]["best_epoch"]
    assert result.records[0]["val_accuracy"] == pytest.approx(history["val_accuracy"][best - 1])


@pytest.mark.parametrize("arch, layers", [("an3", 10), ("an5", 5), ("an7", 4)])
def test_simple_cnn_stacks(arch, layers):
    import keras

    from ensemble_cnn.models import build_model

    model = build_model(arch, width=0.125)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == layers and all(not c.use_bias for c in convs)
    assert convs[-1].output.shape[1:3] == {"an3": (8, 8), "an5": (8, 8), "an7": (4, 4)}[arch]
    out = model.predict(np.zeros((2, 28, 28), np.uint8), verbose=0)
    assert out.shape == (2, 10) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_recipes_registry():
    assert "standard" in RECIPES and RECIPES["standard"].members_per_run == 1


def test_snapshot_schedule_restarts_at_each_cycle():
    from ensemble_cnn.training.recipes import SnapshotRecipe

    cfg = TrainConfig(recipe="snapshot", epochs=6, learning_rate=1e-3, final_lr_fraction=0.1)
    lr = SnapshotRecipe().learning_rate(cfg, steps_per_epoch=STEPS)
    cycle = 2 * STEPS  # 6 epochs in 3 cycles of 2 epochs
    for start in (0, cycle, 2 * cycle):
        assert float(lr(start)) == pytest.approx(1e-3)
        assert float(lr(start + cycle // 2)) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
        assert float(lr(start + cycle - 1)) < 1.1e-4 + 1e-6
    assert SnapshotRecipe().cycle_ends(cfg) == [2, 4, 6]


def test_snapshot_ema_is_capped_to_half_a_cycle(tiny_config):
    from ensemble_cnn.training.recipes import RECIPES, ema_momentum

    cfg = tiny_config(recipe="snapshot", epochs=3, ema=0.999, checkpoint="last")
    span = RECIPES["snapshot"].averaging_epochs(cfg)
    assert span == 1
    assert ema_momentum(cfg, steps_per_epoch=20, span_epochs=span) == pytest.approx(1 - 1 / 10)


@pytest.mark.parametrize("change, message", [
    ({"epochs": 10}, "epochs must be a multiple of 3 with recipe snapshot"),
    ({"schedule": "onecycle"}, "schedule must be cosine with recipe snapshot"),
    ({"checkpoint": "best"}, "checkpoint must be last with recipe snapshot"),
])
def test_snapshot_options_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"recipe": "snapshot", "epochs": 30, **change})


@pytest.mark.parametrize("mode", ["sequential", "fused"])
def test_snapshot_run_gives_one_member_per_cycle(tiny_config, tmp_path, mode):
    """4 members = two runs (the second one's last two snapshots are not kept); each run's members are
    its epochs 1, 2, 3, with their own weights, seed and validation figures."""
    cfg = tiny_config(recipe="snapshot", epochs=3, members=4, checkpoint="last", ema=0.9, mode=mode,
                      width=0.5, limit=1000)
    lines: list[str] = []
    result = train_ensemble(cfg, tmp_path / "run", log=lines.append)
    assert result.complete and len(result.records) == 4
    progress = [line for line in lines if "epoch   3/3" in line]
    assert any(line.startswith("members 00-02  epoch   3/3") for line in progress), lines
    assert progress and not any("nan" in line for line in progress), progress
    records = [json.loads(RunFolder(tmp_path / "run").files(i).record.read_text()) for i in range(4)]
    assert [r["run"] for r in records] == [0, 0, 0, 1]
    assert [r["best_epoch"] for r in records] == [1, 2, 3, 1]
    assert len({r["seed"] for r in records[:3]}) == 1 and records[3]["seed"] != records[0]["seed"]
    assert all(r["checkpoint"] == "cycle-end+ema" and r["recipe"] == "snapshot" for r in records)
    history = json.loads(RunFolder(tmp_path / "run").files(0).history.read_text())
    key = "val_accuracy" if "val_accuracy" in history else "val_member_0_accuracy"
    assert [r["val_accuracy"] for r in records[:3]] == pytest.approx(history[key])
    probabilities = [np.load(RunFolder(tmp_path / "run").files(i).probabilities) for i in range(3)]
    assert not np.allclose(probabilities[0], probabilities[2]), "the snapshots are different weights"
    assert records[2]["test_accuracy"] > 0.45


def _pool(n: int):
    from ensemble_cnn.data.mnist import MnistData
    from ensemble_cnn.data.training import TrainingPool

    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n) % 10
    data = MnistData(x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10], source="synthetic")
    return TrainingPool(data=data, source_index=np.arange(n), variant=np.zeros(n, int), n_originals=n)


def test_bootstrap_draws_the_training_rows_with_replacement_from_the_member_seed():
    from ensemble_cnn.data.training import split_for_member

    pool = _pool(2000)
    plain = split_for_member(pool, val_size=200, seed=5)
    bagged = split_for_member(pool, val_size=200, seed=5, bootstrap=True)
    assert np.array_equal(plain.val_rows, bagged.val_rows), "the hold-out does not change"
    assert len(bagged.train_rows) == len(plain.train_rows) == 1800
    assert set(bagged.train_rows) <= set(plain.train_rows)
    distinct = len(np.unique(bagged.train_rows)) / 1800
    assert 0.60 < distinct < 0.67, "about 1 - 1/e of the rows are drawn at least once"
    again = split_for_member(pool, val_size=200, seed=5, bootstrap=True)
    other = split_for_member(pool, val_size=200, seed=6, bootstrap=True)
    assert np.array_equal(again.train_rows, bagged.train_rows)
    assert not np.array_equal(other.train_rows, bagged.train_rows)


def test_bootstrap_run_trains_on_its_draw_and_says_so(tiny_config, tmp_path):
    from ensemble_cnn.training.member import load_checked_pool, plan_run
    from ensemble_cnn.seeding import member_seed
    from ensemble_cnn.data.training import split_for_member

    cfg = tiny_config(bootstrap=True, epochs=2)
    pool = load_checked_pool(cfg)
    drawn = split_for_member(pool, val_size=cfg.val_size, seed=member_seed(cfg.seed, 0), bootstrap=True,
                             holdout=cfg.holdout, root_seed=cfg.seed)
    plan = plan_run(cfg, 0, pool)
    assert np.array_equal(plan.x_train, pool.data.x_train[drawn.train_rows]), "the trainer uses the bootstrap draw"
    assert len(np.unique(drawn.train_rows)) < len(drawn.train_rows)
    result = train_ensemble(cfg, tmp_path / "run", log=None)
    assert result.complete and result.records[0]["train_size"] == 450
    assert json.loads((tmp_path / "run" / "config.json").read_text())["bootstrap"] is True
    with pytest.raises(ValueError, match="bootstrap must be true or false"):
        tiny_config(bootstrap="yes")


# --------------------------------------------------------------------------- SWA and FGE
def test_cosine_cycles_follow_each_segment():
    from ensemble_cnn.training.callbacks import CosineCycles

    lr = CosineCycles([(10, 1.0, 0.1), (4, 0.1, 0.1), (4, 0.5, 0.0)])
    assert float(lr(0)) == pytest.approx(1.0)
    assert float(lr(5)) == pytest.approx(0.1 + 0.9 * 0.5)
    assert [float(lr(s)) for s in range(10, 14)] == pytest.approx([0.1] * 4), "a held segment"
    assert float(lr(14)) == pytest.approx(0.5) and float(lr(16)) == pytest.approx(0.25)
    assert float(lr(100)) == pytest.approx(0.0), "after the last segment the rate stays at its end"
    with pytest.raises(ValueError, match="at least one segment"):
        CosineCycles([])


def test_fge_cycles_a_long_run_then_two_short_ones():
    from ensemble_cnn.training.recipes import FGE_RESTART_FRACTION, FgeRecipe

    fge = FgeRecipe()
    assert fge.cycle_lengths(TrainConfig(recipe="fge", epochs=30)) == [24, 3, 3]
    assert fge.cycle_ends(TrainConfig(recipe="fge", epochs=16)) == [12, 14, 16]
    assert fge.cycle_ends(TrainConfig(recipe="fge", epochs=5)) == [3, 4, 5]
    cfg = TrainConfig(recipe="fge", epochs=10, learning_rate=1e-3, final_lr_fraction=0.02)
    lr = fge.learning_rate(cfg, steps_per_epoch=STEPS)
    assert float(lr(0)) == pytest.approx(1e-3)
    assert float(lr(8 * STEPS - 1)) < 2.5e-5, "the main cycle decays to the final rate"
    for start in (8 * STEPS, 9 * STEPS):
        assert float(lr(start)) == pytest.approx(1e-3 * FGE_RESTART_FRACTION)
        assert float(lr(start + STEPS - 1)) < 2.5e-5
    assert fge.averaging_epochs(cfg) == 1, "the EMA is capped to half a short cycle"


def test_swa_decays_then_holds_the_rate():
    from ensemble_cnn.training.recipes import SWA_LR_FRACTION, SwaRecipe

    swa = SwaRecipe()
    cfg = TrainConfig(recipe="swa", epochs=8, ema=0.0, learning_rate=1e-3)
    assert swa.averaging_start(cfg) == 7, "the last quarter of 8 epochs: epochs 7 and 8"
    assert swa.averaging_start(TrainConfig(recipe="swa", epochs=4, ema=0.0)) == 4
    lr = swa.learning_rate(cfg, steps_per_epoch=STEPS)
    assert float(lr(0)) == pytest.approx(1e-3)
    assert float(lr(3 * STEPS)) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert [float(lr(s)) for s in range(6 * STEPS, 8 * STEPS)] == pytest.approx([1e-3 * SWA_LR_FRACTION] * 2 * STEPS)


@pytest.mark.parametrize("recipe, change, message", [
    ("swa", {}, "ema must be 0 with recipe swa"),
    ("swa", {"ema": 0.0, "epochs": 3}, "epochs must be at least 4 with recipe swa"),
    ("swa", {"ema": 0.0, "schedule": "exponential"}, "schedule must be cosine with recipe swa"),
    ("swa", {"ema": 0.0, "checkpoint": "best"}, "checkpoint must be last with recipe swa"),
    ("fge", {"epochs": 4}, "epochs must be at least 5 with recipe fge"),
    ("fge", {"schedule": "onecycle"}, "schedule must be cosine with recipe fge"),
    ("fge", {"checkpoint": "best"}, "checkpoint must be last with recipe fge"),
])
def test_swa_and_fge_options_are_validated(recipe, change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"recipe": recipe, "epochs": 30, **change})


def test_weight_average_is_the_mean_of_the_phase_and_is_what_validation_sees():
    import keras

    from ensemble_cnn.training.callbacks import WeightAverage

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    average = WeightAverage(start_epoch=2)
    average.set_model(model)
    kernel = lambda: model.get_weights()[0]  # noqa: E731
    seen = []
    for epoch, value in enumerate([10.0, 1.0, 2.0, 6.0]):  # epoch 1 (10.0) is before the phase
        average.on_epoch_begin(epoch)
        model.set_weights([np.full((2, 1), value, np.float32), np.zeros(1, np.float32)])
        average.on_test_begin()
        seen.append(float(kernel()[0, 0]))
        average.on_test_end()
        assert float(kernel()[0, 0]) == value, "training goes on from the raw weights"
        average.on_epoch_end(epoch)
    assert seen == [10.0, 1.0, 1.5, 3.0], "validation sees the running average from the phase's start"
    assert average.count == 3
    average.on_train_end()
    assert np.allclose(kernel(), 3.0) and kernel().dtype == np.float32


def test_weight_average_without_validation_counts_each_epoch_once():
    import keras

    from ensemble_cnn.training.callbacks import WeightAverage

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    average = WeightAverage(start_epoch=1)
    average.set_model(model)
    for epoch, value in enumerate([2.0, 4.0]):
        average.on_epoch_begin(epoch)
        model.set_weights([np.full((1, 1), value, np.float32)])
        average.on_epoch_end(epoch)
    average.on_train_end()
    assert average.count == 2 and float(model.get_weights()[0][0, 0]) == pytest.approx(3.0)


@pytest.mark.parametrize("mode", ["sequential", "fused"])
def test_swa_member_is_the_validated_average(tiny_config, tmp_path, mode):
    """The saved member scores on its hold-out exactly what the last epoch's validation (the average) said."""
    from ensemble_cnn.training.member import load_checked_pool, plan_run
    from ensemble_cnn.models import load_member

    cfg = tiny_config(recipe="swa", epochs=8, members=2, mode=mode, width=0.5, limit=1000, val_size=200)  # averages epochs 7, 8
    result = train_ensemble(cfg, tmp_path / "run", log=None)
    assert result.complete and len(result.records) == 2
    pool = load_checked_pool(cfg)
    folder = RunFolder(tmp_path / "run")
    for index, record in enumerate(sorted(result.records, key=lambda r: r["index"])):
        assert record["checkpoint"] == "swa-average" and record["recipe"] == "swa" and record["best_epoch"] == 8
        plan = plan_run(cfg, index, pool)
        probabilities = load_member(folder.files(index).model).predict(plan.x_val, verbose=0)
        target = np.full(probabilities.shape, cfg.label_smoothing / 10) + np.eye(10)[plan.y_val] * (1 - cfg.label_smoothing)
        loss = float(np.mean(-(target * np.log(probabilities)).sum(axis=1)))  # the smoothed cross-entropy
        history = json.loads(folder.files(index).history.read_text())
        key = "val_loss" if "val_loss" in history else f"val_member_{index}_loss"
        assert loss == pytest.approx(history[key][-1], rel=1e-4), "the saved weights are the ones last validated"
        assert float(np.mean(probabilities.argmax(1) == plan.y_val)) == pytest.approx(record["val_accuracy"])
        assert record["test_accuracy"] > 0.45


def test_fge_run_gives_three_members_from_the_cycle_ends(tiny_config, tmp_path):
    cfg = tiny_config(recipe="fge", epochs=5, members=3, ema=0.9, width=0.5, limit=1000)
    result = train_ensemble(cfg, tmp_path / "run", log=None)
    records = sorted(result.records, key=lambda r: r["index"])
    assert [r["best_epoch"] for r in records] == [3, 4, 5]
    assert len({r["seed"] for r in records}) == 1 and all(r["checkpoint"] == "cycle-end+ema" for r in records)
    probabilities = [np.load(RunFolder(tmp_path / "run").files(i).probabilities) for i in range(3)]
    assert not np.allclose(probabilities[1], probabilities[2]), "each short cycle ends in other weights"
    assert records[2]["test_accuracy"] > 0.45
