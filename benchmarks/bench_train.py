"""Training throughput: TensorFlow's oneDNN kernels on vs off, and every scheduling mode against sequential.

    python benchmarks/bench_train.py --onednn [--archs nielsen,deotte] [--repeat 3]
    python benchmarks/bench_train.py --batches 64,128,256,512 [--arch nielsen] [--repeat 3]
    python benchmarks/bench_train.py [--data PATH] [--arch nielsen] [--members 4] [--limit 12000] [--epochs 3]

``--onednn``: one model trains on 12,800 digits (batch 128, float32) in a fresh
process per setting; the figure is the best of ``--repeat`` timed epochs after a
warm-up epoch, in images per second. Columns: TensorFlow's default
(``TF_ENABLE_ONEDNN_OPTS`` unset: on x86 oneDNN stays off unless the CPU has AVX-512
VNNI/BF16 or AMX) against ``TF_ENABLE_ONEDNN_OPTS=1`` (what ensemble-cnn sets), with
1 and 2 TensorFlow threads; on a CPU with AVX-512 or AMX the same pair again with
``ONEDNN_MAX_CPU_ISA=AVX2``, a stand-in for an AVX2-only CPU such as most laptops.

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
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ensemble_cnn.config import TrainConfig  # noqa: E402
from ensemble_cnn.hardware import cpu_class, cpu_flags  # noqa: E402
from ensemble_cnn.hardware import available_cores  # noqa: E402
from ensemble_cnn.training.train import train_ensemble  # noqa: E402

ONEDNN_SETTINGS = {"default": {}, "oneDNN on": {"TF_ENABLE_ONEDNN_OPTS": "1"}}


def measure_one(arch: str, threads: int, data: str, repeat: int, *, tf_default: bool, batch_size: int = 128) -> float:
    """(In a fresh process) best training img/s of one model over ``repeat`` epochs after a warm-up epoch.

    ``tf_default``: import TensorFlow before ensemble-cnn can set its environment, so
    ``TF_ENABLE_ONEDNN_OPTS`` stays as TensorFlow's default (unset).
    """
    import numpy as np

    if tf_default:
        import tensorflow  # noqa: F401  (first: ensemble_cnn.runtime then finds it started)

    from ensemble_cnn.runtime import configure_tensorflow, import_keras
    from ensemble_cnn.models import build_model

    configure_tensorflow(threads, min(2, threads))
    keras = import_keras()
    with np.load(data) as npz:
        x, y = npz["x_train"][:12800], npz["y_train"][:12800].astype("int32")
    keras.utils.set_random_seed(0)
    model = build_model(arch)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:2560], y[:2560], batch_size=batch_size, epochs=1, verbose=0)
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        best = max(best, len(x) / (time.perf_counter() - start))
    return best


def measure_in_processes(arch: str, threads: int, data: str, repeat: int, env: dict[str, str], *, copies: int = 1,
                         batch_size: int = 128, tf_default: bool = False) -> list[float]:
    """Run :func:`measure_one` in ``copies`` fresh processes at once (side by side); their img/s each."""
    command = [sys.executable, __file__, "--measure-one", arch, str(threads), "--data", data, "--repeat", str(repeat),
               "--batch-size", str(batch_size)] + (["--tf-default"] if tf_default else [])
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(copies)]
    outs = [worker.communicate() for worker in workers]
    for worker, (_, err) in zip(workers, outs):
        if worker.returncode:
            raise SystemExit(f"a measuring process failed ({' '.join(command[2:])}):\n{err[-2000:]}")
    return [json.loads(out.strip().splitlines()[-1])["img_per_s"] for out, _ in outs]


def onednn_table(archs: list[str], data: str, repeat: int) -> None:
    """Print default vs oneDNN throughput per architecture and thread count (and the AVX2 stand-in)."""
    flags = cpu_flags()
    wide = bool({"avx512f", "amx_bf16", "amx_tile"} & flags)
    cpu = cpu_class(flags)
    classes = [("this CPU", {})] + ([("AVX2 stand-in", {"ONEDNN_MAX_CPU_ISA": "AVX2"})] if wide else [])
    print(f"CPU class: {cpu}; float32, batch 128, one model, best of {repeat} epochs of 12,800 digits", flush=True)
    print(f"{'arch':<9}{'threads':>8}{'class':>15}{'default img/s':>15}{'oneDNN img/s':>14}{'ratio':>7}", flush=True)
    for arch in archs:
        for threads in (1, 2):
            for label, extra in classes:
                rates = {}
                for name, setting in ONEDNN_SETTINGS.items():
                    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS",)}
                    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **extra, **setting})
                    rates[name], = measure_in_processes(arch, threads, data, repeat, env, tf_default=name == "default")
                ratio = rates["oneDNN on"] / rates["default"]
                print(f"{arch:<9}{threads:>8}{label:>15}{rates['default']:>15.0f}{rates['oneDNN on']:>14.0f}"
                      f"{ratio:>6.2f}x", flush=True)


def batch_table(arch: str, batches: list[int], data: str, repeat: int) -> None:
    """Training img/s per batch size as the default runs it (one single-threaded process per core, side by side).

    Each batch size starts one fresh ``--measure-one ARCH 1`` process per core at
    once and sums their best-epoch rates; the ratio is against batch 128 (the default),
    measured in the same call.
    """
    cores = available_cores()
    print(f"CPU class: {cpu_class()}; float32, oneDNN on, {arch}, {cores} processes x 1 thread side by side, "
          f"best of {repeat} epochs of 12,800 digits each", flush=True)
    print(f"{'batch':>6}{'img/s (sum)':>13}{'vs 128':>8}", flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1"}
    rates = {}
    for batch in sorted(set(batches) | {128}):
        rates[batch] = sum(measure_in_processes(arch, 1, data, repeat, env, copies=cores, batch_size=batch))
    for batch, rate in rates.items():
        print(f"{batch:>6}{rate:>13.0f}{rate / rates[128]:>7.2f}x", flush=True)


def timed(config: TrainConfig) -> tuple[float, float, float]:
    """Train into a fresh folder; return (seconds, wall images/s, steady images/s)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train_ensemble(config, Path(tmp) / "run", log=None)
        seconds = time.perf_counter() - start
    if not result.complete:
        raise SystemExit(f"benchmark run failed: {result.failures}")
    images = sum(r["train_size"] for r in result.records) * config.epochs
    # epoch_seconds of a fused member is its own share of the group's epoch
    per_member = [r["train_size"] / r["epoch_seconds"][-1] for r in result.records]
    concurrent = 1 if result.execution.mode == "fused" else result.execution.concurrent(config.members)
    steady = concurrent * sum(per_member) / len(per_member)
    return seconds, images / seconds, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--arch", default="nielsen")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--quick", action="store_true", help="only the mode comparison")
    parser.add_argument("--onednn", action="store_true", help="oneDNN on vs TensorFlow's default, per arch/threads")
    parser.add_argument("--archs", default="nielsen,deotte", help="architectures of --onednn")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs of --onednn (best is kept)")
    parser.add_argument("--batches", help="comma-separated batch sizes: img/s of --arch as the default runs it "
                        "(one 1-thread process per core), against batch 128")
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--measure-one", nargs=2, metavar=("ARCH", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--tf-default", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        rate = measure_one(args.measure_one[0], int(args.measure_one[1]), args.data, args.repeat,
                           tf_default=args.tf_default, batch_size=args.batch_size)
        print(json.dumps({"img_per_s": rate}))
        return
    if args.batches:
        batch_table(args.arch, [int(b) for b in args.batches.split(",")], args.data, args.repeat)
        return
    if args.onednn:
        onednn_table(args.archs.split(","), args.data, args.repeat)
        return

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

    show("one member alone (1 process x all threads)", timed(replace(base, members=1, mode="sequential")), None)
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
    if cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        other = "mixed_bfloat16" if fastest.precision in ("float32",) else "float32"
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
