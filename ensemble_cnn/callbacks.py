"""Keras callbacks of member training (imports Keras: import only inside a worker)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import keras

from ensemble_cnn.recipes import Checkpoint


def metric_keys(n_outputs: int, position: int) -> tuple[str, str, str, str]:
    """Log keys (loss, accuracy, val_loss, val_accuracy) of output ``position``.

    A single model logs ``accuracy``; a fused model of K outputs logs
    ``<output name>_accuracy`` for each.
    """
    if n_outputs == 1:
        return "loss", "accuracy", "val_loss", "val_accuracy"
    name = f"member_{position}"
    return f"{name}_loss", f"{name}_accuracy", f"val_{name}_loss", f"val_{name}_accuracy"


class BestValidation(keras.callbacks.Callback):
    """Checkpoint policy: keep a member's weights from its epoch of best validation accuracy (ties: lower loss).

    Parameters
    ----------
    member : keras.Model
        The member whose weights are tracked (the model itself, or one member of a
        fused model).
    n_outputs, position : int
        Where the member's metrics are in the logs (see :func:`metric_keys`).
    """

    policy = "best-validation"

    def __init__(self, member, *, n_outputs: int = 1, position: int = 0) -> None:
        super().__init__()
        self.member = member
        _, _, self.loss_key, self.accuracy_key = metric_keys(n_outputs, position)
        self.best: Checkpoint | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        accuracy, loss = float(logs[self.accuracy_key]), float(logs[self.loss_key])
        if not (math.isfinite(accuracy) and math.isfinite(loss)):
            return  # a diverged epoch is never a checkpoint
        if self.best is None or (accuracy, -loss) > (self.best.val_accuracy, -self.best.val_loss):
            self.best = Checkpoint(self.member.get_weights(), epoch + 1, accuracy, loss, self.policy)

    def checkpoints(self) -> list[Checkpoint]:
        """The best epoch's weights (empty when no epoch had finite validation figures)."""
        return [] if self.best is None else [self.best]


class LastEpoch(keras.callbacks.Callback):
    """Checkpoint policy: the member is its weights at the end of training (with EMA: the averaged weights).

    Its validation figures are the last epoch's (``nan`` without a validation split).
    """

    policy = "last-epoch"

    def __init__(self, member, *, n_outputs: int = 1, position: int = 0) -> None:
        super().__init__()
        self.member = member
        _, _, self.loss_key, self.accuracy_key = metric_keys(n_outputs, position)
        self.epoch, self.logs = 0, {}
        self.weights: list | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.epoch, self.logs = epoch + 1, dict(logs or {})

    def on_train_end(self, logs=None):
        self.weights = self.member.get_weights()  # after fit's end, EMA weights are the model's

    def checkpoints(self) -> list[Checkpoint]:
        if self.weights is None:
            return []
        accuracy = float(self.logs.get(self.accuracy_key, math.nan))
        loss = float(self.logs.get(self.loss_key, math.nan))
        return [Checkpoint(self.weights, self.epoch, accuracy, loss, self.policy)]


class EpochSnapshots(keras.callbacks.Callback):
    """Checkpoint policy: one member per listed epoch, its weights at that epoch's end (with EMA: averaged).

    Parameters
    ----------
    member : keras.Model
        The member whose weights are taken.
    epochs : sequence of int
        1-based epochs whose end-of-epoch weights become members, in order.
    n_outputs, position : int
        Where the member's metrics are in the logs (see :func:`metric_keys`).
    """

    policy = "cycle-end"

    def __init__(self, member, epochs: Sequence[int], *, n_outputs: int = 1, position: int = 0) -> None:
        super().__init__()
        self.member, self.epochs = member, list(epochs)
        _, _, self.loss_key, self.accuracy_key = metric_keys(n_outputs, position)
        self.taken: list[Checkpoint] = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 not in self.epochs:
            return
        logs = logs or {}
        accuracy = float(logs.get(self.accuracy_key, math.nan))
        loss = float(logs.get(self.loss_key, math.nan))
        # SwapEMAWeights runs first: at an epoch's end the model holds the averaged weights.
        self.taken.append(Checkpoint(self.member.get_weights(), epoch + 1, accuracy, loss, self.policy))

    def checkpoints(self) -> list[Checkpoint]:
        """The snapshots taken (fewer than asked when training stopped early)."""
        return list(self.taken)


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels smoothed by ``smoothing`` (Keras' sparse loss has no smoothing)."""

    def __init__(self, smoothing: float, *, n_classes: int = 10, name: str = "smoothed_crossentropy") -> None:
        super().__init__(name=name)
        self.smoothing, self.n_classes = float(smoothing), int(n_classes)

    def call(self, y_true, y_pred):
        ops = keras.ops
        target = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.n_classes)
        return keras.losses.categorical_crossentropy(target, y_pred, label_smoothing=self.smoothing)

    def get_config(self):
        return {"smoothing": self.smoothing, "n_classes": self.n_classes, "name": self.name}


@dataclass(frozen=True)
class FinishEstimate:
    """What a member needs to estimate when the whole run will finish.

    Attributes
    ----------
    started : float
        ``time.time()`` when the run's training started (driver clock).
    rounds : int
        Rounds of training runs left when the run started: ``ceil(pending / concurrent)``.
    round_index : int
        Which of those rounds this member trains in (0-based).
    """

    started: float
    rounds: int
    round_index: int

    def finish_time(self, epoch_seconds: float, epochs: int) -> float:
        """Estimated wall-clock end of the run, from one epoch's duration."""
        member_started = time.time() - epoch_seconds
        return member_started + (self.rounds - self.round_index) * epochs * epoch_seconds


class EpochLog(keras.callbacks.Callback):
    """One progress line per model output per epoch: ``member 02  epoch  3/15  loss … val_acc … (12.3 s)``.

    ``labels`` name the outputs (one per fused member; see :func:`ensemble_cnn.member.run_label`).

    Keeps each epoch's wall time (training and validation) in ``epoch_seconds``;
    after the first epoch of a run in the first round also prints the whole run's
    estimated finish time (when given a :class:`FinishEstimate`).
    """

    def __init__(
        self,
        labels: Sequence[str],
        epochs: int,
        log: Callable[[str], None] | None,
        *,
        estimate: FinishEstimate | None = None,
    ) -> None:
        super().__init__()
        self.labels, self.epochs, self.log, self.estimate = list(labels), epochs, log, estimate
        self.started = time.perf_counter()
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        self.epoch_seconds.append(round(seconds, 3))
        if self.log is None:
            return
        logs = logs or {}
        for position, label in enumerate(self.labels):
            loss, acc, _, val_acc = metric_keys(len(self.labels), position)
            self.log(
                f"{label}  epoch {epoch + 1:>3}/{self.epochs}  loss {logs.get(loss, math.nan):.4f}  "
                f"acc {logs.get(acc, math.nan):.4f}  val_acc {logs.get(val_acc, math.nan):.4f}  ({seconds:.1f} s)"
            )
        if epoch == 0 and self.estimate is not None and self.estimate.round_index == 0 and self.epochs > 1:
            finish = self.estimate.finish_time(seconds, self.epochs)
            minutes = max(0.0, (finish - time.time()) / 60)
            clock = time.strftime("%H:%M", time.localtime(finish))
            self.log(f"estimated finish {clock} (in about {minutes:.0f} min, from this first epoch)")
