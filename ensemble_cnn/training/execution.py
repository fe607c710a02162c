"""The execution plan of a run: its ``auto`` settings (mode, workers, precision) resolved for this machine."""
from __future__ import annotations

from dataclasses import dataclass

from ensemble_cnn import hardware
from ensemble_cnn.hardware import available_cores

__all__ = ["Execution", "resolve_execution"]


@dataclass(frozen=True)
class Execution:
    """How a run executes on this machine: the ``auto`` settings of a config, resolved.

    Attributes
    ----------
    mode : {"sequential", "processes", "fused"}
    jobs : int
        Worker processes (or fused groups) at once.
    precision : {"float32", "mixed_bfloat16"}
    cores : int
        CPU cores of this machine.
    """

    mode: str
    jobs: int
    precision: str
    cores: int

    @property
    def threads(self) -> int:
        """TensorFlow intra-op threads of each worker: cores shared among the workers."""
        return max(1, self.cores // max(1, self.jobs))

    def concurrent(self, members: int) -> int:
        """How many training runs make progress at once."""
        if self.mode == "fused":
            return members
        if self.mode == "processes":
            return max(1, min(self.jobs, members))
        return 1

    def describe(self) -> str:
        if self.mode == "processes":
            how = f"{self.jobs} worker process{'es' if self.jobs > 1 else ''} x {self.threads} TensorFlow threads"
        elif self.mode == "fused":
            how = f"fused, {self.jobs} group{'s' if self.jobs > 1 else ''} x {self.threads} TensorFlow threads"
        else:
            how = f"one after another, {self.cores} TensorFlow threads"
        return f"{how}, {self.precision}"


def resolve_execution(mode: str, jobs: int | None, precision: str, *, backend: str, members: int) -> Execution:
    """Resolve ``auto`` settings for this hardware (imports TensorFlow quietly to look for GPUs).

    Parameters
    ----------
    mode, jobs, precision, backend : as in :class:`ensemble_cnn.config.TrainConfig`
    members : int
        Training runs to schedule (for the default worker count).
    """
    cores = available_cores()
    if mode == "auto":
        mode = "processes" if backend != "loky" else hardware.default_mode()
    if jobs is None:
        jobs = hardware.default_jobs(mode, members=members, cores=cores)
    if precision == "auto":
        precision = hardware.default_precision()
    return Execution(mode=mode, jobs=jobs, precision=precision, cores=cores)
