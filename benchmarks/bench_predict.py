"""Prediction speed of a trained ensemble: members one by one vs the exported single model, and one digit's latency.

    python benchmarks/bench_predict.py --run artifacts/runs/RUN [--data PATH] [--repeat 3]

Scores MNIST's 10,000 test digits (batches of 1000, ``predict_on_batch``) with (a)
:class:`ensemble_cnn.Ensemble`, which runs the members one after another and votes in
NumPy, and (b) the model ``ensemble-cnn export`` writes (every member and the vote in
one Keras graph), both in this process; then the latency of one digit (the median of
50 calls) for each.
Figures are digits per second (best of ``--repeat``); the ratio is (b) over (a),
measured in the same run. The CPU class is printed with them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.data.mnist import load_mnist  # noqa: E402
from ensemble_cnn.inference.ensemble import Ensemble  # noqa: E402
from ensemble_cnn.hardware import cpu_class  # noqa: E402
from ensemble_cnn.hardware import available_cores
from ensemble_cnn.runtime import import_keras  # noqa: E402


def best_rate(func, n: int, repeat: int) -> float:
    func()  # warm-up: graph tracing
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = max(best, n / (time.perf_counter() - start))
    return best


def latency_ms(func, calls: int = 50) -> float:
    func()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        func()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    keras = import_keras()
    x = load_mnist(args.data).x_test
    ensemble = Ensemble.load(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ensemble.keras"
        ensemble.to_keras().save(path)
        exported = keras.saving.load_model(path, safe_mode=True)
    print(f"{len(ensemble)} members ({ensemble.config.arch}), {len(x):,} digits, batch 1000, "
          f"{available_cores()} cores, {cpu_class()}", flush=True)
    one_by_one = best_rate(lambda: ensemble.predict(x), len(x), args.repeat)
    def exported_predict(digits):
        return np.concatenate([exported.predict_on_batch(digits[i:i + 1000])["vote"] for i in range(0, len(digits), 1000)])

    single = best_rate(lambda: exported_predict(x), len(x), args.repeat)
    print(f"members one by one (Ensemble.predict): {one_by_one:10,.0f} digits/s")
    print(f"exported single model:                 {single:10,.0f} digits/s   ({single / one_by_one:.2f}x)")
    digit = x[:1]
    lat_members = latency_ms(lambda: ensemble.predict(digit))
    lat_single = latency_ms(lambda: exported_predict(digit))
    print(f"one digit: Ensemble.predict {lat_members:.1f} ms, exported model {lat_single:.1f} ms (median of 50)")
    assert np.array_equal(ensemble.predict(x[:1000]), exported_predict(x[:1000]).argmax(1))


if __name__ == "__main__":
    main()
