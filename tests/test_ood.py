""""Not a digit" metrics (ensemble_cnn/evaluation/ood.py): known answers, both FPR conventions by hand, and the
ID-positive FPR against the selective module's threshold rule (two computations of one definition)."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble_cnn.evaluation.ood import flagged_share, ood_metrics
from ensemble_cnn.evaluation.selective import threshold_for_coverage


def test_perfectly_separated_scores() -> None:
    metrics = ood_metrics([0.0, 0.1, 0.2, 0.2], [0.5, 0.6, 0.9])
    assert metrics["auroc"] == 1.0
    assert metrics["fpr_at_tpr"] == 0.0 and metrics["fpr_at_tpr_ood_positive"] == 0.0
    assert metrics["aupr_in"] == 1.0 and metrics["aupr_out"] == 1.0
    assert (metrics["n_in"], metrics["n_ood"], metrics["tpr"]) == (4, 3, 0.95)
    assert metrics["threshold"] == 0.2  # every digit must pass to reach 95% of 4


def test_reversed_scores_are_the_worst() -> None:
    metrics = ood_metrics([0.5, 0.6, 0.9], [0.0, 0.1, 0.2])
    assert metrics["auroc"] == 0.0 and metrics["fpr_at_tpr"] == 1.0 and metrics["fpr_at_tpr_ood_positive"] == 1.0


def test_identical_distributions_give_chance() -> None:
    scores = np.random.default_rng(0).random(1000)
    assert ood_metrics(scores, scores)["auroc"] == pytest.approx(0.5, abs=1e-12)  # every pair a tie or mirrored
    assert ood_metrics(np.zeros(10), np.zeros(30))["auroc"] == 0.5
    rng = np.random.default_rng(1)
    metrics = ood_metrics(rng.normal(size=20_000), rng.normal(size=20_000))
    assert metrics["auroc"] == pytest.approx(0.5, abs=0.01)
    assert metrics["fpr_at_tpr"] == pytest.approx(0.95, abs=0.01)
    assert metrics["aupr_in"] == pytest.approx(0.5, abs=0.01) and metrics["aupr_out"] == pytest.approx(0.5, abs=0.01)


def test_hand_computed_metrics() -> None:
    """20 digits scoring 0..19, two OOD images scoring 17.5 and 30.

    AUROC: 17.5 is above 18 of the 20 digits, 30 above all: (18/20 + 20/20) / 2 = 0.95.
    Digits positive: 95% of 20 digits pass at threshold 18 (19 of them); 17.5 passes too: FPR 1/2.
    OOD positive: flagging 95% of 2 images flags both, at 17.5; digits 18 and 19 are flagged too: FPR 2/20.
    """
    metrics = ood_metrics(np.arange(20.0), [17.5, 30.0])
    assert metrics["auroc"] == pytest.approx(0.95)
    assert metrics["threshold"] == 18.0 and metrics["fpr_at_tpr"] == 0.5
    assert metrics["fpr_at_tpr_ood_positive"] == pytest.approx(0.1)
    # OOD positive, ranked by score: 30 (precision 1 at recall 1/2), then 19, 18, 17.5 (precision 2/4 at recall 1)
    assert metrics["aupr_out"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert ood_metrics(np.arange(20.0), [18.5, 30.0])["fpr_at_tpr"] == 0.0
    assert ood_metrics(np.arange(20.0), [17.5, 30.0], tpr=0.5)["fpr_at_tpr"] == 0.0  # threshold 9


@pytest.mark.parametrize("tpr", [0.5, 0.9, 0.95, 0.99, 1.0])
def test_the_in_positive_fpr_is_the_share_of_ood_accepted_at_the_coverage_threshold(tpr: float) -> None:
    """With ties (integer scores): the ROC computation equals the selective module's threshold rule."""
    rng = np.random.default_rng(int(tpr * 100))
    inside, outside = rng.integers(0, 30, size=777), rng.integers(10, 50, size=555)
    metrics = ood_metrics(inside, outside, tpr=tpr)
    threshold = threshold_for_coverage(inside, tpr)
    assert metrics["threshold"] == threshold
    assert metrics["fpr_at_tpr"] == pytest.approx(np.mean(outside <= threshold), abs=1e-15)
    assert 1 - flagged_share(outside, threshold) == pytest.approx(metrics["fpr_at_tpr"], abs=1e-15)
    flagged = np.sort(outside)[::-1][int(np.ceil(tpr * 555)) - 1]  # the score flagging tpr of the OOD images
    assert metrics["fpr_at_tpr_ood_positive"] == pytest.approx(np.mean(inside >= flagged), abs=1e-15)


def test_flagged_share_by_hand() -> None:
    assert flagged_share([0.1, 0.2, 0.3, 0.4], 0.2) == 0.5
    assert flagged_share([0.1, 0.2], float("inf")) == 0.0


def test_malformed_inputs_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="in_scores"):
        ood_metrics([], [0.1])
    with pytest.raises(ValueError, match="ood_scores"):
        ood_metrics([0.1], [np.inf])
    with pytest.raises(ValueError, match="tpr"):
        ood_metrics([0.1], [0.2], tpr=0)
    with pytest.raises(ValueError, match="NaN"):
        flagged_share([0.1], float("nan"))
