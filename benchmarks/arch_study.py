"""Which architecture gives the most accuracy per CPU-minute? (How the default ``--arch`` was chosen.)

    python benchmarks/arch_study.py [--data PATH] [--minutes 3] [--precision auto]

For each architecture: a short probe measures its training throughput on this
machine; then one member trains on the full training set (on-the-fly distortion,
best epoch on validation) for as many epochs as fit in the same wall-clock budget.
The table is RANKED BY VALIDATION ACCURACY (the member's own held-out 5,000 digits,
which also picked its epoch): that is what decides; test accuracy is printed beside
it and never used to choose.
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
from ensemble_cnn.hardware import available_cores  # noqa: E402
from ensemble_cnn.training.train import train_ensemble  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget per architecture")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--archs", default=",".join(ARCHITECTURES))
    args = parser.parse_args()
    cores = available_cores()
    print(f"budget {args.minutes} min per architecture, {cores} cores, precision {args.precision}", flush=True)
    rows = []
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
        rows.append((record["val_accuracy"], record["test_accuracy"], arch, rate, epochs, wall, cpu))
        print(f"  {arch}: val {100 * record['val_accuracy']:.2f}% ({epochs} epochs, {wall:.1f} min)", flush=True)
    print(f"{'rank':<5}{'arch':<10}{'img/s':>8}{'epochs':>8}{'wall min':>10}{'CPU min':>9}{'val acc':>9}"
          f"{'test acc':>10}")
    for rank, (val, test, arch, rate, epochs, wall, cpu) in enumerate(sorted(rows, reverse=True), start=1):
        print(f"{rank:<5}{arch:<10}{rate:8.0f}{epochs:8d}{wall:10.1f}{cpu:9.1f}{100 * val:8.2f}%{100 * test:9.2f}%")
    print("ranked by validation accuracy (decides); test accuracy reported beside it")


if __name__ == "__main__":
    main()
