"""The family of named ReLU + dropout ConvNets.

Every model takes a batch of raw ``uint8`` digits, shape (N, 28, 28), and outputs
class probabilities, shape (N, 10). Scaling to [0, 1] happens inside the model
(a ``Rescaling`` layer), so data stays ``uint8`` (4x smaller) until the first
layer, and a saved ``.keras`` member needs no preprocessing code to be used.
Under a mixed-precision policy the output layer stays float32. Weight initialisation and dropout draw from Keras' global seed
(``keras.utils.set_random_seed``), which the trainer sets per member. No ``Lambda`` layers: members load with ``keras.saving.load_model(..., safe_mode=True)``.

Architectures (``ARCHITECTURES``):

``nielsen``
    Nielsen, *Neural Networks and Deep Learning*, chapter 6: conv 20@5x5, max-pool,
    conv 40@5x5, max-pool, dense 1000, dropout 0.5, dense 1000, dropout 0.5, softmax.
``keras``
    The classic Keras MNIST net: conv 32@3x3, conv 64@3x3, max-pool, dropout 0.25,
    dense 128, dropout 0.5, softmax.
``deotte``
    The net of the well-known Keras 15-CNN MNIST ensemble (Deotte): three blocks of
    conv + batch-norm + ReLU with a strided 5x5 conv instead of pooling and
    dropout 0.4 after each block, then softmax.
``an3``, ``an5``, ``an7``
    An et al. 2020 (MnistSimpleCNN, M3/M5/M7): a stack of unpadded 3x3 / 5x5 / 7x7
    convolutions, each conv (no bias) + batch-norm + ReLU, no pooling, then a
    dense layer (no bias) + batch-norm + softmax; input scaled to [-1, 1]. At
    ``width=1`` these are the published nets (137M-173M multiply-adds per digit);
    ``width`` cuts them to a CPU budget (cost scales with ``width**2``). No dropout
    (``dropout`` adds one before the last layer).

``width`` multiplies every channel/unit count; ``dropout`` replaces the dropout
rates (``None`` keeps each architecture's own).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.data.reader import RUN_FILES, check_regular
from ensemble_cnn.errors import RunFolderError, UnsafeMemberError, first_line

INPUT_SHAPE = (28, 28)


def multiply_adds(arch: str, width: float = 1.0, dropout: float | None = None) -> int:
    """Multiply-adds per digit of ``arch`` at ``width``: its convolutions and dense layers, exactly.

    Counted without TensorFlow by running the architecture's own builder on shapes
    (:class:`_ShapeTracer` stands in for ``keras.layers``), so the count cannot drift from
    the model; equal to :func:`count_multiply_adds` of the built model (tested for every
    architecture). Used to order training (longest member first) and for the study's costs.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    tracer = _ShapeTracer()
    builder = _BUILDERS[arch]
    shape = builder(INPUT_SHAPE + (1,), tracer, lambda n: max(1, int(round(n * width))),
                    lambda default: default if dropout is None else dropout)
    tracer.Dense(N_CLASSES)(shape)
    return tracer.total


class _ShapeTracer:
    """The Keras layers the builders use, acting on shapes (h, w, c) / (n,): counts multiply-adds, no TensorFlow."""

    def __init__(self) -> None:
        self.total = 0

    def Conv2D(self, filters: int, kernel: int, strides: int = 1, padding: str = "valid", **_):  # noqa: N802
        def apply(shape):
            rows, cols, channels = shape
            if padding == "same":
                out_rows, out_cols = -(-rows // strides), -(-cols // strides)
            else:
                out_rows, out_cols = (rows - kernel) // strides + 1, (cols - kernel) // strides + 1
            self.total += out_rows * out_cols * filters * kernel * kernel * channels
            return out_rows, out_cols, filters
        return apply

    def MaxPooling2D(self, pool: int, **_):  # noqa: N802
        return lambda shape: (shape[0] // pool, shape[1] // pool, shape[2])

    def Flatten(self, **_):  # noqa: N802
        return lambda shape: (shape[0] * shape[1] * shape[2],)

    def Dense(self, units: int, **_):  # noqa: N802
        def apply(shape):
            self.total += shape[0] * units
            return (units,)
        return apply

    def _same(self, *_, **__):
        return lambda shape: shape

    Dropout = BatchNormalization = Activation = _same


def count_multiply_adds(model) -> int:
    """Multiply-adds per digit of a built Keras model: its Conv2D and Dense layers (the rest is negligible)."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D):
            rows, cols, channels = layer.output.shape[1:]
            total += rows * cols * channels * int(layer.kernel.shape[0] * layer.kernel.shape[1] * layer.kernel.shape[2])
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0] * layer.kernel.shape[1])
    return int(total)


def build_model(arch: str, *, width: float = 1.0, dropout: float | None = None, name: str | None = None):
    """Build an uncompiled Keras model.

    Parameters
    ----------
    arch : {"nielsen", "keras", "deotte"}
        Architecture name.
    width : float, default 1.0
        Multiplier for every channel and unit count (> 0).
    dropout : float, optional
        Dropout rate in [0, 1) used everywhere instead of the architecture's own.
    name : str, optional
        Model name (default: ``arch``).

    Returns
    -------
    keras.Model
        Input (N, 28, 28) uint8, output (N, 10) softmax probabilities.
    """
    from ensemble_cnn.runtime import import_keras

    keras = import_keras()
    layers = keras.layers
    if arch not in _BUILDERS:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    def units(n: int) -> int:
        return max(1, int(round(n * width)))

    def drop(default: float) -> float:
        return default if dropout is None else dropout

    inputs = keras.Input(shape=INPUT_SHAPE, dtype="uint8", name="digits")
    x = layers.Reshape(INPUT_SHAPE + (1,))(inputs)
    builder = _BUILDERS[arch]
    if getattr(builder, "centred_input", False):
        x = layers.Rescaling(2.0 / 255.0, offset=-1.0)(x)
    else:
        x = layers.Rescaling(1.0 / 255.0)(x)
    x = builder(x, layers, units, drop)
    if getattr(builder, "batchnorm_head", False):
        x = layers.Dense(N_CLASSES, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    else:
        outputs = layers.Dense(N_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name or arch)


def _nielsen(x, layers, units: Callable[[int], int], drop: Callable[[float], float]):
    x = layers.Conv2D(units(20), 5, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(units(40), 5, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(units(1000), activation="relu")(x)
    x = layers.Dropout(drop(0.5))(x)
    x = layers.Dense(units(1000), activation="relu")(x)
    return layers.Dropout(drop(0.5))(x)


def _keras(x, layers, units, drop):
    x = layers.Conv2D(units(32), 3, activation="relu")(x)
    x = layers.Conv2D(units(64), 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(drop(0.25))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(units(128), activation="relu")(x)
    return layers.Dropout(drop(0.5))(x)


def _deotte(x, layers, units, drop):
    def conv_bn(x, filters, kernel, strides=1, padding="valid"):
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.Activation("relu")(x)

    for filters in (units(32), units(64)):
        x = conv_bn(x, filters, 3)
        x = conv_bn(x, filters, 3)
        x = conv_bn(x, filters, 5, strides=2, padding="same")
        x = layers.Dropout(drop(0.4))(x)
    x = conv_bn(x, units(128), 4)
    x = layers.Flatten()(x)
    return layers.Dropout(drop(0.4))(x)


def _simple_stack(kernel: int, channels: tuple[int, ...]):
    """An et al.'s MnistSimpleCNN body: unpadded ``kernel`` convs (no bias) + BN + ReLU, no pooling."""

    def build(x, layers, units, drop):
        for filters in channels:
            x = layers.Conv2D(units(filters), kernel, use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)  # PyTorch's default (0.1), as in the paper's code
            x = layers.Activation("relu")(x)
        x = layers.Flatten()(x)
        rate = drop(0.0)
        return layers.Dropout(rate)(x) if rate > 0 else x

    build.centred_input = True
    build.batchnorm_head = True
    return build


_BUILDERS = {
    "nielsen": _nielsen,
    "keras": _keras,
    "deotte": _deotte,
    "an3": _simple_stack(3, tuple(range(32, 177, 16))),  # ten layers, 32 .. 176 channels
    "an5": _simple_stack(5, (32, 64, 96, 128, 160)),
    "an7": _simple_stack(7, (48, 96, 144, 192)),
}

ARCHITECTURES: tuple[str, ...] = tuple(_BUILDERS)
"""Every architecture by name (derived from the builders: adding one is a function plus an entry)."""


def load_member(path: str | Path):
    """Load a saved member with Keras ``safe_mode`` (no deserialised Python code).

    Raises
    ------
    RunFolderError
        One line: the file is missing, not a regular file (a FIFO, a device), larger
        than memory, unreadable, not a Keras model, or carries
        Python code (e.g. a ``Lambda`` layer) that ``safe_mode`` refuses.
    """
    from ensemble_cnn.runtime import import_keras

    keras = import_keras()
    path = Path(path)
    # before Keras opens it: a regular file within memory (a FIFO or device is refused, never waited on or read)
    check_regular(path, what="member model", voice=RUN_FILES)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file; all mean "refused"
        text = str(exc)
        if "safe_mode" in text or "lambda" in text.lower():
            raise UnsafeMemberError(
                f"{path}: refused: it carries Python code (e.g. a Lambda layer), unsafe to load"
            ) from None
        raise RunFolderError(f"{path}: not a loadable Keras model ({first_line(exc)})") from None
