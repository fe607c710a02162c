"""Training throughput of every scheduling mode, measured in one run, as ratios against sequential.

    python benchmarks/bench_train.py [--data PATH] [--arch nielsen] [--members 4] [--limit 12000] [--epochs 3]

Each mode trains the same K members (same seeds, data and augmentation) from scratch
through ``train_ensemble`` into a temporary run folder. Two figures, training images
per second summed over members: ``wall``, from the wall time of the whole call (process
start, graph tracing, validation and saving included, which dominate a tiny run), and
``steady``, from the last epoch's time of each member (what a full-length run sees). Also:
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


def timed(config: TrainConfig) -> tuple[float, float, float]:
    """Train into a fresh folder; return (seconds, wall images/s, steady images/s)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_ensemble(config, Path(tmp) / "run", log=None)
        seconds = time.perf_counter() - start
    if not result.complete:
        raise SystemExit(f"benchmark run failed: {result.failures}")
    images = sum(r["train_size"] for r in result.records) * config.epochs
    per_member = [r["train_size"] / r["epoch_seconds"][-1] for r in result.records]
    concurrent = {"sequential": 1, "processes": min(config.jobs, config.members), "fused": config.members}
    steady = concurrent[config.mode] * sum(per_member) / len(per_member)
    return seconds, images / seconds, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--arch", default="nielsen")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--quick", action="store_true", help="only the mode comparison")
    args = parser.parse_args()

    cores = available_cores()
    base = TrainConfig(arch=args.arch, members=args.members, epochs=args.epochs, limit=args.limit,
                       val_size=500, data=args.data, precision=args.precision)
    print(f"{args.arch}, K={args.members}, {args.limit} digits x {args.epochs} epochs, "
          f"{args.precision}, {cores} cores", flush=True)
    print(f"{'mode':<46}{'seconds':>8}{'wall img/s':>11}{'vs seq':>7}{'steady img/s':>13}{'vs seq':>7}", flush=True)

    def show(label: str, measured: tuple[float, float, float], reference: tuple | None) -> None:
        seconds, wall, steady = measured
        ratios = [f"{a / b:6.2f}x" if reference else "" for a, b in zip((wall, steady), (reference or (1, 1, 1))[1:])]
        print(f"{label:<46}{seconds:8.1f}{wall:11.0f}{ratios[0]:>7}{steady:13.0f}{ratios[1]:>7}", flush=True)

    show("one member alone (1 process x all threads)", timed(replace(base, members=1)), None)
    sequential = timed(replace(base, mode="sequential"))
    show(f"{args.members} members sequential", sequential, sequential)
    modes = {}
    for jobs in sorted({2, cores} - {1}):
        config = replace(base, mode="processes", jobs=jobs)
        modes[f"processes ({jobs} x {max(1, cores // jobs)} threads)"] = (config, timed(config))
    for jobs in (1, 2):
        config = replace(base, mode="fused", jobs=jobs)
        modes[f"fused ({jobs} process{'es' if jobs > 1 else ''})"] = (config, timed(config))
    for label, (_, measured) in modes.items():
        show(f"{args.members} members {label}", measured, sequential)
    if args.quick:
        return
    label, (fastest, measured) = max(modes.items(), key=lambda item: item[1][1][2])
    print(f"cheap wins, on the fastest mode: {label}", flush=True)
    other = "mixed_bfloat16" if args.precision == "float32" else "float32"
    show(f"  {other}", timed(replace(fastest, precision=other)), sequential)
    show("  XLA jit_compile", timed(replace(fastest, jit_compile=True)), sequential)
    for batch in (64, 256):
        show(f"  batch {batch} (lr scaled)",
             timed(replace(fastest, batch_size=batch, learning_rate=1e-3 * batch / 128)), sequential)
    plain = timed(replace(fastest, augmentation="none"))
    show("  no augmentation", plain, sequential)
    cost = 100 * (1 - measured[2] / plain[2])
    print(f"on-the-fly augmentation costs {cost:.1f}% of steady training throughput (same run with vs without)")

if __name__ == "__main__":
    main()
