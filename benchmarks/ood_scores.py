""""Not a digit" past the softmax: Mahalanobis, energy and ink area beside the softmax scores, on Fashion-MNIST.

    python benchmarks/ood_scores.py --run artifacts/runs/nielsen-k5-s0 \\
        --fashion /usr/share/datasets/fashion-mnist --mnist /work/shared/data/mnist.npz

``--run``: a run folder trained with ``--holdout shared`` (its calibration digits fix the
thresholds); it is only read. Members without a Gaussian (trained before them) get one
fitted in memory, as training does (:func:`ensemble_cnn.training.member.fit_member_gaussian`:
10,000 of the member's own undistorted training originals, drawn from its seed).
``--fit-into NEW``: also keep them: ``--run`` is copied to the new folder ``NEW`` (refused if it
exists), and the copy gets each such member's Gaussian, its sha256 in the member's record, and
the member's scores on the calibration digits beside it.

Choice (decides the score and whether to standardize each member's distance by its median): the run's calibration
digits (the threshold: 99.5% of them pass) and the study's validation digits (the run's test
split) against Fashion-MNIST's 60,000 training images. Reported (decides nothing): MNIST's
10,000 real test digits against Fashion-MNIST's 10,000 test images, at the threshold fixed on
the calibration digits.

Per score: AUROC, FPR at 95% TPR (digits positive: the share of the images passing as digits
when 95% of the digits pass), the share of the images flagged at the calibration threshold,
and for the digit sets the share of digits flagged there (false alarms). Besides the single
scores, ``ink_area`` (the digits' own share of pixels with ink) and the combined rules
(``a+b``: flagged when any score is above its own threshold, the thresholds at one quantile of
the calibration values, :func:`ensemble_cnn.inference.trust.fit_components`; its AUROC is that of
:func:`~ensemble_cnn.inference.trust.combined_score`), exactly as ``predict`` applies them.
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
    FEATURE_SCORES, energy_score, fit_class_gaussian, gaussian_arrays, ink_area, mahalanobis_score, member_features,
    relative_mahalanobis_score,
)
from ensemble_cnn.inference.trust import combined_score, fit_components  # noqa: E402
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
    parser.add_argument("--fit-into", type=Path, metavar="NEW",
                        help="copy --run to this new folder and write the Gaussians members lack into the copy")
    args = parser.parse_args()
    started = time.perf_counter()

    if args.fit_into is not None:
        import shutil

        if args.fit_into.exists() or args.fit_into.is_symlink():
            sys.exit(f"--fit-into: {args.fit_into} already exists; name a new folder (the run is never written)")
        RunFolder(args.run).require_config()
        shutil.copytree(args.run, args.fit_into, symlinks=True)
        print(f"copied {args.run} to {args.fit_into}; the Gaussians go into the copy", flush=True)
        args.run = args.fit_into
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
        calibration_images = plan.x_val  # the same digits for every member (--holdout shared)
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
        if args.fit_into is not None and folder.status(index).record.get("gaussian") is None:
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
        """The committee's score on a set: a softmax score, the mean over members of a feature score, the
        images' ink area, or a combined rule fitted on the calibration digits."""
        if "+" in score:
            parts = score.split("+")
            rules = fit_components({part: of(part, "calibration") for part in parts}, PASS)
            return combined_score({part: of(part, set_name) for part in parts}, rules)
        if score == "ink_area":
            return ink_area(images[set_name])
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
              "relative_mahalanobis", "ink_area", "energy+ink_area", "relative_mahalanobis+ink_area",
              "energy+relative_mahalanobis+ink_area"]
    images = {**sets, "calibration": calibration_images}
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
        threshold = 0.0 if "+" in score else threshold_for_coverage(cal, PASS)  # combined: 0, as predict
        on_cal, on_val = ood_metrics(cal, ood), ood_metrics(val, ood)
        print(f"| {score} | {100 * on_cal['auroc']:.2f} | {100 * on_cal['fpr_at_tpr']:.2f} | "
              f"{100 * on_val['auroc']:.2f} | {100 * on_val['fpr_at_tpr']:.2f} | "
              f"{100 * flagged_share(ood, threshold):.2f} | {100 * flagged_share(val, threshold):.2f} |")
    print("\nReported: MNIST test (10,000) against Fashion-MNIST test (10,000), threshold fixed on calibration\n")
    print("| score | AUROC | FPR95 | FMNIST flagged | MNIST test flagged |")
    print("| :--- | ---: | ---: | ---: | ---: |")
    for score in scores:
        ood, digits = of(score, "fmnist_test"), of(score, "mnist_test")
        threshold = 0.0 if "+" in score else threshold_for_coverage(of(score, "calibration"), PASS)
        metrics = ood_metrics(digits, ood)
        print(f"| {score} | {100 * metrics['auroc']:.2f} | {100 * metrics['fpr_at_tpr']:.2f} | "
              f"{100 * flagged_share(ood, threshold):.2f} | {100 * flagged_share(digits, threshold):.2f} |")
    print(f"\n{time.perf_counter() - started:.0f} s in all ({', '.join(FEATURE_SCORES)} beside the softmax)")


if __name__ == "__main__":
    main()
