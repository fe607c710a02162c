"""Issue 31's figures over several evaluated runs: mean ± sd of what "unsure" and "not a digit" do on test digits.

    python benchmarks/trust_figures.py artifacts/issue31/quick-s0 artifacts/issue31/quick-s1 artifacts/issue31/quick-s2

Each run must have been trained with calibration digits (``--holdout`` auto or shared) and evaluated
with ``ensemble-cnn evaluate --run RUN --ood FASHION`` (Fashion-MNIST's test images), so that its
``report.json`` holds the calibrated part (thresholds fixed on the calibration digits, figures on
the test digits) and the "not a digit" section with the default threshold of ``predict``. Prints,
per run and as mean ± sd over the runs (sample sd, n - 1), beside the issue's targets:

* the majority vote's test accuracy;
* selective prediction with the ``max_probability`` threshold fixed on the calibration digits:
  the test error at 99% target coverage (and the errors it rests on), the test coverage where the
  calibration digits' error is at most 0.1%;
* conformal sets at 99.9%: test coverage, mean size, empty sets;
* "not a digit" on the Fashion-MNIST set: per score AUROC and FPR at 95% TPR (digits positive), and
  the share flagged at ``predict``'s default threshold (99.5% of calibration digits pass).

Nothing here trains or predicts: it reads the reports.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ensemble_cnn.data.reader import RUN_FILES, read_json  # noqa: E402

SCORES_SHOWN = ("max_probability", "entropy", "mutual_information", "energy", "mahalanobis", "relative_mahalanobis",
                "ink_area", "energy+ink_area")


def figures(run: Path) -> dict[str, float | None]:
    """One run's figures (fractions), read from its report.json; ``None`` where the report has none."""
    report = read_json(run / "report.json", what="report", voice=RUN_FILES)
    out: dict[str, float | None] = {"accuracy": report["ensemble"]["majority"]["test_accuracy"]}
    calibrated = report["uncertainty"].get("calibrated", {})
    if "note" in calibrated:
        raise SystemExit(f"{run}: no calibrated figures ({calibrated['note']})")
    mp = calibrated["scores"]["max_probability"]
    at99 = next(p for p in mp["at_coverage"] if p["target_coverage"] == 0.99)
    out.update({"error_at_99": at99["error"], "coverage_at_99": at99["coverage"], "errors_at_99": at99["errors"],
                "coverage_at_0.1%": mp["at_error"]["coverage"] if mp["at_error"]["threshold"] is not None else 0.0,
                "error_at_0.1%": mp["at_error"]["error"]})
    level = next(entry for entry in calibrated["conformal"]["levels"] if entry["level"] == 0.999)
    out.update({"set_coverage": level["coverage"], "set_size": level["mean_size"], "set_empty": level["empty"]})
    sets = (report.get("not_a_digit") or {}).get("sets") or []
    if not sets:
        raise SystemExit(f"{run}: no 'not a digit' section (evaluate it with --ood FASHION)")
    ood = sets[0]
    for name in SCORES_SHOWN:
        metrics = ood["scores"].get(name)
        out[f"{name} auroc"] = metrics["auroc"] if metrics else None
        out[f"{name} fpr95"] = metrics["fpr_at_tpr"] if metrics else None
    default = ood.get("default_threshold") or {}
    out["default score"] = default.get("score")
    out["flagged at default"] = default.get("flagged")
    out["digits flagged at default"] = default.get("digits_flagged")
    return out


def mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{100 * values[0]:.3f}%" if values else "-"
    return f"{100 * statistics.mean(values):.3f} ± {100 * statistics.stdev(values):.3f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows = {run: figures(run) for run in args.runs}
    keys = list(next(iter(rows.values())))
    print("| figure | " + " | ".join(run.name for run in rows) + " | mean ± sd |")
    print("|---|" + "---|" * (len(rows) + 1))
    for key in keys:
        values = [row[key] for row in rows.values()]
        if key == "default score" or key == "errors_at_99":
            print(f"| {key} | " + " | ".join(str(v) for v in values) + " | |")
            continue
        numbers = [v for v in values if v is not None]
        if key == "set_size":  # a count of labels, not a share
            cells = ["-" if v is None else f"{v:.4f}" for v in values]
            summary = (f"{statistics.mean(numbers):.4f} ± {statistics.stdev(numbers):.4f}" if len(numbers) > 1
                       else cells[0])
        else:
            cells = ["-" if v is None else f"{100 * v:.3f}%" for v in values]
            summary = mean_sd(numbers) if len(numbers) == len(values) else "-"
        print(f"| {key} | " + " | ".join(cells) + f" | {summary} |")
    print(json.dumps({str(run): row for run, row in rows.items()}))


if __name__ == "__main__":
    main()
