"""The recipe study: which member recipe gives the best ensemble for the time, decided on VALIDATION only.

    python benchmarks/recipe_study.py run NAME [NAME ...] [--seeds 0] [--members 2] [--stage screen]
    python benchmarks/recipe_study.py pool LABEL RUN [RUN ...] [--stage screen]
    python benchmarks/recipe_study.py table [--stage screen]
    python benchmarks/recipe_study.py sizes RUN --first 5 6 [--stage screen]
    python benchmarks/recipe_study.py list

Protocol (honest: nothing is chosen on the test set):

* **Study validation set.** The study trains on the first 50,000 MNIST training digits
  and scores every candidate on the last 10,000 (``artifacts/study/study.npz`` holds
  them as its "test" split, so ``ensemble-cnn train`` reports on them): no member ever
  trains on them or picks an epoch with them. Each member still holds out its own
  ``--val-size`` digits of the 50,000 when its recipe picks a best epoch.
* **Decision.** Candidates are ranked by the study-validation accuracy of the majority
  vote (then of the soft vote, then the members' mean); MNIST's 10,000 test digits
  are scored beside it, with 95% Wilson intervals, and never decide anything.
* **Time.** Each candidate trains with ``ensemble-cnn train`` (default execution: one
  worker process per core) in a fresh run folder; its wall time is recorded with the
  CPU class and whether other work shared the cores (``--shared`` marks it).

Results go to ``artifacts/study/results.jsonl`` (one line per run, never rewritten);
``table`` prints them as the Markdown table of docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.data.mnist import load_mnist  # noqa: E402
from ensemble_cnn.evaluation.evaluate import member_probabilities  # noqa: E402
from ensemble_cnn.hardware import cpu_class  # noqa: E402
from ensemble_cnn.storage.run_folder import RunFolder  # noqa: E402
from ensemble_cnn.evaluation.stats import mcnemar_exact, wilson_interval  # noqa: E402
from ensemble_cnn.inference.vote import VOTES  # noqa: E402

STUDY = ROOT / "artifacts" / "study"
STUDY_TRAIN = 50_000
MNIST_FILE = ROOT.parent / "shared" / "data" / "mnist.npz"

# The recipe options spelled out in full (they do not lean on TrainConfig's defaults, which this study set).
STANDARD = ["--schedule", "exponential", "--ema", "0", "--label-smoothing", "0", "--checkpoint", "best"]
COS_EMA = ["--schedule", "cosine", "--ema", "0.999", "--label-smoothing", "0", "--checkpoint", "last"]
COS_EMA_LS = ["--schedule", "cosine", "--ema", "0.999", "--label-smoothing", "0.1", "--checkpoint", "last"]
CYCLE_EMA = ["--schedule", "onecycle", "--ema", "0.999", "--label-smoothing", "0", "--checkpoint", "last"]
MEDIUM = ["--max-shift", "2", "--max-rotation", "12", "--max-scale", "0.12", "--alpha", "36", "--sigma", "6"]
STRONG = ["--max-shift", "2", "--max-rotation", "15", "--max-scale", "0.15", "--alpha", "38", "--sigma", "6"]
MILD = ["--max-shift", "2", "--max-rotation", "8", "--max-scale", "0.08", "--alpha", "30", "--sigma", "6"]
ERASE25 = ["--erase", "0.25", "--erase-size", "8-16"]
ERASE50 = ["--erase", "0.5", "--erase-size", "8-16"]

# Every candidate is a set of ordinary `ensemble-cnn train` options. Screens use short
# budgets (2 members in about 7-14 minutes of the 2 cores); epochs are set per architecture
# from its measured training speed so candidates get similar wall time.
CANDIDATES: dict[str, list[str]] = {
    "nielsen-std": ["--arch", "nielsen", "--epochs", "16", *STANDARD, *MEDIUM],  # the old default, shortened
    "nielsen-cos-ema": ["--arch", "nielsen", "--epochs", "16", *COS_EMA, *MEDIUM],
    "nielsen-cos-ema-ls": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MEDIUM],
    # augmentation strength for the leading recipe
    "nielsen-cos-ema-ls-strong": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *STRONG],
    "nielsen-cos-ema-ls-mild": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD],
    # epochs and batch size for the chosen recipe (the default's 30 epochs and batch 128, checked on validation)
    "nielsen-cos-ema-ls-mild-e10": ["--arch", "nielsen", "--epochs", "10", *COS_EMA_LS, *MILD],  # --preset quick's
    "nielsen-cos-ema-ls-mild-e30": ["--arch", "nielsen", "--epochs", "30", *COS_EMA_LS, *MILD],
    "nielsen-cos-ema-ls-mild-e60": ["--arch", "nielsen", "--epochs", "60", *COS_EMA_LS, *MILD],  # fewer, longer members
    "nielsen-cos-ema-ls-mild-b256": ["--arch", "nielsen", "--epochs", "16", "--batch-size", "256", "--lr", "0.002",
                                     *COS_EMA_LS, *MILD],
    "nielsen-cos-ema-ls-mild-b512": ["--arch", "nielsen", "--epochs", "16", "--batch-size", "512", "--lr", "0.004",
                                     *COS_EMA_LS, *MILD],
    # every training digit (no per-member hold-out: the last epoch is the member anyway)
    "nielsen-cos-ema-ls-mild-all": ["--arch", "nielsen", "--epochs", "16", "--val-size", "0", *COS_EMA_LS, *MILD],
    # ensemble methods through the recipe hook, at the screen's compute (2 training runs of ~16 epochs)
    "nielsen-snapshot-mild": ["--arch", "nielsen", "--recipe", "snapshot", "--epochs", "15", *COS_EMA_LS, *MILD],
    "nielsen-cos-ema-ls-mild-bag": ["--arch", "nielsen", "--epochs", "16", "--bootstrap", *COS_EMA_LS, *MILD],
    # SWA: the uniform average of the last 4 epochs' ends replaces the EMA (1 member per run)
    "nielsen-swa-ls-mild": ["--arch", "nielsen", "--recipe", "swa", "--epochs", "16", "--schedule", "cosine",
                            "--ema", "0", "--label-smoothing", "0.1", "--checkpoint", "last", *MILD],
    # FGE: 3 members per run, at epochs 12, 14, 16 (run with --members 6: 2 runs, the screen's compute)
    "nielsen-fge-mild": ["--arch", "nielsen", "--recipe", "fge", "--epochs", "16", *COS_EMA_LS, *MILD],
    # round 4 (issue 23 b): wider nielsen members, same recipe and epochs (2.25x and 4x the multiply-adds per digit)
    "nielsen-w15-cos-ema-ls-mild": ["--arch", "nielsen", "--width", "1.5", "--epochs", "16", *COS_EMA_LS, *MILD],
    "nielsen-w20-cos-ema-ls-mild": ["--arch", "nielsen", "--width", "2", "--epochs", "16", *COS_EMA_LS, *MILD],
    # round 4 (issue 23 a): a committee over input normalizations (none, deskew, width-12, width-16), one member each
    "nielsen-norm4-cos-ema-ls-mild": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD,
                                      "--plan", str(ROOT / "benchmarks" / "plans" / "norm4.toml")],
    "nielsen-norm5-cos-ema-ls-mild": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD,
                                      "--plan", str(ROOT / "benchmarks" / "plans" / "norm5.toml")],
    # round 4 (issue 23 e): distortion strength per member (2 mild, 1 medium, 1 strong)
    "nielsen-dist4-cos-ema-ls-mild": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD,
                                      "--plan", str(ROOT / "benchmarks" / "plans" / "dist4.toml")],
    # round 4 (issue 23 c): the BN net at full width, at the length that fits a wider nielsen's cost (8 epochs)
    "deotte-cos-ema-ls-mild-e8": ["--arch", "deotte", "--epochs", "8", *COS_EMA_LS, *MILD],
    # round 4 (issue 23 c): the BN net at its full length (30 epochs, the default's), without the weight EMA
    # (BatchNorm's moving statistics belong to the raw weights; Deotte's own recipe has no average)
    "deotte-cos-ls-mild-e30": ["--arch", "deotte", "--epochs", "30", "--schedule", "cosine", "--ema", "0",
                               "--label-smoothing", "0.1", "--checkpoint", "last", *MILD],
    # round 4 (issue 23 d): born-again members, taught by the finished 5-member plain committee (16 epochs each)
    "nielsen-distill-cos-ema-ls-mild": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD, "--teacher",
                                        str(STUDY / "round4" / "nielsen-cos-ema-ls-mild-k5-s0")],
    # the same 8-epoch screen, run with the EMA also averaging the BatchNorm statistics (a callback since removed:
    # it made the screen worse, docs/results.md round 4 (c)); today it trains as deotte-cos-ema-ls-mild-e8
    "deotte-cos-ema-ls-mild-e8-bnavg": ["--arch", "deotte", "--epochs", "8", *COS_EMA_LS, *MILD],
    # round 5 (issue 32 b): the BN net below full width, without the weight EMA (round 4: the EMA wrecks BN nets),
    # at the screen's length (16 epochs) and the default's (30); width 0.5 costs about a nielsen member, 0.75 about 2x
    "deotte50-cos-ls-mild-e16": ["--arch", "deotte", "--width", "0.5", "--epochs", "16", "--schedule", "cosine",
                                 "--ema", "0", "--label-smoothing", "0.1", "--checkpoint", "last", *MILD],
    "deotte50-cos-ls-mild-e30": ["--arch", "deotte", "--width", "0.5", "--epochs", "30", "--schedule", "cosine",
                                 "--ema", "0", "--label-smoothing", "0.1", "--checkpoint", "last", *MILD],
    "deotte75-cos-ls-mild-e16": ["--arch", "deotte", "--width", "0.75", "--epochs", "16", "--schedule", "cosine",
                                 "--ema", "0", "--label-smoothing", "0.1", "--checkpoint", "last", *MILD],
    "deotte75-cos-ls-mild-e30": ["--arch", "deotte", "--width", "0.75", "--epochs", "30", "--schedule", "cosine",
                                 "--ema", "0", "--label-smoothing", "0.1", "--checkpoint", "last", *MILD],
    # round 5 (issue 32 a): the default recipe with random erasing (Cutout squares of 8-16 px, as in the published
    # MNIST result) after the distortions, at two strengths, at the screen's length (16 epochs) and the default's (30)
    "nielsen-cos-ema-ls-mild-erase25": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD, *ERASE25],
    "nielsen-cos-ema-ls-mild-erase50": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD, *ERASE50],
    "nielsen-cos-ema-ls-mild-erase25-e30": ["--arch", "nielsen", "--epochs", "30", *COS_EMA_LS, *MILD, *ERASE25],
    "nielsen-cos-ema-ls-mild-erase50-e30": ["--arch", "nielsen", "--epochs", "30", *COS_EMA_LS, *MILD, *ERASE50],
    # issue 31's calibration digits: every member holds out the same --val-size digits (no member trains on them),
    # their cost to the vote measured against nielsen-cos-ema-ls-mild (each member its own hold-out)
    "nielsen-cos-ema-ls-mild-shared": ["--arch", "nielsen", "--epochs", "16", *COS_EMA_LS, *MILD,
                                       "--holdout", "shared"],
    "deotte50-std": ["--arch", "deotte", "--width", "0.5", "--epochs", "10", *STANDARD, *MEDIUM],
    "deotte50-cos-ema": ["--arch", "deotte", "--width", "0.5", "--epochs", "10", *COS_EMA, *MEDIUM],
    "an5q-std": ["--arch", "an5", "--width", "0.25", "--epochs", "9", *STANDARD, *MEDIUM],
    "an5q-cycle-ema": ["--arch", "an5", "--width", "0.25", "--epochs", "9", *CYCLE_EMA, *MEDIUM],
    "an7q-cycle-ema": ["--arch", "an7", "--width", "0.25", "--epochs", "8", *CYCLE_EMA, *MEDIUM],
}


def study_data() -> Path:
    """``artifacts/study/study.npz``: train = MNIST train[:50000], test = train[50000:] (the study validation)."""
    path = STUDY / "study.npz"
    if path.exists():
        return path
    from ensemble_cnn.storage import atomic as _atomic
    mnist = load_mnist(MNIST_FILE)
    STUDY.mkdir(parents=True, exist_ok=True)
    _atomic.write_npz(path, x_train=mnist.x_train[:STUDY_TRAIN], y_train=mnist.y_train[:STUDY_TRAIN],
                      x_test=mnist.x_train[STUDY_TRAIN:], y_test=mnist.y_train[STUDY_TRAIN:])
    return path


def run_candidate(name: str, seed: int, members: int, stage: str, *, shared: bool, extra: list[str]) -> dict:
    """Train one candidate with one seed (resuming its folder if present) and score it; append the result."""
    options = CANDIDATES[name] + extra
    if "--holdout" not in options:  # every screen before the default became auto (shared) held out per member
        options = [*options, "--holdout", "member"]
    run_dir = STUDY / stage / f"{name}-k{members}-s{seed}"
    command = [sys.executable, "-m", "cli", "train", "--data", str(study_data()), *options,
               "--members", str(members), "--seed", str(seed), "--out", str(run_dir)]
    print("$ ensemble-cnn " + " ".join(command[3:]), flush=True)
    reused = len(RunFolder(run_dir).records(members)) if run_dir.is_dir() else 0  # the wall time is of the rest
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} seed {seed}: training failed (exit {done.returncode})")
    result = {"name": name, "seed": seed, "members": members, "stage": stage, "options": options,
              "wall_minutes": round(wall / 60, 2), "members_reused": reused, "cpu": cpu_class(), "shared": shared,
              **score(run_dir, members)}
    append_result(result)
    print(json.dumps({k: v for k, v in result.items() if k != "options"}), flush=True)
    return result


def split_scores(split: str, probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """``{split}_members``, and each vote's ``{split}_{vote}`` accuracy with its 95% Wilson interval."""
    out = {f"{split}_members": [float(np.mean(p.argmax(1) == labels)) for p in probabilities]}
    for vote, rule in VOTES.items():
        right = int(np.sum(rule.labels(probabilities) == labels))
        out[f"{split}_{vote}"] = right / len(labels)
        out[f"{split}_{vote}_ci95"] = list(wilson_interval(right, len(labels)))
    return out


def split_probabilities(runs: list[tuple[RunFolder, list[dict]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"val": (probabilities (K, N, 10), labels), "test": ...}`` of the members of ``runs`` (folder, records).

    Study validation is each folder's saved "test" probabilities (the runs trained on
    ``study.npz``); MNIST's test digits are predicted from the saved members.
    """
    out = {}
    for split, data, reload in (("val", load_mnist(study_data()), False), ("test", load_mnist(MNIST_FILE), True)):
        out[split] = (np.concatenate([member_probabilities(folder, records, data, reload=reload)
                                      for folder, records in runs]), data.y_test)
    return out


def score_members(runs: list[tuple[RunFolder, list[dict]]]) -> dict:
    """Study-validation and test scores of the members of ``runs`` voting together."""
    out: dict = {}
    for split, (probabilities, labels) in split_probabilities(runs).items():
        out.update(split_scores(split, probabilities, labels))
    return out


def read_results() -> list[dict]:
    """Every line of ``artifacts/study/results.jsonl``."""
    return [json.loads(line) for line in (STUDY / "results.jsonl").read_text().splitlines() if line.strip()]


def append_result(result: dict) -> None:
    with open(STUDY / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")


def score(run_dir: Path, members: int) -> dict:
    """Study-validation and test accuracy of each member and each vote."""
    folder = RunFolder(run_dir)
    records = folder.records(members)
    out = score_members([(folder, records)])
    out["epochs_picked"] = [r["best_epoch"] for r in records]
    out["train_seconds"] = [r["train_seconds"] for r in records]
    return out


def sizes(name: str, stage: str, firsts: list[int]) -> None:
    """Print the votes of a finished run's first K members for each K, with the exact McNemar test of
    each size against the previous one on the same digits (study validation decides; test beside it)."""
    folder = RunFolder(STUDY / stage / name)
    splits = split_probabilities([(folder, folder.records(max(firsts)))])
    previous: dict = {}
    for k in firsts:
        line = [f"first {k} members:"]
        for split, (probabilities, labels) in splits.items():
            for vote, rule in VOTES.items():
                right = rule.labels(probabilities[:k]) == labels
                line.append(f"{split} {vote} {100 * right.mean():.2f}%")
                if (split, vote) in previous:
                    test = mcnemar_exact(right, previous[split, vote])
                    line.append(f"(vs the previous size: {test['only_a']} vs {test['only_b']}, p = {test['p_value']:.2g})")
                previous[split, vote] = right
        print(" ".join(line), flush=True)


def pool(names: list[str], stage: str, label: str) -> dict:
    """Score the vote of several finished candidates' members together (e.g. heterogeneous architectures).

    ``names`` are run folders under ``artifacts/study/<stage>`` (``NAME-kK-sS``); the
    result is appended to the results with stage ``pool`` and the summed wall time.
    """
    runs = finished_runs(names, stage)
    walls = {f"{r['name']}-k{r['members']}-s{r['seed']}": r["wall_minutes"] for r in read_results()
             if r["stage"] == stage}
    out = {"name": label, "seed": 0, "stage": "pool", "runs": names, "cpu": cpu_class(), "shared": True,
           "wall_minutes": round(sum(walls.get(name, float("nan")) for name in names), 2),
           "members": sum(len(records) for _, records in runs), **score_members(runs)}
    append_result(out)
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("ci95")}), flush=True)
    return out


def finished_runs(names: list[str], stage: str) -> list[tuple[RunFolder, list[dict]]]:
    """The (folder, records) of finished study runs named ``NAME-kK-sS`` under ``artifacts/study/<stage>``."""
    runs = []
    for name in names:
        folder = RunFolder(STUDY / stage / name)
        if not (folder.path / "config.json").is_file():
            raise SystemExit(f"{folder.path}: not a finished study run")
        runs.append((folder, folder.records(folder.read_config().members)))
    return runs


def versus(first: list[str], second: list[str], stage: str) -> None:
    """Two pools of finished runs' members on the same digits: each vote, and the paired test of the majorities."""
    pools = [split_probabilities(finished_runs(names, stage)) for names in (first, second)]
    for split in ("val", "test"):
        (a, labels), (b, _) = pools[0][split], pools[1][split]
        right = [VOTES["majority"].labels(p) == labels for p in (a, b)]
        test = mcnemar_exact(right[0], right[1])
        members = [f"{100 * np.mean([np.mean(m.argmax(1) == labels) for m in p]):.2f}%" for p in (a, b)]
        print(f"{split}: majority {100 * right[0].mean():.2f}% ({len(a)} members, mean {members[0]}) vs "
              f"{100 * right[1].mean():.2f}% ({len(b)} members, mean {members[1]}): "
              f"{test['only_a']} vs {test['only_b']} digits, p = {test['p_value']:.2g}", flush=True)


def table(stage: str) -> None:
    """Markdown table of a stage: mean over seeds per candidate, ranked by validation (majority, soft, members)."""
    rows = [r for r in read_results() if r["stage"] == stage]
    by_name: dict[tuple[str, int], list[dict]] = {}  # one row per candidate and member count, over seeds
    for row in rows:
        by_name.setdefault((row["name"], row["members"]), []).append(row)

    def mean(key: str, runs: list[dict]) -> float:
        return float(np.mean([r[key] for r in runs]))

    def sd(key: str, runs: list[dict]) -> str:
        return f" ± {100 * np.std([r[key] for r in runs], ddof=1):.2f}" if len(runs) > 1 else ""

    ranked = sorted(by_name.items(), key=lambda item: (mean("val_majority", item[1]), mean("val_soft", item[1]),
                                                       np.mean([np.mean(r["val_members"]) for r in item[1]])),
                    reverse=True)
    print("| rank | candidate | seeds | members | val: members mean | val: majority | val: soft | "
          "test: members mean | test: majority | test: soft | wall min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rank, ((name, _), runs) in enumerate(ranked, start=1):
        members_val = np.mean([np.mean(r["val_members"]) for r in runs])
        members_test = np.mean([np.mean(r["test_members"]) for r in runs])
        shared = " (shared)" if any(r["shared"] for r in runs) else ""
        reused = sum(r.get("members_reused", 0) for r in runs)
        shared += f" ({reused} reused members not in it)" if reused else ""
        print(f"| {rank} | `{name}` | {len(runs)} | {runs[0]['members']} | {100 * members_val:.2f}% | "
              f"**{100 * mean('val_majority', runs):.2f}%**{sd('val_majority', runs)} | "
              f"{100 * mean('val_soft', runs):.2f}%{sd('val_soft', runs)} | {100 * members_test:.2f}% | "
              f"{100 * mean('test_majority', runs):.2f}%{sd('test_majority', runs)} | "
              f"{100 * mean('test_soft', runs):.2f}% | {mean('wall_minutes', runs):.1f}{shared} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and score candidates")
    run.add_argument("names", nargs="+", choices=list(CANDIDATES))
    run.add_argument("--seeds", default="0", help="comma-separated root seeds")
    run.add_argument("--members", type=int, default=2)
    run.add_argument("--stage", default="screen")
    run.add_argument("--shared", action="store_true", help="mark the wall times as taken on shared cores")
    run.add_argument("--extra", default="", help="further train options, e.g. '--epochs 30'")
    together = sub.add_parser("pool", help="score the members of several finished runs as one ensemble")
    together.add_argument("label", help="the name the pooled result is stored under")
    together.add_argument("runs", nargs="+", help="run folders under artifacts/study/STAGE, e.g. nielsen-std-k2-s0")
    together.add_argument("--stage", default="screen")
    show = sub.add_parser("table", help="print a stage's results as Markdown")
    show.add_argument("--stage", default="screen")
    sizes_parser = sub.add_parser("sizes", help="votes of a finished run's first K members, for several K")
    sizes_parser.add_argument("run", help="a run folder under artifacts/study/STAGE, e.g. nielsen-std-k2-s0")
    sizes_parser.add_argument("--first", type=int, nargs="+", required=True, help="member counts K")
    sizes_parser.add_argument("--stage", default="screen")
    paired = sub.add_parser("versus", help="two pools of finished runs' members, with the paired test of their votes")
    paired.add_argument("first", help="comma-separated run folders under artifacts/study/STAGE")
    paired.add_argument("second", help="the same, for the other pool")
    paired.add_argument("--stage", default="screen")
    sub.add_parser("list", help="print the candidates")
    args = parser.parse_args()
    if args.command == "list":
        for name, options in CANDIDATES.items():
            print(f"{name:<22} {' '.join(options)}")
    elif args.command == "pool":
        pool(args.runs, args.stage, args.label)
    elif args.command == "versus":
        versus(args.first.split(","), args.second.split(","), args.stage)
    elif args.command == "table":
        table(args.stage)
    elif args.command == "sizes":
        sizes(args.run, args.stage, args.first)
    else:
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in args.names:
                run_candidate(name, seed, args.members, args.stage, shared=args.shared, extra=args.extra.split())


if __name__ == "__main__":
    main()
