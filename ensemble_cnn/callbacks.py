"""Keras callbacks of member training (imports Keras: import only inside a worker)."""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import keras


def metric_keys(n_members: int, position: int) -> tuple[str, str, str, str]:
    """Log keys (loss, accuracy, val_loss, val_accuracy) of output ``position``.

    A single model logs ``accuracy``; a fused model of K outputs logs
    ``<output name>_accuracy`` for each.
    """
    if n_members == 1:
        return "loss", "accuracy", "val_loss", "val_accuracy"
    name = f"member_{position}"
    return f"{name}_loss", f"{name}_accuracy", f"val_{name}_loss", f"val_{name}_accuracy"


class BestWeights(keras.callbacks.Callback):
    """Keep a member's weights from its epoch of best validation accuracy (ties: lower val loss).

    Parameters
    ----------
    member : keras.Model
        The member whose weights are tracked (the model itself, or one member of a
        fused model).
    n_members, position : int
        Where the member's metrics are in the logs (see :func:`metric_keys`).
    """

    def __init__(self, member, *, n_members: int = 1, position: int = 0) -> None:
        super().__init__()
        self.member = member
        _, _, self.loss_key, self.accuracy_key = metric_keys(n_members, position)
        self.best_key = (-1.0, math.inf)
        self.best_epoch = -1
        self.best_accuracy = float("nan")
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        accuracy, loss = float(logs[self.accuracy_key]), float(logs[self.loss_key])
        if accuracy > self.best_key[0] or (accuracy == self.best_key[0] and loss < self.best_key[1]):
            self.best_key = (accuracy, loss)
            self.best_epoch, self.best_accuracy = epoch, accuracy
            self.weights = self.member.get_weights()

    def restore(self) -> None:
        if self.weights is not None:
            self.member.set_weights(self.weights)


class EpochLog(keras.callbacks.Callback):
    """One progress line per member per epoch: ``member 02  epoch  3/15  loss … val_acc … (12.3 s)``.

    Also keeps each epoch's wall time (training and validation) in ``epoch_seconds``.
    """

    def __init__(self, indices: Sequence[int], epochs: int, log: Callable[[str], None] | None) -> None:
        super().__init__()
        self.indices, self.epochs, self.log = list(indices), epochs, log
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
        for position, index in enumerate(self.indices):
            loss, acc, _, val_acc = metric_keys(len(self.indices), position)
            self.log(
                f"member {index:02d}  epoch {epoch + 1:>3}/{self.epochs}  loss {logs.get(loss, math.nan):.4f}  "
                f"acc {logs.get(acc, math.nan):.4f}  val_acc {logs.get(val_acc, math.nan):.4f}  ({seconds:.1f} s)"
            )
