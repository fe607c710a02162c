"""Throughput of the augment package against a per-image scipy.ndimage loop.

Usage (from the repository root)::

    python benchmarks/bench_augment.py [--data PATH] [--jobs 2] [--limit N]
        [--subset 3000] [--repeat 1] [--modes shift rotation elastic affine+elastic]

For each mode it times ``augment.expand(x_train, y_train, copies=1, ...)`` on
the real MNIST training digits with ``n_jobs = 1`` and with ``n_jobs = --jobs``
worker threads and worker processes, and reports distorted images per second
(the copy of the originals is included in the time) and, for one job, per
CPU-second (meaningful when the machine is shared), next to a per-image
``scipy.ndimage`` loop timed on ``--subset`` digits in the same run:

* shift: ``scipy.ndimage.shift(order=0)``;
* rotation: ``scipy.ndimage.rotate(order=1, reshape=False)``;
* elastic: 2 x ``gaussian_filter`` + ``map_coordinates(order=1)``;
* affine+elastic: the same plus the affine coordinate map in NumPy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from augment import Distortion, affine_coefficients, draw, expand  # noqa: E402

MODES = {
    "shift": Distortion(transforms=("shift",), max_shift=2),
    "rotation": Distortion(transforms=("rotate",), max_rotation=15.0),
    "elastic": Distortion(transforms=("elastic",), alpha=34.0, sigma=4.0),
    "affine+elastic": Distortion(
        transforms=("shift", "rotate", "scale", "elastic"),
        max_shift=2,
        max_rotation=15.0,
        max_scale=0.1,
        alpha=34.0,
        sigma=4.0,
    ),
}


def scipy_loop(mode: str, images: np.ndarray, distortion: Distortion, seed: int) -> np.ndarray:
    """Per-image scipy.ndimage reference implementation of ``mode``."""
    n, h, w = images.shape
    d = draw(distortion, np.random.default_rng(seed), n, (h, w))
    out = np.empty(images.shape, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    coefs = affine_coefficients(d.angles, d.scales, d.shifts, (h, w))
    for i in range(n):
        img = images[i].astype(np.float64)
        if mode == "shift":
            out[i] = ndimage.shift(img, d.shifts[i], order=0, mode="constant")
        elif mode == "rotation":
            out[i] = ndimage.rotate(img, d.angles[i], reshape=False, order=1, mode="constant")
        else:
            dy = distortion.alpha * ndimage.gaussian_filter(d.noise[i, 0], distortion.sigma, mode="constant")
            dx = distortion.alpha * ndimage.gaussian_filter(d.noise[i, 1], distortion.sigma, mode="constant")
            qy, qx = yy + dy, xx + dx
            if mode == "affine+elastic":
                c = coefs[i]
                qy, qx = (c[0, 0] * qy + c[0, 1] * qx + c[0, 2], c[1, 0] * qy + c[1, 1] * qx + c[1, 2])
            out[i] = ndimage.map_coordinates(img, [qy, qx], order=1, mode="constant")
    return out


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best process CPU time of ``repeat`` calls of ``fn``."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist.npz",
                        help="Keras-layout mnist.npz (default ../shared/data/mnist.npz)")
    parser.add_argument("--jobs", type=int, default=2, help="n_jobs of the parallel runs (1 is always timed)")
    parser.add_argument("--limit", type=int, default=60000, help="training digits to expand")
    parser.add_argument("--subset", type=int, default=3000, help="digits for the scipy loop")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args(argv)

    if not args.data.exists():
        parser.error(f"no MNIST file at {args.data}")
    with np.load(args.data) as f:
        x = f["x_train"][: args.limit]
        y = f["y_train"][: args.limit]
    n = x.shape[0]
    # (label, n_jobs, backend) of each timed configuration.
    configs = [("j=1", 1, "threads")]
    if args.jobs > 1:
        configs += [(f"j={args.jobs} thr", args.jobs, "threads"), (f"j={args.jobs} proc", args.jobs, "processes")]
    print(f"MNIST {x.shape} {x.dtype}; cpus={os.cpu_count()}; numpy {np.__version__}; "
          f"chunk_size={args.chunk_size}; best of {args.repeat}")
    header = f"{'mode':<16}" + "".join(f"{label + ' img/s':>16}" for label, _, _ in configs)
    header += f"{'img/cpu-s':>12}{'scipy img/s':>13}" + "".join(f"{'x(' + label + ')':>13}" for label, _, _ in configs)
    print(header)
    out = np.empty((2 * n, *x.shape[1:]), dtype=x.dtype)
    out.fill(0)  # touch the pages once, outside the timings
    for mode in args.modes:
        dist = MODES[mode]
        rates = []
        cpu_rate = 0.0
        for _, n_jobs, backend in configs:
            # Warm-up: caches, thread-local buffers, worker processes.
            expand(x[:2048], y[:2048], copies=1, distortion=dist, n_jobs=n_jobs, backend=backend,
                   chunk_size=args.chunk_size, out=out[:4096])
            wall, cpu = timed(lambda: expand(x, y, copies=1, distortion=dist, seed=0, n_jobs=n_jobs,
                                             backend=backend, chunk_size=args.chunk_size, out=out), args.repeat)
            rates.append(n / wall)
            if n_jobs == 1:
                cpu_rate = n / cpu
        sub = x[: args.subset]
        ref = sub.shape[0] / timed(lambda: scipy_loop(mode, sub, dist, 0), 1)[0]
        line = f"{mode:<16}" + "".join(f"{r:>16,.0f}" for r in rates)
        line += f"{cpu_rate:>12,.0f}{ref:>13,.0f}" + "".join(f"{r / ref:>13.1f}" for r in rates)
        print(line, flush=True)
    print("img/s: distorted digits per wall-clock second through expand(copies=1) (the copy of the "
          "originals included); thr / proc: worker threads / processes; img/cpu-s: per CPU-second "
          "at j=1; x(...): ratio to the per-image scipy loop.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
