"""Throughput of the input normalizations (augment.NORMALIZATIONS) on real MNIST digits, one core.

Usage (from the repository root)::

    python benchmarks/bench_normalize.py [--data PATH] [--limit 10000] [--repeat 3] [--names deskew width-14 ...]

Prints the CPU class (``lscpu`` model name and its AVX2 / AVX-512 / AMX flags), then for
each normalization the digits per second on ``--limit`` training digits (uint8 in, uint8
out), best of ``--repeat`` runs.  BLAS and OpenMP are held to one thread and the process
to one core, so the figure is a per-core cost (the study's compute accounting divides
by it).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy loads its BLAS

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from augment import NORMALIZATIONS  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist.npz"
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_class() -> str:
    """``model name (flags: avx2 avx512f ...)`` from lscpu, or /proc/cpuinfo, or platform."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model, flags = platform.processor() or "unknown CPU", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name",):
            model = value.strip()
        elif key.strip().lower() == "flags":
            flags = set(value.split())
    found = [f for f in VECTOR_FLAGS if f in flags]
    return f"{model} (flags: {' '.join(found) or 'none of ' + ', '.join(VECTOR_FLAGS)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--names", nargs="+", default=list(NORMALIZATIONS), choices=list(NORMALIZATIONS))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with np.load(args.data, allow_pickle=False) as npz:
        images = np.ascontiguousarray(npz["x_train"][: args.limit])
    print(f"CPU: {cpu_class()}")
    print(f"numpy {np.__version__}, {len(images)} MNIST digits, 1 core, best of {args.repeat}")
    print(f"{'normalization':<14} {'digits/s':>10} {'us/digit':>9}")
    for name in args.names:
        fn = NORMALIZATIONS[name]
        fn(images[:256])  # warm-up: caches, scratch buffers
        best = min(_timed(fn, images) for _ in range(args.repeat))
        print(f"{name:<14} {len(images) / best:>10,.0f} {best / len(images) * 1e6:>9.2f}")


def _timed(fn, images: np.ndarray) -> float:
    start = time.perf_counter()
    fn(images)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
