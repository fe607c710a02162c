"""Recipe options: learning-rate schedules, weight EMA, label smoothing, last-epoch members, new architectures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.recipes import ONECYCLE_START, ONECYCLE_WARMUP, RECIPES, schedule
from ensemble_cnn.run_folder import RunFolder
from ensemble_cnn.train import train_ensemble

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
    from ensemble_cnn.callbacks import SmoothedSparseCrossentropy

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
    from ensemble_cnn.recipes import ema_momentum

    assert ema_momentum(tiny_config(ema=ema, epochs=epochs), steps_per_epoch=steps) == pytest.approx(expected)


def test_ema_member_is_the_averaged_weights(tiny_config, tmp_path, monkeypatch):
    """With a momentum so close to 1 that the average barely moves (the run-length cap lifted), the saved
    member is ~ its initial weights: the same run that learns with the capped default is at chance level."""
    from ensemble_cnn import recipes

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
