"""What the machine offers, and the training defaults that measured fastest on it.

See ``benchmarks/bench_train.py`` and the README's results table for the
measurements behind these defaults.
"""
from __future__ import annotations

from pathlib import Path


def cpu_flags() -> set[str]:
    """The CPU feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AMX or AVX512-BF16)."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def gpu_count() -> int:
    """Number of GPUs TensorFlow sees (imports TensorFlow)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def default_precision() -> str:
    """``mixed_bfloat16`` where the hardware computes bfloat16 natively, else ``float32``."""
    if cpu_has_bf16() or gpu_count() > 0:
        return "mixed_bfloat16"
    return "float32"


def default_mode() -> str:
    """The scheduling mode measured fastest on this hardware.

    On a GPU: members fused in one model (one graph fills the GPU; separate processes
    would take turns on it). On CPUs: one worker process per core, one TensorFlow
    thread each (``benchmarks/bench_train.py`` on 2 cores, deotte, bfloat16, steady
    state: processes 1.33x sequential; fused 1.18x in one process, 1.28x in two).
    """
    return "fused" if gpu_count() > 0 else "processes"


def default_jobs(mode: str, *, members: int, cores: int) -> int:
    """Worker processes for ``mode``: one per core (at most one per member) for processes, else 1."""
    return max(1, min(cores, members)) if mode == "processes" else 1
