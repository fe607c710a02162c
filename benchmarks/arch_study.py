"""Which architecture gives the most accuracy per CPU-minute? (How the default ``--arch`` was chosen.)

    python benchmarks/arch_study.py [--data PATH] [--minutes 3] [--precision mixed_bfloat16]

For each architecture: a short probe measures its training throughput on this
machine; then one member trains on the full training set (on-the-fly distortion,
best epoch on validation) for as many epochs as fit in the same wall-clock budget,
and its test accuracy is printed with the wall time and CPU-minutes it took.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ensemble_cnn.config import TrainConfig  # noqa: E402
from ensemble_cnn.models import ARCHITECTURES  # noqa: E402
from ensemble_cnn.train import available_cores, train_ensemble  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget per architecture")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    args = parser.parse_args()
    cores = available_cores()
    print(f"budget {args.minutes} min per architecture, {cores} cores, {args.precision}")
    print(f"{'arch':<10}{'img/s':>8}{'epochs':>8}{'wall min':>10}{'CPU min':>9}{'test acc':>10}{'val acc':>9}", flush=True)
    for arch in args.archs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            probe = TrainConfig(arch=arch, members=1, epochs=2, limit=6000, val_size=500, data=args.data,
                                precision=args.precision)
            record = train_ensemble(probe, Path(tmp) / "probe", log=None).records[0]
            rate = record["train_size"] / record["epoch_seconds"][-1]
            epochs = max(1, math.floor(args.minutes * 60 * rate / 55000))
            config = TrainConfig(arch=arch, members=1, epochs=epochs, data=args.data, precision=args.precision)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            result = train_ensemble(config, Path(tmp) / "run", log=None)
            wall = (time.perf_counter() - wall0) / 60
            cpu = (time.process_time() - cpu0) / 60
            record = result.records[0]
        print(f"{arch:<10}{rate:8.0f}{epochs:8d}{wall:10.1f}{cpu:9.1f}{100 * record['test_accuracy']:9.2f}%"
              f"{100 * record['val_accuracy']:8.2f}%", flush=True)


if __name__ == "__main__":
    main()
