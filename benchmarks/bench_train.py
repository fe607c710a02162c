"""Training throughput of every scheduling mode, measured in one run, as ratios against sequential.

    python benchmarks/bench_train.py [--data PATH] [--arch deotte] [--members 4] [--limit 8000] [--epochs 2]

Each mode trains the same K members (same seeds, data and augmentation) from scratch
through ``train_ensemble`` into a temporary run folder; the figure is training images
per second summed over members, from wall time of the whole call (process start,
graph tracing, validation and saving included, as a user waits for them). Also:
precision (float32 vs mixed bfloat16) and batch size on the fastest mode, and the
cost of on-the-fly augmentation (the same run with and without it).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ensemble_cnn.config import TrainConfig  # noqa: E402
from ensemble_cnn.train import available_cores, train_ensemble  # noqa: E402


def timed(config: TrainConfig) -> tuple[float, float]:
    """Train into a fresh folder; return (seconds, images/s over all members)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_ensemble(config, Path(tmp) / "run", log=None)
        seconds = time.perf_counter() - start
    if not result.complete:
        raise SystemExit(f"benchmark run failed: {result.failures}")
    images = sum(r["train_size"] for r in result.records) * config.epochs
    return seconds, images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--arch", default="deotte")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--limit", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--quick", action="store_true", help="only the mode comparison")
    args = parser.parse_args()

    cores = available_cores()
    base = TrainConfig(arch=args.arch, members=args.members, epochs=args.epochs, limit=args.limit,
                       val_size=500, data=args.data, precision=args.precision)
    print(f"{args.arch}, K={args.members}, {args.limit} digits x {args.epochs} epochs, "
          f"{args.precision}, {cores} cores", flush=True)
    print(f"{'mode':<44}{'seconds':>9}{'img/s':>9}{'vs seq':>8}", flush=True)

    def show(label: str, seconds: float, rate: float, reference: float | None) -> None:
        ratio = f"{rate / reference:7.2f}x" if reference else ""
        print(f"{label:<44}{seconds:9.1f}{rate:9.0f}{ratio:>8}", flush=True)

    seconds, single = timed(replace(base, members=1))
    show("one member alone (1 process x all threads)", seconds, single, None)
    seconds, sequential = timed(replace(base, mode="sequential"))
    show(f"{args.members} members sequential", seconds, sequential, sequential)
    for jobs in sorted({2, cores} - {1}):
        seconds, rate = timed(replace(base, mode="processes", jobs=jobs))
        show(f"{args.members} members processes ({jobs} x {max(1, cores // jobs)} threads)", seconds, rate, sequential)
    results = {}
    for jobs in sorted({1, 2}):
        seconds, rate = timed(replace(base, mode="fused", jobs=jobs))
        results[jobs] = rate
        show(f"{args.members} members fused ({jobs} process{'es' if jobs > 1 else ''})", seconds, rate, sequential)
    if args.quick:
        return
    best_jobs = max(results, key=results.get)
    fused = replace(base, mode="fused", jobs=best_jobs)
    other = "mixed_bfloat16" if args.precision == "float32" else "float32"
    seconds, rate = timed(replace(fused, precision=other))
    show(f"fused ({best_jobs}), {other}", seconds, rate, sequential)
    for batch in (64, 256):
        seconds, rate = timed(replace(fused, batch_size=batch, learning_rate=1e-3 * batch / 128))
        show(f"fused ({best_jobs}), batch {batch} (lr scaled)", seconds, rate, sequential)
    seconds, plain = timed(replace(fused, augmentation="none"))
    show(f"fused ({best_jobs}), no augmentation", seconds, plain, sequential)
    print(f"on-the-fly augmentation costs {100 * (plain / results[best_jobs] - 1):.1f}% of training throughput "
          "(same run with vs without)")


if __name__ == "__main__":
    main()
