"""What more members buy: the votes of the members of several finished runs, pooled.

    python benchmarks/pool_runs.py RUN_DIR [RUN_DIR ...] [--data PATH]

Reads each run's verified members (their test-set probabilities, saved at training
time and checked against their sha256), and prints, for the first 5, 10, ... members
of the pool (runs in the order given, members by index), the members' mean accuracy
and the majority- and soft-vote accuracies. Runs made with the same recipe and
different ``--seed`` are independent draws of the same kind of member, so pooling
three 5-member runs shows what a 15-member run of that recipe gives. Also prints the
spread of each run's own majority vote.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.data import load_mnist  # noqa: E402
from ensemble_cnn.evaluate import member_probabilities  # noqa: E402
from ensemble_cnn.train import load_records  # noqa: E402
from ensemble_cnn.vote import majority_vote, soft_vote  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist.npz"))
    parser.add_argument("--step", type=int, default=5, help="pool sizes printed: step, 2*step, ...")
    args = parser.parse_args()

    test = load_mnist(args.data)  # every run is scored on this one test set
    labels = test.y_test
    stacks, per_run = [], []
    for run_dir in args.runs:
        config, records = load_records(run_dir)
        probabilities = member_probabilities(run_dir, records, test, reload=False)
        stacks.append(probabilities)
        per_run.append(float(np.mean(majority_vote(probabilities) == labels)))
        print(f"{run_dir}: {len(records)} members, seed {config.seed}, majority {100 * per_run[-1]:.2f}%")
    pool = np.concatenate(stacks)
    accuracies = (pool.argmax(axis=2) == labels).mean(axis=1)
    if len(per_run) > 1:
        print(f"per-run majority vote: mean {100 * np.mean(per_run):.3f}% ± {100 * np.std(per_run, ddof=1):.3f} "
              f"(sd over {len(per_run)} runs)")
    print(f"{'members':>8}{'mean member':>13}{'majority':>10}{'soft':>8}")
    sizes = sorted({*range(args.step, len(pool) + 1, args.step), len(pool)})
    for k in sizes:
        majority = float(np.mean(majority_vote(pool[:k]) == labels))
        soft = float(np.mean(soft_vote(pool[:k]) == labels))
        print(f"{k:>8}{100 * accuracies[:k].mean():12.2f}%{100 * majority:9.2f}%{100 * soft:7.2f}%")


if __name__ == "__main__":
    main()
