"""How fast the fused batch producer makes K members' distorted batches: the ceiling it puts on a GPU.

    python benchmarks/bench_producer.py [--data PATH] [--members 5] [--batch-size 128] [--steps 200]

A fused step needs one freshly distorted batch per member (the default training
distortion: shift, rotation, scale and elastic), made in tf.data's prefetch thread.
This measures the producer alone, no TensorFlow: fused steps (and digits) per second
made by ``fused_stream``, and the same digits distorted in one call per step (one
batch of K x B), as a ratio against it in the same run. A fused step can go no faster
than its batches are made, so on a GPU this is the ceiling augmentation puts on training.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import augment  # noqa: E402
from ensemble_cnn.config import TrainConfig  # noqa: E402
from ensemble_cnn.training.fused import fused_stream  # noqa: E402
from ensemble_cnn.training.member import plan_member  # noqa: E402
from ensemble_cnn.data.training import load_pool  # noqa: E402


def best_rate(make_steps, steps: int, repeat: int) -> float:
    """Best of ``repeat``: steps per second over ``steps`` steps of a fresh ``make_steps()`` (5 warm-up steps)."""
    best = 0.0
    for _ in range(repeat):
        stream = make_steps()
        for _ in islice(stream, 5):
            pass
        start = time.perf_counter()
        made = sum(1 for _ in islice(stream, steps))
        best = max(best, made / (time.perf_counter() - start))
    return best


def one_call_per_step(plans, config: TrainConfig):
    """The same number of digits per step, distorted in one ``augment.distort`` call."""
    distortion = augment.Distortion.from_dict(config.distortion)
    rng = np.random.default_rng(0)
    images = np.concatenate([plan.x_train for plan in plans])
    size = len(plans) * config.batch_size
    while True:
        rows = np.sort(rng.choice(len(images), size=size, replace=False))
        yield augment.distort(images[rows], distortion, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    config = TrainConfig(members=args.members, batch_size=args.batch_size, epochs=1000, data=args.data)
    pool = load_pool(data=config.data, expanded=None, limit=None)
    plans = [plan_member(config, index, pool) for index in range(args.members)]
    digits = args.members * args.batch_size
    print(f"fused producer: K={args.members} members x batch {args.batch_size}, training distortion "
          f"{config.distortion['transforms']}, {os.cpu_count()} cores, best of {args.repeat} x {args.steps} steps")
    print(f"{'producer':<40}{'steps/s':>9}{'ms/step':>9}{'digits/s':>10}{'ratio':>7}")
    rows = [
        ("fused_stream (K member streams, 1 thread)", lambda: fused_stream(plans, config)),
        (f"one distort call of {digits} digits per step", lambda: one_call_per_step(plans, config)),
    ]
    reference = None
    for label, make_steps in rows:
        rate = best_rate(make_steps, args.steps, args.repeat)
        reference = reference or rate
        print(f"{label:<40}{rate:9.1f}{1000 / rate:9.2f}{rate * digits:10.0f}{rate / reference:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
