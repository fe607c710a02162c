"""What more members buy: the votes of the members of several finished runs, pooled.

    python benchmarks/pool_runs.py RUN_DIR [RUN_DIR ...] [--step 5]

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

from ensemble_cnn.evaluation.compare import compare_predictions, format_comparison, load_run_predictions  # noqa: E402
from ensemble_cnn.evaluation.stats import wilson_interval  # noqa: E402
from ensemble_cnn.inference.vote import majority_vote, soft_vote  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--step", type=int, default=5, help="pool sizes printed: step, 2*step, ...")
    args = parser.parse_args()

    runs = [load_run_predictions(run_dir) for run_dir in args.runs]  # saved probabilities, sha256-checked
    labels = runs[0].labels
    per_run = [float(np.mean(majority_vote(run.probabilities) == labels)) for run in runs]
    if len(runs) > 1:
        print(format_comparison(compare_predictions(runs)))  # the runs side by side, with paired tests
    pool = np.concatenate([run.probabilities for run in runs])
    accuracies = (pool.argmax(axis=2) == labels).mean(axis=1)
    if len(per_run) > 1:
        print(f"per-run majority vote: mean {100 * np.mean(per_run):.3f}% ± {100 * np.std(per_run, ddof=1):.3f} "
              f"(sd over {len(per_run)} runs)")
    print(f"{'members':>8}{'mean member':>13}{'majority (95% CI)':>26}{'soft':>8}")
    sizes = sorted({*range(args.step, len(pool) + 1, args.step), len(pool)})
    for k in sizes:
        right = int(np.sum(majority_vote(pool[:k]) == labels))
        low, high = wilson_interval(right, len(labels))
        soft = float(np.mean(soft_vote(pool[:k]) == labels))
        print(f"{k:>8}{100 * accuracies[:k].mean():12.2f}%{100 * right / len(labels):9.2f}% "
              f"({100 * low:.2f}–{100 * high:.2f}){100 * soft:7.2f}%")


if __name__ == "__main__":
    main()
