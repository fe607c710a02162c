"""Time to accuracy of a recipe: wall time, validation and test accuracy of each member and of the votes.

    python benchmarks/time_to_accuracy.py [--data PATH] [--out DIR] [--resume] [-- extra ensemble-cnn run options]

Runs ``ensemble-cnn run`` (the README's main job; the default recipe unless options after
``--`` say otherwise) into a NEW run folder (an existing one is refused unless
``--resume``: nothing is deleted), then prints each member's validation and test accuracy,
its checkpoint epoch and training time, every vote's test accuracy with its 95% interval
and paired test against the best member, and the wall time of the whole command with the
CPU class, against the targets (default: majority >= 99.75% within 60 min on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.hardware import cpu_class  # noqa: E402
from ensemble_cnn.hardware import available_cores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "runs" / "time-to-accuracy"))
    parser.add_argument("--resume", action="store_true", help="keep an existing run folder (resume it)")
    parser.add_argument("extra", nargs="*", help="further `ensemble-cnn run` options (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and not args.resume:
        raise SystemExit(f"{out} exists: give another --out, or --resume to continue that run")
    command = [sys.executable, "-m", "cli", "run", "--data", args.data, "--out", str(out), *args.extra]
    print("$ ensemble-cnn " + " ".join(command[3:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    records = [json.loads((out / f"{m['name']}.json").read_text()) for m in report["members"]]
    print(f"\n{cpu_class()}, {available_cores()} cores, {records[0]['precision']}, {config['arch']}, "
          f"{config['members']} members x {config['epochs']} epochs, recipe {config['recipe']} "
          f"(schedule {config['schedule']}, ema {config['ema']}, label smoothing {config['label_smoothing']}, "
          f"checkpoint {config['checkpoint']})")
    for member in report["members"]:
        val = member["val_accuracy"]
        val_text = f"{100 * val:.2f}%" if val is not None else "  -  "
        print(f"{member['name']:<12} test {100 * member['test_accuracy']:.2f}%  epoch {member['best_epoch']:>3}  "
              f"val {val_text}  trained {member['train_seconds'] / 60:.1f} min")
    summary = report["members_summary"]
    vals = [m["val_accuracy"] for m in report["members"] if m["val_accuracy"] is not None]
    print(f"members mean {100 * summary['mean']:.2f}% ± {100 * summary['std']:.2f}, best {100 * summary['best']:.2f}%"
          + (f"; validation mean {100 * sum(vals) / len(vals):.2f}%" if vals else ""))
    for method, entry in report["ensemble"].items():
        low, high = entry["ci95"]
        test = entry["mcnemar_vs_best_member"]
        print(f"{method} vote  {100 * entry['test_accuracy']:.2f}% (95% CI {100 * low:.2f}-{100 * high:.2f}); vs best "
              f"member +{test['only_ensemble']}/-{test['only_member']}, p = {test['p_value']:.3g}")
    print(f"wall time {wall / 60:.1f} min (the whole command)")


if __name__ == "__main__":
    main()
