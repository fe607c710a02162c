"""Keras callbacks of member training (imports Keras: import only inside a worker)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np

from ensemble_cnn.training.checkpoint import Checkpoint


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


class AveragedEnd(LastEpoch):
    """Checkpoint policy of weight averaging: the member is the model at the end of training.

    :class:`WeightAverage` has put the average there by then; the validation figures are
    the last epoch's, which (inside the averaging phase) were measured on the average.
    """

    policy = "swa-average"


class WeightAverage(keras.callbacks.Callback):
    """Stochastic weight averaging: the plain mean of the weights at the ends of epochs ``start_epoch`` on.

    Every weight of the model is averaged (per variable, so the members of a fused model
    each get their own average; BatchNorm statistics too). Validation inside the phase
    sees the average (swapped in for the test and back out for training, as Keras'
    ``SwapEMAWeights`` does), and training ends with the average in the model.

    Parameters
    ----------
    start_epoch : int
        The first 1-based epoch whose end enters the average.
    """

    def __init__(self, start_epoch: int) -> None:
        super().__init__()
        self.start_epoch = int(start_epoch)
        self.count = 0
        self.total: list[np.ndarray] | None = None
        self._dtypes: list[np.dtype] = []
        self._epoch, self._added, self._raw = 0, False, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._added = epoch + 1, False

    def _add(self) -> None:
        if self._added or self._epoch < self.start_epoch:
            return
        weights = self.model.get_weights()
        if self.total is None:
            self.total = [np.array(w, dtype=np.float64) for w in weights]
            self._dtypes = [w.dtype for w in weights]
        else:
            for total, w in zip(self.total, weights):
                total += w
        self.count += 1
        self._added = True

    def average(self) -> list[np.ndarray]:
        """The mean weights so far, in the model's dtypes (the accumulation is float64)."""
        if not self.count:
            raise ValueError("no epoch has entered the weight average yet")
        return [(total / self.count).astype(dtype) for total, dtype in zip(self.total, self._dtypes)]

    def on_test_begin(self, logs=None):  # the epoch's validation, after its training steps
        self._add()
        if self.count:
            self._raw = self.model.get_weights()
            self.model.set_weights(self.average())

    def on_test_end(self, logs=None):
        if self._raw is not None:
            self.model.set_weights(self._raw)
            self._raw = None

    def on_epoch_end(self, epoch, logs=None):  # no validation split: the epoch's end enters here
        self._add()

    def on_train_end(self, logs=None):
        if self.count:
            self.model.set_weights(self.average())


class CosineCycles(keras.optimizers.schedules.LearningRateSchedule):
    """Consecutive cosine segments: in each, the rate goes from ``start`` to ``end`` along half a cosine.

    Parameters
    ----------
    cycles : sequence of (steps, start, end)
        Each segment's length in optimizer steps and its first and last learning rate
        (``start == end`` holds the rate). After the last segment the rate stays at its end.
    """

    def __init__(self, cycles: Sequence[tuple[int, float, float]]) -> None:
        super().__init__()
        self.cycles = [(max(1, int(steps)), float(start), float(end)) for steps, start, end in cycles]
        if not self.cycles:
            raise ValueError("cycles must name at least one segment")

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        rate = ops.convert_to_tensor(self.cycles[-1][2], "float32")
        offset = 0.0
        for steps, start, end in self.cycles:
            progress = ops.clip((step - offset) / steps, 0.0, 1.0)
            value = end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
            inside = ops.logical_and(step >= offset, step < offset + steps)
            rate = ops.where(inside, value, rate)
            offset += steps
        return rate

    def get_config(self):
        return {"cycles": [list(cycle) for cycle in self.cycles]}


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

    ``labels`` name the outputs (one per fused member; see :func:`ensemble_cnn.training.member.run_label`).

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
