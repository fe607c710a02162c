"""The frozen settings of one training run, saved as ``config.json`` in the run folder."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble_cnn.models import ARCHITECTURES

AUGMENTATIONS = ("distort", "none")
MODES = ("sequential", "processes", "fused")
PRECISIONS = ("float32", "mixed_bfloat16")
BACKENDS = ("loky", "dask", "ray")

# On-the-fly training distortion: the smoother fields of Ciresan et al.'s MNIST
# committees (elastic sigma 6, alpha 36) with a small random affine; see augment.Distortion.
TRAIN_DISTORTION = {
    "transforms": ["shift", "rotate", "scale", "elastic"],
    "max_shift": 2,
    "max_rotation": 12.0,
    "max_scale": 0.12,
    "alpha": 36.0,
    "sigma": 6.0,
}

# Settings that change how a run executes but not what it computes: they may differ
# between a run and its resumption.
EXECUTION_FIELDS = ("jobs", "mode", "backend", "scheduler", "deterministic")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes
    ----------
    arch : str
        Architecture name, one of :data:`ensemble_cnn.models.ARCHITECTURES`.
    members : int
        Number of ensemble members K (>= 1).
    epochs : int
        Training epochs per member (>= 1).
    batch_size : int
        Mini-batch size.
    learning_rate : float
        Adam's initial learning rate.
    final_lr_fraction : float
        The learning rate decays exponentially per epoch down to
        ``learning_rate * final_lr_fraction`` in the last epoch.
    width, dropout : float, float or None
        Model width multiplier and dropout override (see :func:`build_model`).
    augmentation : {"distort", "none"}
        On-the-fly augmentation: fresh random distortions (``distortion``) of every
        training image in every epoch, or none.
    distortion : dict
        Parameters of :class:`augment.Distortion` used when ``augmentation="distort"``.
    val_size : int
        Training images held out per member for checkpoint selection (never the
        test set). Capped at a tenth of the training originals.
    seed : int
        Root seed; member ``i`` derives its own seed from ``(seed, i)``.
    limit : int or None
        Use only the first ``limit`` original training images.
    data : str or None
        MNIST source (npz or IDX folder); ``None`` means Keras' download/cache.
    expanded : str or None
        A pre-expanded training set written by ``ensemble-cnn augment``.
    data_fingerprint : str
        sha256 of the training arrays actually used (filled in by the trainer).
    precision : {"float32", "mixed_bfloat16"}
        Keras dtype policy: float32, or bfloat16 compute with float32 weights (fast on
        CPUs with AMX/AVX512-BF16 and on GPUs).
    jobs : int
        Parallel worker processes (execution only).
    mode : {"sequential", "processes", "fused"}
        How members are scheduled (execution only): one after another with all cores;
        in ``jobs`` worker processes; or side by side in one fused model (split over
        ``jobs`` processes when ``jobs > 1``).
    backend : {"loky", "dask", "ray"}
        The joblib backend that runs the worker tasks (execution only): local loky
        processes, a dask.distributed cluster or a ray cluster. ``dask`` and ``ray``
        need ``mode`` ``processes`` or ``fused`` and send every member to the cluster.
    scheduler : str or None
        Address of a running dask scheduler (``tcp://host:8786``) or ray cluster
        (``ray://host:10001``, ``auto``); ``None`` starts a local one (execution only).
    deterministic : bool
        Switch on TensorFlow's op determinism in the member workers, so the same
        config and thread count give bit-identical members (execution only).
    jit_compile : bool
        XLA-compile the training step (measured several times slower on CPUs; see
        ``benchmarks/bench_train.py``).
    """

    arch: str = "nielsen"
    members: int = 5
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.02
    width: float = 1.0
    dropout: float | None = None
    augmentation: str = "distort"
    distortion: dict = field(default_factory=lambda: dict(TRAIN_DISTORTION))
    val_size: int = 5000
    seed: int = 0
    limit: int | None = None
    data: str | None = None
    expanded: str | None = None
    data_fingerprint: str = ""
    precision: str = "float32"
    jobs: int = 1
    mode: str = "sequential"
    backend: str = "loky"
    scheduler: str | None = None
    deterministic: bool = False
    jit_compile: bool = False

    def __post_init__(self) -> None:
        _check(self.arch in ARCHITECTURES, "arch", f"one of {', '.join(ARCHITECTURES)}", self.arch)
        _check(self.members >= 1, "members", ">= 1", self.members)
        _check(self.epochs >= 1, "epochs", ">= 1", self.epochs)
        _check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _check(self.learning_rate > 0, "learning_rate", "> 0", self.learning_rate)
        _check(0 < self.final_lr_fraction <= 1, "final_lr_fraction", "in (0, 1]", self.final_lr_fraction)
        _check(self.width > 0, "width", "> 0", self.width)
        _check(self.dropout is None or 0 <= self.dropout < 1, "dropout", "in [0, 1)", self.dropout)
        _check(self.augmentation in AUGMENTATIONS, "augmentation", f"one of {', '.join(AUGMENTATIONS)}", self.augmentation)
        _check(self.val_size >= 1, "val_size", ">= 1", self.val_size)
        _check(self.limit is None or self.limit >= 20, "limit", ">= 20", self.limit)
        _check(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        _check(self.jobs >= 1, "jobs", ">= 1", self.jobs)
        _check(self.mode in MODES, "mode", f"one of {', '.join(MODES)}", self.mode)
        _check(self.backend in BACKENDS, "backend", f"one of {', '.join(BACKENDS)}", self.backend)
        _check(self.backend == "loky" or self.mode != "sequential", "mode",
               f"processes or fused with backend {self.backend}", self.mode)
        _check(self.scheduler is None or (self.backend != "loky" and bool(self.scheduler.strip())), "scheduler",
               "the address of a dask or ray cluster (with backend dask or ray)", self.scheduler)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid run config ({exc})") from None

    def computation(self) -> dict[str, Any]:
        """The settings that determine the members' weights (everything but execution)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {got!r}")
