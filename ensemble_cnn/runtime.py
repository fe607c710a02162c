"""Starting TensorFlow quietly and fast, in this process and in every worker.

* **Quiet.** TensorFlow's C++ start-up lines ("Could not find cuda drivers", "failed
  call to cuInit", the oneDNN and CPU-feature notes) are hidden unless the user asks
  for them (``--verbose`` or ``ENSEMBLE_CNN_VERBOSE=1``): the log level is raised
  and the lines absl prints before its own initialisation are dropped while
  TensorFlow is imported. Errors raised in Python are never hidden.
* **Fast on ordinary CPUs.** On x86 TensorFlow switches its oneDNN kernels off
  unless the CPU has AVX-512 VNNI/BF16 or AMX; on an AVX2-only CPU they train the
  ConvNets about 2x faster (``benchmarks/bench_train.py --onednn``), so
  ``TF_ENABLE_ONEDNN_OPTS=1`` is set for every process unless the user set it.

Both are environment variables read when TensorFlow starts: :func:`prepare_environment`
sets them in this process before the import, and worker processes inherit them
(loky, a local dask or ray cluster); a worker on a remote machine calls
:func:`import_tensorflow` itself, which sets them there before its own import.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

VERBOSE_ENV = "ENSEMBLE_CNN_VERBOSE"
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"


def is_verbose() -> bool:
    """True when the user asked to see TensorFlow's own start-up lines."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def prepare_environment(*, verbose: bool | None = None) -> None:
    """Set TensorFlow's environment for this process and the workers it starts.

    Parameters
    ----------
    verbose : bool, optional
        Show TensorFlow's start-up lines (stored in ``ENSEMBLE_CNN_VERBOSE`` so
        workers follow); ``None`` keeps what the environment says.

    A variable the user has set is never overridden.
    """
    if verbose is not None:
        os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    os.environ.setdefault(ONEDNN_ENV, "1")
    if not is_verbose():
        os.environ.setdefault(LOG_LEVEL_ENV, "3")


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (C++ code writes there directly)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (e.g. an embedded interpreter): nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except ValueError:
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """``import tensorflow``, quietly unless verbose; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    prepare_environment()
    if is_verbose():
        import tensorflow as tf
    else:
        with _stderr_silenced():
            import tensorflow as tf

            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        # TensorFlow's Python warnings too (e.g. "N out of the last N calls ... triggered tf.function
        # retracing" when K member models each trace their predict function once).
        tf.get_logger().setLevel("ERROR")
    return tf


def import_keras():
    """``import keras`` after :func:`import_tensorflow` (so Keras' backend starts quietly)."""
    import_tensorflow()
    import keras

    return keras


def configure_tensorflow(intra_op: int, inter_op: int) -> None:
    """Set TensorFlow's own thread pools (loky caps BLAS/OpenMP, not these) and GPU memory growth.

    Must run before TensorFlow's first op; in a reused worker where TensorFlow is
    already initialised the earlier (identical) setting stays.
    """
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # already initialised in this (reused) process
    for gpu in tf.config.list_physical_devices("GPU"):
        # Several worker processes may share a GPU: each takes memory as it needs it
        # instead of most of the card up front.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this (reused) process


def set_determinism(enabled: bool) -> None:
    """Switch on TensorFlow's op determinism in this process (``enabled=False`` leaves it as is).

    With it, the same seeds and thread count give bit-identical training on CPU
    (ops without a deterministic kernel raise instead of running).
    """
    if enabled:
        tf = import_tensorflow()
        tf.config.experimental.enable_op_determinism()


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy (``float32`` or ``mixed_bfloat16``) in this process."""
    keras = import_keras()
    keras.mixed_precision.set_global_policy(policy)
