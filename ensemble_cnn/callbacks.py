"""Keras callbacks of member training (imports Keras: import only inside a worker)."""
from __future__ import annotations

import math
import time
from typing import Callable

import keras


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the best validation accuracy (ties: lower val loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.best_key = (-1.0, math.inf)
        self.best_epoch = -1
        self.best_accuracy = float("nan")
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        accuracy, loss = float(logs["val_accuracy"]), float(logs["val_loss"])
        if accuracy > self.best_key[0] or (accuracy == self.best_key[0] and loss < self.best_key[1]):
            self.best_key = (accuracy, loss)
            self.best_epoch, self.best_accuracy = epoch, accuracy
            self.weights = self.model.get_weights()

    def restore(self, model) -> None:
        if self.weights is not None:
            model.set_weights(self.weights)


class EpochLog(keras.callbacks.Callback):
    """One progress line per epoch: ``member 02  epoch  3/15  loss … val_acc … (12.3 s)``."""

    def __init__(self, index: int, epochs: int, log: Callable[[str], None] | None) -> None:
        super().__init__()
        self.index, self.epochs, self.log = index, epochs, log
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.log is None:
            return
        logs = logs or {}
        self.log(
            f"member {self.index:02d}  epoch {epoch + 1:>3}/{self.epochs}  "
            f"loss {logs.get('loss', float('nan')):.4f}  acc {logs.get('accuracy', float('nan')):.4f}  "
            f"val_acc {logs.get('val_accuracy', float('nan')):.4f}  ({time.perf_counter() - self.started:.1f} s)"
        )
