"""Round 4 (issue 23 e): a learned combiner against the majority vote, on study validation, honestly.

    python benchmarks/combiner_study.py RUN [RUN ...] [--folds 2] [--seed 0]

The runs are recipe-study run folders (trained on ``artifacts/study/study.npz``: the first
50,000 MNIST training digits), whose saved probabilities are of the study-validation
digits (the last 10,000). A combiner fitted on those digits and scored on them would be
scored on what it learned from, so it is *cross-fitted*: the 10,000 digits are split into
``--folds`` seeded folds; each fold's digits are predicted by a combiner fitted on the other
folds, and the predictions of all folds together are scored against the majority and soft
votes of the same members on the same digits (exact McNemar). No test digit is used.

Combiners (scikit-learn, fixed settings, chosen before the run):

* ``weighted soft``: the soft vote with one weight per member, the weights a logistic
  regression's coefficients on each member's log-probability of each class (a
  "stacking" model with tied classes: K parameters), fitted by maximum likelihood;
* ``stacking``: a multinomial logistic regression on the K x 10 log-probabilities
  (L2, C = 1).

The decision rule, fixed before the run: a combiner replaces the majority vote only if its
cross-fitted study-validation accuracy beats the majority vote's with p < 0.05.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.evaluation.stats import mcnemar_exact, wilson_interval  # noqa: E402
from ensemble_cnn.inference.vote import get_vote  # noqa: E402
from ensemble_cnn.storage.run_folder import RunFolder  # noqa: E402

STUDY = ROOT / "artifacts" / "study" / "study.npz"
EPS = 1e-7


def saved_probabilities(runs: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Every complete member's saved study-validation probabilities, (K, N, 10), and their names."""
    stacks, names = [], []
    for run in runs:
        folder = RunFolder(run)
        config = folder.require_config()
        for record in folder.records(config.members):
            stacks.append(np.load(folder.resolve(record["probabilities"])))
            names.append(f"{run.name}/{record['index']:02d}")
    return np.stack(stacks).astype(np.float64), names


def weighted_soft(train: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Member weights maximizing the likelihood of softmax(sum_k w_k log p_k) on ``train`` (K, n, 10).

    A multinomial logistic model whose class score is sum_k w_k log p_kc: K parameters, fitted
    with scipy's L-BFGS from equal weights.
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    logs = np.log(np.clip(train, EPS, 1.0))  # (K, n, 10)

    def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
        scores = np.einsum("k,knc->nc", weights, logs)
        log_q = log_softmax(scores, axis=1)
        q = np.exp(log_q)
        nll = -log_q[np.arange(len(y)), y].mean()
        onehot = np.eye(10)[y]
        grad = np.einsum("knc,nc->k", logs, q - onehot) / len(y)
        return float(nll), grad

    k = train.shape[0]
    return minimize(loss, np.full(k, 1.0 / k), jac=True, method="L-BFGS-B").x


def cross_fitted(probabilities: np.ndarray, y: np.ndarray, *, folds: int, seed: int) -> dict[str, np.ndarray]:
    """Labels (N,) of each combiner, every digit predicted by a combiner fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    out = {"weighted soft": np.empty(n, int), "stacking": np.empty(n, int)}
    features = np.log(np.clip(probabilities, EPS, 1.0)).transpose(1, 0, 2).reshape(n, -1)  # (N, K*10)
    for fold in range(folds):
        test, train = fold_of == fold, fold_of != fold
        weights = weighted_soft(probabilities[:, train], y[train])
        scores = np.einsum("k,knc->nc", weights, np.log(np.clip(probabilities[:, test], EPS, 1.0)))
        out["weighted soft"][test] = scores.argmax(axis=1)
        model = LogisticRegression(C=1.0, max_iter=2000).fit(features[train], y[train])
        out["stacking"][test] = model.predict(features[test])
        print(f"fold {fold}: weights {np.round(weights, 3).tolist()}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="recipe-study run folders trained on study.npz")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with np.load(STUDY) as npz:
        y = npz["y_test"].astype(int)
    probabilities, names = saved_probabilities(args.runs)
    print(f"{len(names)} members: {', '.join(names)}; {len(y)} study-validation digits, {args.folds} folds")
    majority = get_vote("majority").labels(probabilities)
    soft = get_vote("soft").labels(probabilities)
    rows = {"majority": majority, "soft": soft, **cross_fitted(probabilities, y, folds=args.folds, seed=args.seed)}
    print("| combiner | val accuracy (95% CI) | vs majority (exact McNemar) |")
    print("|---|---|---|")
    for name, labels in rows.items():
        right = labels == y
        low, high = wilson_interval(int(right.sum()), len(y))
        versus = ""
        if name != "majority":
            test = mcnemar_exact(right, majority == y)
            versus = f"{test['only_a']} vs {test['only_b']} digits, p = {test['p_value']:.2g}"
        print(f"| {name} | {100 * right.mean():.2f}% ({100 * low:.2f}-{100 * high:.2f}) | {versus} |")


if __name__ == "__main__":
    main()
