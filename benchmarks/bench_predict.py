"""Prediction speed of a trained ensemble: members one by one vs the exported single model, and one digit's latency.

    python benchmarks/bench_predict.py --run artifacts/runs/RUN [--data PATH] [--repeat 3]

Scores MNIST's 10,000 test digits (batches of 1000, ``predict_on_batch``) with (a)
:class:`ensemble_cnn.Ensemble`, which runs the members one after another and votes in
NumPy, and (b) the model ``ensemble-cnn export`` writes (every member and the vote in
one Keras graph), both in this process; then the latency of one digit (the median of
50 calls) for each.
Figures are digits per second (best of ``--repeat``); the ratio is (b) over (a),
measured in the same run. The CPU class is printed with them. For a run with calibration digits,
also :meth:`Ensemble.judge` (labels, conformal sets, unsure / not-a-digit flags, one pass of each
member) against ``Ensemble.predict``, and what its default flags do on the test digits.

    python benchmarks/bench_predict.py --run artifacts/runs/RUN --memory 1000 [--megapixels 36] [--image-format jpeg]

Memory instead: writes ``--memory`` large photos (``--megapixels``, a dark stroke on a
light page; 10 distinct pictures, hard-linked to make up the count) into a temporary
folder, then runs ``ensemble-cnn predict`` on a tenth of them and on all of them, each
in its own subprocess, and prints each one's peak RSS (``ru_maxrss`` from ``os.wait4``)
and wall time. Bounded memory means both peaks are about the same.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
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


def write_photos(folder: Path, count: int, *, megapixels: float, fmt: str, distinct: int = 10) -> list[Path]:
    """``count`` photos of ``megapixels`` in ``folder``: ``distinct`` different ones, the rest hard links to them."""
    from PIL import Image

    width = int(math.sqrt(megapixels * 1e6 * 3 / 2))
    height = int(megapixels * 1e6 / width)
    suffix = {"jpeg": ".jpg", "png": ".png"}[fmt]
    paths = [folder / f"photo_{i:05d}{suffix}" for i in range(count)]
    for i, path in enumerate(paths):
        if i < distinct:
            image = Image.new("RGB", (width, height), (238, 236, 230))
            left = width // 3 + i * width // (3 * distinct)
            image.paste((30, 30, 40), (left, height // 5, left + width // 60, 4 * height // 5))
            image.save(path, format=fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
        else:
            os.link(paths[i % distinct], path)
    return paths


def peak_rss_of_predict(run: Path, folder: Path, out: Path) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit status) of one ``ensemble-cnn predict`` subprocess on ``folder``."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cli", "predict", "--run", str(run), str(folder),
                                "--format", "csv", "--out", str(out)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, process.returncode  # Linux: ru_maxrss in KiB


def memory(run: Path, count: int, *, megapixels: float, fmt: str) -> None:
    """Print the peak RSS of ``predict`` on a tenth of ``count`` large photos and on all of them."""
    with tempfile.TemporaryDirectory() as tmp:
        folders = {n: Path(tmp) / f"n{n}" for n in (max(1, count // 10), count)}
        made = time.perf_counter()
        for n, folder in folders.items():
            folder.mkdir()
            write_photos(folder, n, megapixels=megapixels, fmt=fmt)
        print(f"predict on {megapixels:g} MP {fmt.upper()} photos (made in {time.perf_counter() - made:.0f} s), "
              f"{available_cores()} cores, {cpu_class()}", flush=True)
        for n, folder in folders.items():
            peak, seconds, code = peak_rss_of_predict(run, folder, Path(tmp) / f"out{n}.csv")
            print(f"{n:6,d} photos: peak RSS {peak:7,.0f} MiB, {seconds:6.1f} s ({seconds / n * 1000:.0f} ms a photo), "
                  f"exit {code}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", type=int, default=None, metavar="N",
                        help="Measure predict's peak RSS on N large photos (and on N/10) instead of speed.")
    parser.add_argument("--megapixels", type=float, default=36.0)
    parser.add_argument("--image-format", choices=["jpeg", "png"], default="jpeg")
    args = parser.parse_args()
    if args.memory is not None:
        memory(args.run, args.memory, megapixels=args.megapixels, fmt=args.image_format)
        return
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
        return np.concatenate([exported.predict_on_batch(digits[i:i + 1000])["vote"]
                               for i in range(0, len(digits), 1000)])

    single = best_rate(lambda: exported_predict(x), len(x), args.repeat)
    print(f"members one by one (Ensemble.predict): {one_by_one:10,.0f} digits/s")
    print(f"exported single model:                 {single:10,.0f} digits/s   ({single / one_by_one:.2f}x)")
    digit = x[:1]
    lat_members = latency_ms(lambda: ensemble.predict(digit))
    lat_single = latency_ms(lambda: exported_predict(digit))
    print(f"one digit: Ensemble.predict {lat_members:.1f} ms, exported model {lat_single:.1f} ms (median of 50)")
    assert np.array_equal(ensemble.predict(x[:1000]), exported_predict(x[:1000]).argmax(1))
    if ensemble.calibration_ is None:
        print(f"no judge timing: {ensemble.calibration_note_}")
        return
    thresholds = ensemble.thresholds()  # fixed once, as predict and serve do
    judged = best_rate(lambda: ensemble.judge(x, thresholds=thresholds), len(x), args.repeat)
    print(f"Ensemble.judge (labels, sets, flags):  {judged:10,.0f} digits/s   "
          f"({100 * (one_by_one / judged - 1):+.1f}% time against Ensemble.predict)")
    verdicts = ensemble.judge(x, thresholds=thresholds)
    y = load_mnist(args.data).y_test
    wrong = verdicts.labels != y
    sizes = verdicts.sets.sum(axis=1)
    print(f"{thresholds.describe()}\n{verdicts.summary()}; errors {int(wrong.sum())} in all, "
          f"{int((wrong & verdicts.answered).sum())} among the answered; sets cover "
          f"{100 * verdicts.sets[np.arange(len(y)), y].mean():.2f}% of the true labels, mean size {sizes.mean():.3f}, "
          f"{int((sizes == 0).sum())} empty")


if __name__ == "__main__":
    main()
