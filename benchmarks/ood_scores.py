""""Not a digit" past the softmax: Mahalanobis and energy beside the softmax scores, on Fashion-MNIST.

    python benchmarks/ood_scores.py --run /tmp/wtM-run --fit \\
        --fashion /usr/share/datasets/fashion-mnist --mnist /work/shared/data/mnist.npz

``--run``: a run folder trained with ``--holdout shared`` (its calibration digits fix the
thresholds). ``--fit``: members without a Gaussian get one fitted, as training now does
(:func:`ensemble_cnn.training.member.fit_member_gaussian`: 10,000 of the member's own
undistorted training originals, drawn from its seed), written into the run folder with its
sha256 in the member's record, and the member's scores on the calibration digits beside it.
It WRITES into ``--run``: point it at a copy of a run that is an input elsewhere.

Choice (decides the score and whether to standardize each member's distance by its median): the run's calibration
digits (the threshold: 99.5% of them pass) and the study's validation digits (the run's test
split) against Fashion-MNIST's 60,000 training images. Reported (decides nothing): MNIST's
10,000 real test digits against Fashion-MNIST's 10,000 test images, at the threshold fixed on
the calibration digits.

Per score: AUROC, FPR at 95% TPR (digits positive: the share of the images passing as digits
when 95% of the digits pass), the share of the images flagged at the calibration threshold,
and for the digit sets the share of digits flagged there (false alarms).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.data.mnist import load_mnist  # noqa: E402
from ensemble_cnn.evaluation.ood import flagged_share, ood_metrics  # noqa: E402
from ensemble_cnn.evaluation.selective import threshold_for_coverage  # noqa: E402
from ensemble_cnn.hardware import cpu_class  # noqa: E402
from ensemble_cnn.inference.ensemble import Ensemble  # noqa: E402
from ensemble_cnn.inference.features import (  # noqa: E402
    FEATURE_SCORES, energy_score, fit_class_gaussian, gaussian_arrays, mahalanobis_score, member_features,
    relative_mahalanobis_score,
)
from ensemble_cnn.inference.paths import load_image_set  # noqa: E402
from ensemble_cnn.inference.uncertainty import max_probability, mutual_information  # noqa: E402
from ensemble_cnn.storage import atomic  # noqa: E402
from ensemble_cnn.storage.calibration import read_calibration  # noqa: E402
from ensemble_cnn.storage.hashing import sha256_file  # noqa: E402
from ensemble_cnn.data.reader import RUN_FILES  # noqa: E402
from ensemble_cnn.storage.run_folder import RunFolder  # noqa: E402
from ensemble_cnn.training.member import (  # noqa: E402
    PoolCache, gaussian_fit_rows, load_checked_pool, plan_run, run_config, run_of,
)
from ensemble_cnn.training.recipes import get_recipe  # noqa: E402

PASS = 0.995  # the threshold lets this share of the calibration digits pass


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def retrofit(folder: RunFolder, index: int, gaussian, calibration_scores: np.ndarray | None) -> None:
    """Write a member's Gaussian (and calibration scores) into the folder; its record rewritten last, atomically."""
    from ensemble_cnn.data.reader import read_json

    files = folder.files(index)
    record = read_json(files.record, what="member record", voice=RUN_FILES)
    arrays = gaussian_arrays(gaussian)
    with atomic.atomic_path(files.gaussian, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    record["gaussian"], record["gaussian_sha256"] = files.gaussian.name, sha256_file(
        files.gaussian, what="member Gaussian", voice=RUN_FILES)
    if calibration_scores is not None:
        with atomic.atomic_path(files.calibration_scores, suffix=".npy") as tmp:
            np.save(tmp, calibration_scores.astype(np.float32))
        record["calibration_scores"], record["calibration_scores_sha256"] = files.calibration_scores.name, \
            sha256_file(files.calibration_scores, what="member calibration scores", voice=RUN_FILES)
    atomic.write_json(files.record, record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--fashion", required=True, type=Path, help="Fashion-MNIST's IDX folder")
    parser.add_argument("--mnist", required=True, type=Path, help="MNIST (its x_test: the reported digits)")
    parser.add_argument("--fit", action="store_true", help="fit (and write) the Gaussians members lack")
    args = parser.parse_args()
    started = time.perf_counter()

    folder = RunFolder(args.run)
    config = folder.require_config()
    ensemble = Ensemble.load(args.run)
    records = [folder.status(int(name.rsplit("_", 1)[1])).record for name in ensemble.names_]
    calibration = read_calibration(folder, records, config=config)
    if calibration is None:
        sys.exit(f"{args.run}: no calibration digits (train with --holdout shared)")
    pools = PoolCache(load_checked_pool(config))
    recipe = get_recipe(config.recipe)
    study = load_mnist(config.data)

    sets = {
        "calibration": None,  # filled per member from its plan (x_val, under its normalization)
        "validation": study.x_test,
        "fmnist_train": load_image_set(args.fashion / "train-images-idx3-ubyte.gz")[0],
        "mnist_test": load_image_set(args.mnist)[0],
        "fmnist_test": load_image_set(args.fashion)[0],
    }
    print(f"sets: " + ", ".join(f"{k} {len(v):,}" for k, v in sets.items() if v is not None)
          + f", calibration {len(calibration.labels):,}", flush=True)

    features, logits, gaussians, fit_info, fit_median = {}, {}, [], [], []
    for position, (name, member, normalize) in enumerate(zip(ensemble.names_, ensemble.members_,
                                                                ensemble.normalizations_)):
        index = int(name.rsplit("_", 1)[1])
        run = run_of(index, recipe)
        own = run_config(config, run)
        pool = pools.get(own.normalize)
        plan = plan_run(own, run, pool)
        rows = gaussian_fit_rows(plan, pool)
        fit_info.append(f"{name}: {len(rows):,} of its {int(np.sum(pool.variant[np.unique(plan.train_rows)] == 0)):,} "
                        f"training originals (seed {plan.seed})")
        ticked = time.perf_counter()
        fit_features, _ = member_features(member, pool.data.x_train[rows])
        seen = {"calibration": plan.x_val}
        for set_name, digits in sets.items():
            if digits is not None:
                from augment import normalize as normalized

                seen[set_name] = digits if normalize == "none" else normalized(digits, normalize)
        for set_name, digits in seen.items():
            features[set_name, position], logits[set_name, position] = member_features(member, digits)
        labels = pool.data.y_train[rows].astype(np.int64)
        gaussians.append(fit_class_gaussian(fit_features, labels))
        fit_median.append(np.median(mahalanobis_score(fit_features, gaussians[-1])))
        print(f"{name}: features of {len(rows) + sum(len(d) for d in seen.values()):,} images in "
              f"{time.perf_counter() - ticked:.0f} s", flush=True)
        if args.fit and folder.status(index).record.get("gaussian") is None:
            default, cal = gaussians[-1], features["calibration", position]
            columns = {"mahalanobis": mahalanobis_score(cal, default),
                       "relative_mahalanobis": relative_mahalanobis_score(cal, default),
                       "energy": energy_score(logits["calibration", position])}
            scores = np.stack([columns[name] for name in FEATURE_SCORES], axis=1)
            retrofit(folder, index, default, scores if config.holdout == "shared" else None)
            print(f"{name}: Gaussian written ({folder.files(index).gaussian.stat().st_size / 1e6:.1f} MB)",
                  flush=True)
    n_members = len(ensemble.members_)
    if not np.array_equal(np.stack([softmax(logits["calibration", k]) for k in range(n_members)]).argmax(-1),
                          calibration.probabilities.argmax(-1)):
        print("warning: the members' logits do not give their saved calibration probabilities' labels")

    def committee(score: str, set_name: str) -> np.ndarray:
        """The committee's score on a set: a softmax score, or the mean over members of a feature score."""
        if score in ("max_probability", "mutual_information"):
            proba = np.stack([softmax(logits[set_name, k]) for k in range(n_members)])
            return (max_probability if score == "max_probability" else mutual_information)(proba)
        if score == "energy":
            return np.mean([energy_score(logits[set_name, k]) for k in range(n_members)], axis=0)
        name, _, how = score.partition(":")
        distance = mahalanobis_score if name == "mahalanobis" else relative_mahalanobis_score
        values = [distance(features[set_name, k], gaussians[k]) for k in range(n_members)]
        if how == "median":  # each member's distance over its median on its own fit digits
            values = [v / fit_median[k] for k, v in enumerate(values)]
        return np.mean(values, axis=0)

    scores = ["max_probability", "mutual_information", "energy", "mahalanobis", "mahalanobis:median",
              "relative_mahalanobis"]
    cache: dict[tuple[str, str], np.ndarray] = {}

    def of(score: str, set_name: str) -> np.ndarray:
        if (score, set_name) not in cache:
            cache[score, set_name] = committee(score, set_name)
        return cache[score, set_name]

    print(f"\nCPU: {cpu_class()}; run {args.run} ({n_members} members, {config.arch}); Gaussians: "
          + "; ".join(fit_info))
    print(f"threshold: {100 * PASS:g}% of the {len(calibration.labels):,} calibration digits pass\n")
    print("Choice: digits against Fashion-MNIST train (60,000)\n")
    print("| score | AUROC cal | FPR95 cal | AUROC val | FPR95 val | FMNIST flagged | val digits flagged |")
    print("| :--- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for score in scores:
        ood = of(score, "fmnist_train")
        cal, val = of(score, "calibration"), of(score, "validation")
        threshold = threshold_for_coverage(cal, PASS)
        on_cal, on_val = ood_metrics(cal, ood), ood_metrics(val, ood)
        print(f"| {score} | {100 * on_cal['auroc']:.2f} | {100 * on_cal['fpr_at_tpr']:.2f} | "
              f"{100 * on_val['auroc']:.2f} | {100 * on_val['fpr_at_tpr']:.2f} | "
              f"{100 * flagged_share(ood, threshold):.2f} | {100 * flagged_share(val, threshold):.2f} |")
    print("\nReported: MNIST test (10,000) against Fashion-MNIST test (10,000), threshold fixed on calibration\n")
    print("| score | AUROC | FPR95 | FMNIST flagged | MNIST test flagged |")
    print("| :--- | ---: | ---: | ---: | ---: |")
    for score in scores:
        ood, digits = of(score, "fmnist_test"), of(score, "mnist_test")
        threshold = threshold_for_coverage(of(score, "calibration"), PASS)
        metrics = ood_metrics(digits, ood)
        print(f"| {score} | {100 * metrics['auroc']:.2f} | {100 * metrics['fpr_at_tpr']:.2f} | "
              f"{100 * flagged_share(ood, threshold):.2f} | {100 * flagged_share(digits, threshold):.2f} |")
    print(f"\n{time.perf_counter() - started:.0f} s in all ({', '.join(FEATURE_SCORES)} beside the softmax)")


if __name__ == "__main__":
    main()
