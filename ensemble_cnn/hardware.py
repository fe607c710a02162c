"""What the machine offers, and the training defaults that measured fastest on it.

See ``benchmarks/bench_train.py`` and docs/results.md for the
measurements behind these defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

# NVIDIA compute capability from which bfloat16 runs on tensor cores (Ampere, Hopper, ...).
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)


def cpu_flags() -> set[str]:
    """The CPU feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_class(flags: set[str] | None = None) -> str:
    """The CPU class every speed figure names: ``"x86 AMX"``, ``"x86 AVX-512"``, ``"x86 AVX2"``, else the machine.

    ``flags`` defaults to :func:`cpu_flags` (given explicitly in tests).
    """
    import platform

    flags = cpu_flags() if flags is None else flags
    if {"amx_bf16", "amx_tile"} & flags:
        return "x86 AMX"
    if "avx512f" in flags:
        return "x86 AVX-512"
    return "x86 AVX2" if "avx2" in flags else platform.machine() or "unknown"


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AMX or AVX512-BF16)."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def gpu_count() -> int:
    """Number of GPUs TensorFlow sees (imports TensorFlow, quietly)."""
    from ensemble_cnn.runtime import import_tensorflow

    tf = import_tensorflow()
    return len(tf.config.list_physical_devices("GPU"))


def gpu_compute_capabilities() -> list[tuple[int, int] | None]:
    """The compute capability of each GPU TensorFlow sees (``None`` where it does not say)."""
    from ensemble_cnn.runtime import import_tensorflow

    tf = import_tensorflow()

    capabilities = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            capability = tf.config.experimental.get_device_details(device).get("compute_capability")
        except (RuntimeError, ValueError):
            capability = None
        capabilities.append(tuple(capability) if capability else None)
    return capabilities


def choose_precision(*, cpu_bf16: bool, gpu_capabilities: Sequence[tuple[int, int] | None]) -> str:
    """The Keras dtype policy for this hardware.

    With GPUs the model runs on them, so they decide: ``mixed_bfloat16`` when every GPU
    has bfloat16 tensor cores (compute capability >= 8.0: A100, H100, RTX 30xx and
    later), else ``float32``. Not ``mixed_float16`` on older GPUs: it needs loss
    scaling, and one loss scale shared by fused members would couple them (one
    member's overflow would skip every member's step). Without a GPU:
    ``mixed_bfloat16`` on CPUs with AMX/AVX512-BF16 (measured 1.31x over float32),
    else ``float32``.

    Parameters
    ----------
    cpu_bf16 : bool
        The CPU computes bfloat16 natively.
    gpu_capabilities : sequence of (int, int) or None
        One entry per GPU; ``None`` for a GPU whose capability is unknown.
    """
    if gpu_capabilities:
        fast = all(c is not None and tuple(c) >= BF16_MIN_COMPUTE_CAPABILITY for c in gpu_capabilities)
        return "mixed_bfloat16" if fast else "float32"
    return "mixed_bfloat16" if cpu_bf16 else "float32"


def default_precision() -> str:
    """:func:`choose_precision` for this machine (imports TensorFlow)."""
    return choose_precision(cpu_bf16=cpu_has_bf16(), gpu_capabilities=gpu_compute_capabilities())


def default_mode() -> str:
    """The scheduling mode measured fastest on this hardware.

    On a GPU: members fused in one model (one graph fills the GPU; separate processes
    would take turns on it). On CPUs: one worker process per core, one TensorFlow
    thread each (``benchmarks/bench_train.py`` on 2 cores, nielsen, bfloat16, steady
    state: processes 1.33x sequential; fused 1.13x in one process, 1.31x in two).
    """
    return "fused" if gpu_count() > 0 else "processes"


def default_jobs(mode: str, *, members: int, cores: int) -> int:
    """Worker processes for ``mode``: one per core (at most one per member) for processes, else 1."""
    return max(1, min(cores, members)) if mode == "processes" else 1


def available_cores() -> int:
    """CPU cores this process may use."""
    import joblib

    return max(1, joblib.cpu_count(only_physical_cores=False))
