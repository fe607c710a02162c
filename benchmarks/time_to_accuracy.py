"""Time to accuracy of the default recipe: wall time and test accuracy of each member and of the vote.

    python benchmarks/time_to_accuracy.py [--data PATH] [--out DIR] [-- extra ensemble-cnn run options]

Runs ``ensemble-cnn run`` (the README's main job, default recipe) into a fresh run
folder, then prints each member's test accuracy, its best (validation-chosen) epoch and
training time, the majority- and soft-vote ensemble accuracy, and the wall time of the
whole command, against the targets (5 members >= 99.70% within 60 min on a 2-core CPU;
>= 99.80% within 15 min on a GPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "runs" / "time-to-accuracy"))
    parser.add_argument("--resume", action="store_true", help="keep an existing run folder (resume it)")
    parser.add_argument("extra", nargs="*", help="further `ensemble-cnn run` options (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and not args.resume:
        shutil.rmtree(out)
    command = [sys.executable, "-m", "cli", "run", "--data", args.data, "--out", str(out), *args.extra]
    print("$ ensemble-cnn " + " ".join(command[3:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    print(f"\n{platform.processor() or platform.machine()}, {config['mode']} x{config['jobs']}, "
          f"{config['precision']}, {config['arch']}, {config['members']} members x {config['epochs']} epochs")
    for member in report["members"]:
        print(f"{member['name']:<12} test {100 * member['test_accuracy']:.2f}%  best epoch {member['best_epoch']:>3}  "
              f"val {100 * member['val_accuracy']:.2f}%  trained {member['train_seconds'] / 60:.1f} min")
    summary = report["members_summary"]
    print(f"members mean {100 * summary['mean']:.2f}% ± {100 * summary['std']:.2f}, best {100 * summary['best']:.2f}%")
    for method in ("majority", "soft"):
        print(f"{method} vote  {100 * report['ensemble'][method]['test_accuracy']:.2f}%")
    print(f"wall time {wall / 60:.1f} min (the whole command)")


if __name__ == "__main__":
    main()
