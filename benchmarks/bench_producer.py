"""How fast the fused batch producer makes K members' distorted batches, by thread count.

    python benchmarks/bench_producer.py [--data PATH] [--members 5] [--batch-size 128] [--steps 200]

A fused step needs one freshly distorted batch per member (the default training
distortion: shift, rotation, scale and elastic). This measures the producer alone, no
TensorFlow: fused steps (and digits) per second made by ``fused_stream`` with 1, 2, ...
``data_threads``, each as a ratio against 1 thread in the same run. A fused step can go no
faster than its batches are made, so this is the ceiling augmentation puts on a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.config import TrainConfig  # noqa: E402
from ensemble_cnn.fused import fused_stream  # noqa: E402
from ensemble_cnn.member import plan_member  # noqa: E402
from ensemble_cnn.training_data import load_pool  # noqa: E402


def steps_per_second(plans, config: TrainConfig, steps: int, repeat: int) -> float:
    """Best of ``repeat``: fused steps per second over ``steps`` steps (a few warm-up steps first)."""
    best = 0.0
    for _ in range(repeat):
        stream = fused_stream(plans, config)
        for _ in islice(stream, 5):
            pass
        start = time.perf_counter()
        made = sum(1 for _ in islice(stream, steps))
        best = max(best, made / (time.perf_counter() - start))
        stream.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    config = TrainConfig(members=args.members, batch_size=args.batch_size, epochs=1000, data=args.data)
    pool = load_pool(data=config.data, expanded=None, limit=None)
    plans = [plan_member(config, index, pool) for index in range(args.members)]
    print(f"fused producer: K={args.members} members x batch {args.batch_size}, training distortion "
          f"{config.distortion['transforms']}, {os.cpu_count()} cores, best of {args.repeat} x {args.steps} steps")
    print(f"{'data_threads':>12}{'steps/s':>10}{'digits/s':>11}{'vs 1':>7}")
    reference = None
    for threads in range(1, args.max_threads + 1):
        rate = steps_per_second(plans, replace(config, data_threads=threads), args.steps, args.repeat)
        reference = reference or rate
        print(f"{threads:>12}{rate:10.1f}{rate * args.members * args.batch_size:11.0f}{rate / reference:6.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
