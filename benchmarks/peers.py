"""This project against its peers at an equal wall-clock budget, one after the other on one machine (issue 32, item 3).

    python benchmarks/peers.py --budget-min 10 --data ../shared/data/mnist.npz --out artifacts/peers-10min.json
    python benchmarks/peers.py --budget-min 48 --data ../shared/data/mnist.npz --out artifacts/peers-48min.json
    python benchmarks/peers.py --budget-min 1 --limit-train 3000 --out /tmp/peers-smoke.json \
        -- --epochs 1 --val-size 500     # a smoke test: options after -- go to ensemble-cnn train

Three contenders, each trained on the same training digits and scored on MNIST's 10,000
test digits by the majority vote of its members' argmaxes (one rule for all:
:func:`ensemble_cnn.inference.vote.majority_vote`: the most voted class; a tie goes to the
larger sum of probabilities, then to the lower label):

1. **project**: ``ensemble-cnn train`` with the preset whose published AVX2 wall time fits the
   budget (:data:`PRESET_MINUTES`: ``quick`` for 10 min, the default for 48; ``--preset``
   overrides; options after ``--`` are passed on). Its wall time is the whole command, which
   trains and then evaluates on the test digits (the run's ``report.json``); the per-digit vote
   is recomputed from the members' saved probabilities and checked against the report.
2. **keras**: Keras' ``mnist_convnet`` example (keras-io examples/vision/mnist_convnet.py:
   Conv2D(32, 3, relu), MaxPool 2, Conv2D(64, 3, relu), MaxPool 2, Flatten, Dropout 0.5,
   Dense 10 softmax; Adam, categorical cross-entropy, batch 128, 15 epochs,
   ``validation_split=0.1``; inputs scaled to [0, 1]) trained K times with seeds ``seed + k``,
   one after another in this process with TensorFlow's default threads (all cores). The first
   member's time is measured; a further member starts only if it fits the budget at the
   slowest member's time so far (:func:`next_member_fits`).
3. **torch**: TorchEnsemble's ``VotingClassifier`` with the same ConvNet in PyTorch
   (benchmarks/peers_torch.py, run by ``.venv-peers/bin/python``: torch and torchensemble
   are never dependencies of the package). Its own vote is soft (its default); the table's
   majority column is the hard vote by the rule above, TorchEnsemble's own hard vote is in
   the JSON.

The peers get ``--budget-min`` each (the project's preset is the one made for that budget;
its measured time is reported beside). The table gives each contender's members, epochs,
wall time, test majority accuracy, its own default vote, the difference from the project
with an exact paired McNemar test, and the wall-time ratio to the project. The same goes
to ``--out`` as JSON (written once, never overwriting), with the CPU model and flags and the
load average at the start (other work on the cores slows everyone, unequally).

Setting up the torch environment (once; never installed into the package's own venv; git ignores it)::

    python -m venv .venv-peers
    .venv-peers/bin/pip install torch==2.13.0 torchensemble   # tested: torch 2.13.0+cpu, torchensemble 0.2.0

(where pip would fetch the CUDA build, add ``--index-url https://download.pytorch.org/whl/cpu
--extra-index-url https://pypi.org/simple``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.data.mnist import MnistData, load_mnist  # noqa: E402
from ensemble_cnn.evaluation.evaluate import member_probabilities  # noqa: E402
from ensemble_cnn.evaluation.render import REPORT_JSON  # noqa: E402
from ensemble_cnn.evaluation.stats import mcnemar_exact  # noqa: E402
from ensemble_cnn.hardware import available_cores, cpu_class, cpu_flags  # noqa: E402
from ensemble_cnn.inference.vote import majority_vote  # noqa: E402
from ensemble_cnn.storage.run_folder import RunFolder  # noqa: E402

MNIST_FILE = ROOT.parent / "shared" / "data" / "mnist.npz"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
TORCH_WORKER = Path(__file__).resolve().parent / "peers_torch.py"
CONTENDERS = ("project", "keras", "torch")

# Published wall time of each preset on the 2-core AVX2 EPYC (README, Results): the preset made for a budget.
PRESET_MINUTES = {"quick": 10.0, "default": 48.0}

# Keras' mnist_convnet example, as published.
KERAS_EPOCHS = 15
KERAS_BATCH_SIZE = 128
KERAS_VALIDATION_SPLIT = 0.1


# --------------------------------------------------------------------------- budget arithmetic
def preset_for_budget(budget_min: float) -> str:
    """The preset with the longest published wall time within ``budget_min`` (``quick`` below all of them).

    >>> preset_for_budget(10), preset_for_budget(48), preset_for_budget(1), preset_for_budget(30)
    ('quick', 'default', 'quick', 'quick')
    """
    fitting = [name for name, minutes in PRESET_MINUTES.items() if minutes <= budget_min]
    if not fitting:
        return min(PRESET_MINUTES, key=PRESET_MINUTES.get)
    return max(fitting, key=PRESET_MINUTES.get)


def next_member_fits(elapsed_s: float, member_seconds: list[float], budget_s: float) -> bool:
    """Whether one more member, at the slowest member's time so far, ends within ``budget_s``.

    The first member always starts (``member_seconds`` empty): the budget is measured on it.

    >>> next_member_fits(0, [], 60), next_member_fits(100, [100], 250), next_member_fits(200, [100], 250)
    (True, True, False)
    """
    return not member_seconds or elapsed_s + max(member_seconds) <= budget_s


# --------------------------------------------------------------------------- the machine
def machine() -> dict:
    """CPU model, class and vector flags, cores, and the load average now (others' work on the cores)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    load = os.getloadavg()
    cores = available_cores()
    return {"cpu_model": model, "cpu_class": cpu_class(flags), "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags, "cores": cores, "load_average_start": [round(x, 2) for x in load],
            # the 1-minute load above a quarter core: something else was running when the benchmark began
            "cores_shared_at_start": load[0] > 0.25}


# --------------------------------------------------------------------------- the contenders
def run_project(args: argparse.Namespace, mnist: MnistData) -> tuple[dict, np.ndarray]:
    """Train and evaluate this project's preset; its entry and per-digit majority labels (N,)."""
    preset = args.preset or preset_for_budget(args.budget_min)
    run_dir = Path(args.run_dir)
    if run_dir.exists():
        raise SystemExit(f"--run-dir {run_dir} exists: give a new folder (the project's run is timed from scratch)")
    command = [sys.executable, "-m", "cli", "train", "--data", args.data, "--preset", preset,
               "--seed", str(args.seed), "--out", str(run_dir)]
    if args.limit_train is not None:
        command += ["--limit", str(args.limit_train)]
    command += args.project_options
    print("$ ensemble-cnn " + " ".join(command[3:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"project: ensemble-cnn train failed (exit {done.returncode})")
    report = json.loads((run_dir / REPORT_JSON).read_text())
    folder = RunFolder(run_dir)
    records = folder.records(report["n_members"])
    probabilities = member_probabilities(folder, records, mnist, reload=False)
    labels = majority_vote(probabilities)
    accuracy = float(np.mean(labels == mnist.y_test))
    reported = report["ensemble"]["majority"]["test_accuracy"]
    if abs(accuracy - reported) > 1e-9:
        raise SystemExit(f"project: the saved probabilities vote {accuracy:.4%}, the report says {reported:.4%}")
    config = report["config"]
    entry = {"name": "project", "members": len(records), "epochs": config["epochs"], "wall_seconds": round(wall, 1),
             "majority_accuracy": accuracy, "own_vote": "majority", "own_vote_accuracy": accuracy,
             "members_accuracy": [float(np.mean(p.argmax(1) == mnist.y_test)) for p in probabilities],
             "settings": {"preset": preset, "arch": config["arch"], "command": "ensemble-cnn " + " ".join(command[3:]),
                          "run_dir": str(run_dir)}}
    return entry, labels


def keras_convnet(keras):
    """Keras' mnist_convnet model, compiled as published."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def run_keras(args: argparse.Namespace, mnist: MnistData) -> tuple[dict, np.ndarray]:
    """Keras' mnist_convnet trained K times within the budget; its entry and per-digit majority labels (N,)."""
    from ensemble_cnn.runtime import import_keras

    start = time.perf_counter()
    keras = import_keras()
    x_train = np.expand_dims(mnist.x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(mnist.x_test.astype("float32") / 255, -1)
    y_train = keras.utils.to_categorical(mnist.y_train, 10)
    budget_s = 60 * args.budget_min
    member_seconds: list[float] = []
    probabilities = []
    while next_member_fits(time.perf_counter() - start, member_seconds, budget_s):
        member_start = time.perf_counter()
        keras.backend.clear_session()
        keras.utils.set_random_seed(args.seed + len(member_seconds))
        model = keras_convnet(keras)
        model.fit(x_train, y_train, batch_size=KERAS_BATCH_SIZE, epochs=KERAS_EPOCHS,
                  validation_split=KERAS_VALIDATION_SPLIT, verbose=0)
        probabilities.append(model.predict(x_test, batch_size=1000, verbose=0))
        member_seconds.append(time.perf_counter() - member_start)
        print(f"keras member {len(member_seconds)}: test {np.mean(probabilities[-1].argmax(1) == mnist.y_test):.2%}, "
              f"{member_seconds[-1] / 60:.1f} min", flush=True)
    wall = time.perf_counter() - start
    stacked = np.stack(probabilities)
    labels = majority_vote(stacked)
    accuracy = float(np.mean(labels == mnist.y_test))
    entry = {"name": "keras", "members": len(probabilities), "epochs": KERAS_EPOCHS, "wall_seconds": round(wall, 1),
             "majority_accuracy": accuracy, "own_vote": "majority", "own_vote_accuracy": accuracy,
             "members_accuracy": [float(np.mean(p.argmax(1) == mnist.y_test)) for p in stacked],
             "member_seconds": [round(s, 1) for s in member_seconds],
             "settings": {"example": "keras-io examples/vision/mnist_convnet.py", "batch_size": KERAS_BATCH_SIZE,
                          "validation_split": KERAS_VALIDATION_SPLIT, "optimizer": "adam",
                          "seeds": [args.seed + k for k in range(len(probabilities))],
                          "keras": keras.__version__}}
    return entry, labels


def run_torch(args: argparse.Namespace, mnist: MnistData) -> tuple[dict, np.ndarray]:
    """TorchEnsemble's VotingClassifier within the budget (a subprocess of .venv-peers); entry and labels (N,)."""
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"{PEERS_PYTHON}: no such interpreter (set up .venv-peers as this script's docstring says, "
                         "or --skip torch)")
    with tempfile.TemporaryDirectory(prefix="peers-torch-") as scratch:
        result = Path(scratch) / "result.npz"
        start = time.perf_counter()
        command = [str(PEERS_PYTHON), str(TORCH_WORKER), "--data", args.data, "--result", str(result),
                   "--deadline", repr(time.time() + 60 * args.budget_min), "--seed", str(args.seed)]
        if args.limit_train is not None:
            command += ["--limit-train", str(args.limit_train)]
        done = subprocess.run(command, cwd=scratch, stdout=subprocess.PIPE, text=True)  # cwd: any stray files go here
        wall = time.perf_counter() - start
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            raise SystemExit(f"torch: {TORCH_WORKER.name} failed (exit {done.returncode})")
        summary = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("PEERS_TORCH "))
        with np.load(result) as arrays:
            probabilities = arrays["member_probabilities"]
            soft, hard = arrays["soft_labels"], arrays["hard_labels"]
    labels = majority_vote(probabilities)
    entry = {"name": "torch", "members": summary.pop("n_estimators"), "epochs": summary.pop("epochs"),
             "wall_seconds": round(wall, 1), "majority_accuracy": float(np.mean(labels == mnist.y_test)),
             "own_vote": "soft", "own_vote_accuracy": float(np.mean(soft == mnist.y_test)),
             "torchensemble_hard_accuracy": float(np.mean(hard == mnist.y_test)),
             "members_accuracy": summary.pop("members_accuracy"), "settings": summary}
    return entry, labels


RUNNERS = {"project": run_project, "keras": run_keras, "torch": run_torch}


# --------------------------------------------------------------------------- the comparison
def compare(entries: list[dict], labels: dict[str, np.ndarray], y_test: np.ndarray) -> None:
    """Add each peer's difference from the project, its exact paired McNemar test and wall-time ratio (in place)."""
    if "project" not in labels:
        return
    project = next(e for e in entries if e["name"] == "project")
    project_right = labels["project"] == y_test
    for entry in entries:
        if entry["name"] == "project":
            continue
        test = mcnemar_exact(labels[entry["name"]] == y_test, project_right)
        entry["vs_project"] = {"accuracy_difference": entry["majority_accuracy"] - project["majority_accuracy"],
                               "only_peer": test["only_a"], "only_project": test["only_b"],
                               "p_value": test["p_value"],
                               "wall_ratio": entry["wall_seconds"] / project["wall_seconds"]}


def table(entries: list[dict]) -> str:
    """The result table in Markdown."""
    lines = ["| contender | members | epochs | wall (min) | majority (%) | own vote (%) | vs project (points) "
             "| McNemar p | wall ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        versus = e.get("vs_project")
        if versus:
            difference = (f"{100 * versus['accuracy_difference']:+.2f} "
                          f"(+{versus['only_peer']}/-{versus['only_project']})")
            p_value = f"{versus['p_value']:.3g}" if versus["p_value"] > 0 else "< 1e-300"  # binomtest underflows
            ratio = f"{versus['wall_ratio']:.2f}"
        else:
            difference = p_value = ratio = "-"
        lines.append(f"| {e['name']} | {e['members']} | {e['epochs']} | {e['wall_seconds'] / 60:.1f} "
                     f"| {100 * e['majority_accuracy']:.2f} | {100 * e['own_vote_accuracy']:.2f} ({e['own_vote']}) "
                     f"| {difference} | {p_value} | {ratio} |")
    return "\n".join(lines)


def write_new_json(path: Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` atomically, refusing an existing file (a hard link never replaces one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as handle:
        handle.write(json.dumps(obj, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(handle.name, path)
    except FileExistsError:
        raise SystemExit(f"--out {path} exists: results are never overwritten (give a new path)") from None
    finally:
        os.unlink(handle.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, required=True, help="wall-clock budget of each contender")
    parser.add_argument("--data", default=str(MNIST_FILE), help="MNIST as a Keras mnist.npz")
    parser.add_argument("--out", required=True, help="results JSON (new file)")
    parser.add_argument("--run-dir", default=None, help="the project's run folder (new) [default: beside --out]")
    parser.add_argument("--preset", choices=["quick", "default", "best"], default=None,
                        help="the project's preset [default: the one made for --budget-min]")
    parser.add_argument("--limit-train", type=int, default=None, help="train on the first N training digits (smoke)")
    parser.add_argument("--skip", action="append", choices=CONTENDERS, default=[], help="leave a contender out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("project_options", nargs="*", help="further `ensemble-cnn train` options (after --)")
    args = parser.parse_args()
    if args.budget_min <= 0:
        parser.error("--budget-min must be > 0")
    if args.limit_train is not None and args.limit_train < 1:
        parser.error("--limit-train must be >= 1")
    out = Path(args.out)
    if out.exists():
        parser.error(f"--out {out} exists: results are never overwritten (give a new path)")
    args.run_dir = args.run_dir or str(out.with_suffix("")) + "-project-run"
    mnist = load_mnist(args.data).limit(args.limit_train)
    header = {"budget_minutes": args.budget_min, "data": str(Path(args.data).resolve()),
              "train_digits": len(mnist.x_train), "test_digits": len(mnist.x_test), "seed": args.seed,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **machine()}
    print(json.dumps(header), flush=True)
    entries, labels = [], {}
    for name in CONTENDERS:
        if name in args.skip:
            continue
        print(f"\n== {name} ({args.budget_min:g} min budget)", flush=True)
        entry, labels[name] = RUNNERS[name](args, mnist)
        entry["over_budget_seconds"] = round(max(0.0, entry["wall_seconds"] - 60 * args.budget_min), 1)
        entries.append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k not in ("settings", "members_accuracy")}), flush=True)
    compare(entries, labels, mnist.y_test)
    print("\n" + table(entries))
    for entry in entries:
        if entry["over_budget_seconds"] > 0:
            print(f"{entry['name']} ran {entry['over_budget_seconds']:.0f} s past the budget (its first member, or a "
                  "slower machine than its first measurement said)")
    write_new_json(out, {**header, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "load_average_end": [round(x, 2) for x in os.getloadavg()],
                         "vote_rule": "majority of the members' argmaxes; ties: larger probability sum, "
                                      "then lower label",
                         "contenders": entries, "table": table(entries)})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
