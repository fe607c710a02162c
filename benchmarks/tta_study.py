"""Test-time augmentation (TTA): which view set, if any, decided on VALIDATION; test beside it; priced in seconds.

    python benchmarks/tta_study.py --out artifacts/study/tta.json \\
        --study-run artifacts/study/screen/nielsen-cos-ema-ls-mild-k2-s0 \\
        --runs artifacts/runs/default-s0 artifacts/runs/default-s1

Validation (decides):

* the study run (the default recipe trained on MNIST train[:50000], see
  ``recipe_study.py``): its votes on the study validation digits train[50000:];
* every member of the full runs on its own held-out digits (``--val-size`` of them,
  rebuilt from the member's seed; never trained on): members' accuracy, and an exact
  McNemar test over the pooled (member, digit) pairs against no TTA.

Test (reported, decides nothing): members, majority and soft vote of each full run
on MNIST's 10,000 test digits, with the paired test against no TTA and the seconds
one ``Ensemble.member_probabilities`` call takes for the 10,000 digits (each
view's prediction time, summed over the set's views, plus making the views).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from augment.views import TTA_VIEWS, View, apply_view  # noqa: E402
from ensemble_cnn.data.mnist import load_mnist  # noqa: E402
from ensemble_cnn.inference.ensemble import Ensemble  # noqa: E402
from ensemble_cnn.evaluation.evaluate import test_split  # noqa: E402
from ensemble_cnn.hardware import cpu_class  # noqa: E402
from ensemble_cnn.training.member import load_checked_pool, plan_run, run_of  # noqa: E402
from ensemble_cnn.training.recipes import get_recipe  # noqa: E402
from ensemble_cnn.evaluation.stats import mcnemar_exact, mcnemar_p_value, wilson_interval  # noqa: E402
from ensemble_cnn.inference.vote import VOTES  # noqa: E402

DISTINCT_VIEWS: list[View] = sorted({view for views in TTA_VIEWS.values() for view in views})


def per_view(ensemble: Ensemble, digits: np.ndarray) -> tuple[dict[View, np.ndarray], dict[View, float]]:
    """Each distinct view's member probabilities (K, N, 10) and the seconds it took (views made + predicted)."""
    probabilities, seconds = {}, {}
    for view in DISTINCT_VIEWS:
        start = time.perf_counter()
        probabilities[view] = ensemble.member_probabilities(apply_view(digits, view))
        seconds[view] = time.perf_counter() - start
    return probabilities, seconds


def averaged(probabilities: dict[View, np.ndarray], name: str) -> np.ndarray:
    return np.mean([probabilities[view] for view in TTA_VIEWS[name]], axis=0)


def scores(stack: np.ndarray, labels: np.ndarray, plain: np.ndarray) -> dict:
    """Members' accuracies and each vote's accuracy, Wilson interval and McNemar test against ``plain``."""
    out = {"members": [float(np.mean(p.argmax(1) == labels)) for p in stack]}
    for vote, rule in VOTES.items():
        right = rule.labels(stack) == labels
        out[vote] = float(right.mean())
        out[f"{vote}_ci95"] = list(wilson_interval(int(right.sum()), len(labels)))
        out[f"{vote}_vs_none"] = mcnemar_exact(right, rule.labels(plain) == labels)
    return out


def study_run_validation(run_dir: Path) -> dict:
    """Votes of the study run on its own test split (the study validation digits), per view set."""
    ensemble = Ensemble.load(run_dir)
    data = test_split(ensemble.config, None)
    probabilities, _ = per_view(ensemble, data.x_test)
    plain = probabilities[View()]
    return {name: scores(averaged(probabilities, name), data.y_test, plain) for name in TTA_VIEWS}


def member_validation(run_dir: Path) -> dict:
    """Each member on its own held-out digits, per view set: accuracies and the pooled paired test."""
    ensemble = Ensemble.load(run_dir)
    config = ensemble.config
    pool = load_checked_pool(config)
    right: dict[str, list[np.ndarray]] = {name: [] for name in TTA_VIEWS}
    for index, member in enumerate(ensemble.members_):
        plan = plan_run(config, run_of(index, get_recipe(config.recipe)), pool)  # its run's hold-out
        single = Ensemble([member], [ensemble.names_[index]])
        probabilities, _ = per_view(single, plan.x_val)
        for name in TTA_VIEWS:
            right[name].append(averaged(probabilities, name)[0].argmax(1) == plan.y_val)
    plain = np.concatenate(right["none"])
    return {name: {"members": [float(r.mean()) for r in right[name]],
                   "vs_none": mcnemar_exact(np.concatenate(right[name]), plain)} for name in TTA_VIEWS}


def test_scores(run_dir: Path, test) -> dict:
    ensemble = Ensemble.load(run_dir)
    probabilities, seconds = per_view(ensemble, test.x_test)
    plain = probabilities[View()]
    out = {}
    for name, views in TTA_VIEWS.items():
        out[name] = scores(averaged(probabilities, name), test.y_test, plain)
        out[name]["seconds"] = round(sum(seconds[view] for view in views), 2)
    return out


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def pval(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON results (must not exist).")
    parser.add_argument("--study-run", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist.npz")
    parser.add_argument("--table", action="store_true", help="Only print the tables of an existing --out.")
    args = parser.parse_args()
    if args.table:
        print_tables(json.loads(args.out.read_text()))
        return
    if args.out.exists():
        raise SystemExit(f"--out: {args.out} exists; give a new file")
    test = load_mnist(args.data)
    started = time.perf_counter()
    result = {"cpu": cpu_class(), "views": {name: [list(v) for v in views] for name, views in TTA_VIEWS.items()},
              "study_validation": study_run_validation(args.study_run),
              "member_validation": {str(run): member_validation(run) for run in args.runs},
              "test": {str(run): test_scores(run, test) for run in args.runs}}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print_tables(result)
    print(f"\nwrote {args.out} ({result['wall_seconds']} s)")


def print_tables(result: dict) -> None:
    """The validation table (decides) and the test table (reported), as Markdown."""
    print(f"CPU: {result['cpu']}")
    print("\nValidation (decides): study run's votes on train[50000:]; full-run members on their own held-out digits")
    print("| views | n | study-val majority | study-val soft | p vs none | members' own val (mean) | "
          "gained / lost vs none | p |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, views in TTA_VIEWS.items():
        study = result["study_validation"][name]
        members = [m for run in result["member_validation"].values() for m in run[name]["members"]]
        pooled = [run[name]["vs_none"] for run in result["member_validation"].values()]
        gained, lost = sum(t["only_a"] for t in pooled), sum(t["only_b"] for t in pooled)
        print(f"| {name} | {len(views)} | {pct(study['majority'])} | {pct(study['soft'])} | "
              f"{pval(study['majority_vs_none']['p_value'])} | {pct(np.mean(members))} | {gained} / {lost} | "
              f"{pval(mcnemar_p_value(gained, lost))} |")
    print("\nTest (reported beside it): MNIST's 10,000 test digits")
    print("| views | run | members' mean | majority | soft | majority gained/lost (p) | seconds / 10,000 digits |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in TTA_VIEWS:
        for run, by_name in result["test"].items():
            entry = by_name[name]
            t = entry["majority_vs_none"]
            print(f"| {name} | {Path(run).name} | {pct(np.mean(entry['members']))} | {pct(entry['majority'])} | "
                  f"{pct(entry['soft'])} | {t['only_a']} / {t['only_b']} ({pval(t['p_value'])}) | {entry['seconds']} |")


if __name__ == "__main__":
    main()
