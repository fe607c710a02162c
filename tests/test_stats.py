"""Tests for ensemble_cnn.evaluation.stats: exact answers on tiny hand-made inputs."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ensemble_cnn.evaluation.stats import (
    calibration,
    disagreement_matrix,
    expected_calibration_error,
    mcnemar_exact,
    mcnemar_p_value,
    member_subsets,
    negative_log_likelihood,
    vote_subset_curve,
    wilson_interval,
)
from ensemble_cnn.inference.vote import majority_vote, soft_vote

EXACT = {"rel": 0.0, "abs": 1e-12}  # exact up to floating-point rounding
Z_95 = 1.959963984540054  # the standard normal 0.975 quantile


def _one_hot(labels: list[list[int]], c: int) -> np.ndarray:
    """One-hot probabilities (K, N, C) from member labels (K, N)."""
    return np.eye(c)[np.asarray(labels)]


# --------------------------------------------------------------------------- #
# Wilson interval
# --------------------------------------------------------------------------- #
def _wilson_by_hand(s: int, n: int, z: float) -> tuple[float, float]:
    """Wilson bounds in the other closed form: (2s + z^2 -+ z sqrt(z^2 + 4 s (n - s) / n)) / (2 (n + z^2))."""
    root = z * math.sqrt(z * z + 4.0 * s * (n - s) / n)
    return (2 * s + z * z - root) / (2 * (n + z * z)), (2 * s + z * z + root) / (2 * (n + z * z))


def test_wilson_95_of_100_matches_hand_formula() -> None:
    lo, hi = wilson_interval(95, 100)
    exp_lo, exp_hi = _wilson_by_hand(95, 100, Z_95)
    assert lo == pytest.approx(exp_lo, rel=0, abs=1e-9)
    assert hi == pytest.approx(exp_hi, rel=0, abs=1e-9)
    assert (round(lo, 4), round(hi, 4)) == (0.8882, 0.9785)


def test_wilson_textbook_81_of_263() -> None:
    # Newcombe (1998) / Wikipedia example: 81 of 263 at 95 % -> (0.2553, 0.3662).
    lo, hi = wilson_interval(81, 263, confidence=0.95)
    assert lo == pytest.approx(0.2553, abs=5e-5)
    assert hi == pytest.approx(0.3662, abs=5e-5)


def test_wilson_confidence_changes_z() -> None:
    lo, hi = wilson_interval(95, 100, confidence=0.99)
    exp_lo, exp_hi = _wilson_by_hand(95, 100, 2.5758293035489004)  # 0.995 quantile
    assert (lo, hi) == (pytest.approx(exp_lo, abs=1e-9), pytest.approx(exp_hi, abs=1e-9))
    lo95, hi95 = wilson_interval(95, 100)
    assert lo < lo95 and hi > hi95


def test_wilson_edges_are_exact() -> None:
    # At s = n the formula gives 0.9999999999999999 in floating point for n = 10.
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(_wilson_by_hand(10, 10, Z_95)[0], abs=1e-12)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(_wilson_by_hand(0, 10, Z_95)[1], abs=1e-12)
    assert wilson_interval(np.int64(5), np.int64(10)) == wilson_interval(5, 10)


@pytest.mark.parametrize(
    ("successes", "n", "confidence", "name"),
    [
        (11, 10, 0.95, "successes"),
        (-1, 10, 0.95, "successes"),
        (0, 0, 0.95, "n"),
        (5, 10, 1.0, "confidence"),
        (5, 10, 0.0, "confidence"),
        (5.0, 10, 0.95, "successes"),
        (True, 10, 0.95, "successes"),
    ],
)
def test_wilson_bad_input(successes, n, confidence, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        wilson_interval(successes, n, confidence=confidence)


# --------------------------------------------------------------------------- #
# McNemar
# --------------------------------------------------------------------------- #
def _table(only_a: int, only_b: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors of A and B with the given 2x2 table counts."""
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_known_table() -> None:
    # p = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * 79 / 4096.
    a, b = _table(10, 2, both=30, neither=5)
    assert mcnemar_exact(a, b) == {"only_a": 10, "only_b": 2, "p_value": 0.03857421875}


def test_mcnemar_symmetric() -> None:
    a, b = _table(10, 2, both=3, neither=1)
    assert mcnemar_exact(b, a) == {"only_a": 2, "only_b": 10, "p_value": mcnemar_exact(a, b)["p_value"]}


def test_mcnemar_no_discordant_and_equal_counts() -> None:
    a, b = _table(0, 0, both=4, neither=3)
    assert mcnemar_exact(a, b) == {"only_a": 0, "only_b": 0, "p_value": 1.0}
    # 3 vs 3: 2 * P(X <= 3 | n=6) = 2 * 42/64 > 1, capped.
    a, b = _table(3, 3, both=1, neither=0)
    assert mcnemar_exact(a, b) == {"only_a": 3, "only_b": 3, "p_value": 1.0}


def test_mcnemar_p_value_from_pooled_counts() -> None:
    # 10 vs 2: 2 * (1 + 12 + 66) / 4096 = 0.03857421875, as the known table above
    assert mcnemar_p_value(10, 2) == 0.03857421875 == mcnemar_p_value(2, 10)
    assert mcnemar_p_value(0, 0) == 1.0 and mcnemar_p_value(4, 0) == 0.125
    with pytest.raises(ValueError, match="`only_b` must be >= 0"):
        mcnemar_p_value(3, -1)


def test_mcnemar_one_sided_extreme() -> None:
    # 5 vs 0: 2 * (1/2)^5 = 0.0625.
    a, b = _table(5, 0, both=0, neither=0)
    assert mcnemar_exact(a, b)["p_value"] == 0.0625


def test_mcnemar_accepts_zero_one() -> None:
    assert mcnemar_exact([1, 1, 0, 1], [0.0, 1.0, 1.0, 0.0]) == {"only_a": 2, "only_b": 1, "p_value": 1.0}


@pytest.mark.parametrize(
    ("a", "b", "name"),
    [
        ([1, 0, 2], [1, 0, 1], "a_correct"),
        ([1, 0, 1], [1, 0.5, 1], "b_correct"),
        ([1, 0, 1], [1, 0], "b_correct"),
        ([[1, 0]], [1, 0], "a_correct"),
        ([], [], "a_correct"),
        (["x", "y"], [1, 0], "a_correct"),
    ],
)
def test_mcnemar_bad_input(a, b, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        mcnemar_exact(a, b)


# --------------------------------------------------------------------------- #
# Accuracy against ensemble size
# --------------------------------------------------------------------------- #
# y = [0, 0, 0, 1, 1, 2]; one-hot members (right samples marked):
#   m0 = [0, 0, 0, 1, 1, 0]  right s0..s4     -> 5/6
#   m1 = [0, 1, 2, 1, 0, 2]  right s0, s3, s5 -> 3/6
#   m2 = [1, 0, 2, 2, 1, 2]  right s1, s4, s5 -> 3/6
Y_HAND = [0, 0, 0, 1, 1, 2]
LABELS_HAND = [[0, 0, 0, 1, 1, 0], [0, 1, 2, 1, 0, 2], [1, 0, 2, 2, 1, 2]]


def _first_member(stack: np.ndarray) -> np.ndarray:
    """A deliberately different rule: the subset's first member's labels."""
    return stack[0].argmax(axis=1)


@pytest.fixture()
def hand_curve() -> list[dict]:
    rules = {"majority": majority_vote, "soft": soft_vote, "first": _first_member}
    return vote_subset_curve(_one_hot(LABELS_HAND, 3), Y_HAND, rules=rules)


def test_subset_curve_hand_k1(hand_curve) -> None:
    # Each single member: 5/6, 1/2, 1/2 -> mean 11/18; every rule is the member itself.
    row = hand_curve[0]
    assert (row["k"], row["n_subsets"], row["exhaustive"]) == (1, 3, True)
    for rule in ("majority", "soft", "first"):
        assert row[f"{rule}_mean"] == pytest.approx(11 / 18, **EXACT)
        assert row[f"{rule}_min"] == pytest.approx(1 / 2, **EXACT)
        assert row[f"{rule}_max"] == pytest.approx(5 / 6, **EXACT)
    assert row["oracle_mean"] == pytest.approx(11 / 18, **EXACT)


def test_subset_curve_hand_k2(hand_curve) -> None:
    # One-hot: a 1-1 tie also ties on summed probability, so majority (and soft) take the lower label.
    #   {0,1}: s0 0,0->0 ok; s1 0,1->0 ok; s2 0,2->0 ok; s3 1,1 ok; s4 1,0->0 no; s5 0,2->0 no   -> 4/6
    #   {0,2}: s0 0,1->0 ok; s1 0,0 ok;   s2 0,2->0 ok; s3 1,2->1 ok; s4 1,1 ok; s5 0,2->0 no  -> 5/6
    #   {1,2}: s0 0,1->0 ok; s1 1,0->0 ok; s2 2,2 no;   s3 1,2->1 ok; s4 0,1->0 no; s5 2,2 ok  -> 4/6
    # first member: m0, m0, m1 -> 5/6, 5/6, 3/6.
    # oracle: m0|m1 = all 6, m0|m2 = all 6, m1|m2 = s0,s1,s3,s4,s5 = 5/6 -> mean 17/18.
    row = hand_curve[1]
    assert (row["k"], row["n_subsets"], row["exhaustive"]) == (2, 3, True)
    for rule in ("majority", "soft"):
        assert row[f"{rule}_mean"] == pytest.approx(13 / 18, **EXACT)
        assert row[f"{rule}_min"] == pytest.approx(4 / 6, **EXACT)
        assert row[f"{rule}_max"] == pytest.approx(5 / 6, **EXACT)
    assert row["first_mean"] == pytest.approx(13 / 18, **EXACT)
    assert row["first_min"] == pytest.approx(3 / 6, **EXACT)
    assert row["first_max"] == pytest.approx(5 / 6, **EXACT)
    assert row["oracle_mean"] == pytest.approx(17 / 18, **EXACT)


def test_subset_curve_hand_k3(hand_curve) -> None:
    # {0,1,2}: s0 0,0,1->0 ok; s1 0,1,0->0 ok; s2 0,2,2->2 no; s3 1,1,2->1 ok; s4 1,0,1->1 ok;
    #          s5 0,2,2->2 ok -> 5/6. First member m0 -> 5/6. Oracle: every sample -> 1.
    row = hand_curve[2]
    assert (row["k"], row["n_subsets"], row["exhaustive"]) == (3, 1, True)
    for rule in ("majority", "soft", "first"):
        assert row[f"{rule}_mean"] == row[f"{rule}_min"] == row[f"{rule}_max"] == pytest.approx(5 / 6, **EXACT)
    assert row["oracle_mean"] == 1.0
    assert len(hand_curve) == 3
    assert set(row) == {"k", "n_subsets", "exhaustive", "oracle_mean"} | {
        f"{r}_{s}" for r in ("majority", "soft", "first") for s in ("mean", "min", "max")
    }


def test_subset_curve_soft_differs_from_majority() -> None:
    # One sample, y = 1. m0 = m1 = [5/8, 3/8] (vote 0), m2 = [0, 1] (vote 1).
    #   k=1: m0 no, m1 no, m2 ok -> mean 1/3 for both rules.
    #   k=2: {0,1} both vote 0 -> no; {0,2}, {1,2}: 1-1 tie, summed prob 5/8 vs 11/8 -> 1 ok. Mean 2/3 both.
    #   k=3: majority 2 votes for 0 -> no; soft sums 10/8 vs 14/8 -> 1 ok.
    proba = np.array([[[0.625, 0.375]], [[0.625, 0.375]], [[0.0, 1.0]]])
    curve = vote_subset_curve(proba, [1], rules={"majority": majority_vote, "soft": soft_vote})
    assert [row["majority_mean"] for row in curve] == pytest.approx([1 / 3, 2 / 3, 0.0], **EXACT)
    assert [row["soft_mean"] for row in curve] == pytest.approx([1 / 3, 2 / 3, 1.0], **EXACT)
    assert [row["oracle_mean"] for row in curve] == pytest.approx([1 / 3, 2 / 3, 1.0], **EXACT)


def _random_stack(seed: int, k: int, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Random probabilities (k, n, c) whose members have different accuracies, and labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(k, n, c))
    logits[np.arange(k)[:, None], np.arange(n), y] += np.linspace(0.0, 3.0, k)[:, None]
    return np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True), y


def test_subset_curve_sampled_rows() -> None:
    proba, y = _random_stack(0, 12, 40, 4)
    rules = {"soft": soft_vote}
    curve = vote_subset_curve(proba, y, rules=rules, max_subsets=50, seed=0)
    counts = [(row["k"], row["n_subsets"], row["exhaustive"]) for row in curve]
    # C(12, k) <= 50 only for k in {1, 11, 12}.
    assert counts == [(k, min(math.comb(12, k), 50), math.comb(12, k) <= 50) for k in range(1, 13)]
    assert curve[5]["n_subsets"] == 50 and curve[5]["exhaustive"] is False

    assert vote_subset_curve(proba, y, rules=rules, max_subsets=50, seed=0) == curve
    other = vote_subset_curve(proba, y, rules=rules, max_subsets=50, seed=1)
    assert other[5]["soft_mean"] != curve[5]["soft_mean"]
    assert other[0] == curve[0] and other[11] == curve[11]  # exhaustive rows do not depend on the seed


def test_member_subsets_random_distinct_and_reproducible() -> None:
    subsets = member_subsets(12, 6, max_subsets=50, rng=np.random.default_rng(0))
    assert len(subsets) == 50 and len(set(subsets)) == 50
    assert all(len(s) == 6 and list(s) == sorted(set(s)) and 0 <= s[0] and s[-1] < 12 for s in subsets)
    assert member_subsets(12, 6, max_subsets=50, rng=np.random.default_rng(0)) == subsets
    assert member_subsets(12, 6, max_subsets=50, rng=np.random.default_rng(1)) != subsets


def test_member_subsets_exhaustive_in_combinations_order() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert member_subsets(4, 2, max_subsets=6, rng=rng) == list(itertools.combinations(range(4), 2))
    assert rng.bit_generator.state == state  # the generator is not touched
    # One more subset than allowed -> sampled: 5 distinct of the 6 pairs.
    sampled = member_subsets(4, 2, max_subsets=5, rng=rng)
    assert len(set(sampled)) == 5 and set(sampled) < set(itertools.combinations(range(4), 2))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rules": {}}, "rules"),
        ({"rules": {"oracle": soft_vote}}, "rules"),
        ({"rules": {"soft": "soft_vote"}}, "rules"),
        ({"rules": {"bad": lambda s: s[0]}}, "rules"),  # returns (N, C), not (N,)
        ({"rules": {"soft": soft_vote}, "max_subsets": 0}, "max_subsets"),
        ({"rules": {"soft": soft_vote}, "seed": -1}, "seed"),
    ],
)
def test_subset_curve_bad_options(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}"):
        vote_subset_curve(_one_hot(LABELS_HAND, 3), Y_HAND, **kwargs)


@pytest.mark.parametrize(
    ("y", "message"),
    [(Y_HAND[:5], "shape"), ([0, 0, 0, 1, 1, 3], r"\[0, 3\)"), ([0, 0, 0.5, 1, 1, 2], "integer")],
)
def test_subset_curve_bad_labels(y, message: str) -> None:
    with pytest.raises(ValueError, match=f"`y_true`.*{message}"):
        vote_subset_curve(_one_hot(LABELS_HAND, 3), y, rules={"soft": soft_vote})


def test_member_subsets_bad_input() -> None:
    with pytest.raises(ValueError, match="`k`"):
        member_subsets(3, 4, max_subsets=5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="`rng`"):
        member_subsets(3, 2, max_subsets=5, rng=0)


# --------------------------------------------------------------------------- #
# Calibration
# --------------------------------------------------------------------------- #
def test_nll_hand() -> None:
    proba = [[0.5, 0.5], [0.25, 0.75], [0.1, 0.9]]
    expected = (math.log(2) + math.log(4 / 3) + math.log(10)) / 3
    assert negative_log_likelihood(proba, [0, 1, 0]) == pytest.approx(expected, **EXACT)


def test_nll_clips_at_eps() -> None:
    assert negative_log_likelihood([[0.0, 1.0]], [0]) == pytest.approx(12 * math.log(10), **EXACT)
    assert negative_log_likelihood([[0.0, 1.0]], [0], eps=1e-3) == pytest.approx(3 * math.log(10), **EXACT)
    assert negative_log_likelihood([[0.0, 1.0]], [1]) == 0.0


# confidences 0.9, 0.9, 0.6, 0.6; correct 1, 0, 1, 1.
ECE_PROBA = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2]]
ECE_Y = [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("bins", "expected"),
    [
        # 15 bins: 0.9 in (13/15, 14/15] -> acc 1/2, conf 0.9: 2/4 * 0.4;
        #          0.6 in (8/15, 9/15] (right-closed, 9/15 == 0.6) -> acc 1, conf 0.6: 2/4 * 0.4. Sum 0.4.
        (15, 0.4),
        (5, 0.4),  # 0.6 in (0.4, 0.6], 0.9 in (0.8, 1.0]: same split.
        (2, 0.0),  # all in (0.5, 1]: acc 3/4, mean conf 3/4.
        (1, 0.0),
    ],
)
def test_ece_hand(bins: int, expected: float) -> None:
    assert expected_calibration_error(ECE_PROBA, ECE_Y, bins=bins) == pytest.approx(expected, **EXACT)


def test_ece_default_is_15_bins() -> None:
    assert expected_calibration_error(ECE_PROBA, ECE_Y) == pytest.approx(0.4, **EXACT)


def test_ece_bins_are_right_closed() -> None:
    # bins=2: confidence 0.5 goes to (0, 0.5], 0.75 to (0.5, 1].
    # -> 1/2 * |1 - 0.5| + 1/2 * |0 - 0.75| = 0.625 (a left-closed 0.5 would give 0.125).
    proba = [[0.5, 0.25, 0.25], [0.75, 0.25, 0.0]]
    assert expected_calibration_error(proba, [0, 1], bins=2) == pytest.approx(0.625, **EXACT)


def test_ece_zero_confidence_goes_to_first_bin() -> None:
    # Confidences 0 (argmax 0, right) and 0.5 (wrong) share (0, 0.5]: acc 1/2, conf 1/4 -> 0.25.
    proba = [[0.0, 0.0, 0.0], [0.5, 0.25, 0.25]]
    assert expected_calibration_error(proba, [0, 1], bins=2) == pytest.approx(0.25, **EXACT)


@pytest.mark.parametrize("bins", [1, 4, 10, 15])
def test_ece_perfect_calibration_is_zero(bins: int) -> None:
    # Confidence 0.75 right 3 of 4 times; confidence 0.5 right 1 of 2 times.
    proba = [[0.75, 0.25]] * 4 + [[0.5, 0.5]] * 2
    assert expected_calibration_error(proba, [0, 0, 0, 1, 0, 1], bins=bins) == pytest.approx(0.0, **EXACT)


def test_calibration_bundles_both() -> None:
    result = calibration(ECE_PROBA, ECE_Y, bins=15)
    assert set(result) == {"nll", "ece"}
    assert result["nll"] == pytest.approx(negative_log_likelihood(ECE_PROBA, ECE_Y), **EXACT)
    # -log of the true-class probabilities 0.9, 0.05, 0.6, 0.6.
    expected_nll = -(math.log(0.9) + math.log(0.05) + 2 * math.log(0.6)) / 4
    assert result["nll"] == pytest.approx(expected_nll, **EXACT)
    assert result["ece"] == pytest.approx(0.4, **EXACT)
    assert calibration(ECE_PROBA, ECE_Y, bins=1)["ece"] == pytest.approx(0.0, **EXACT)


@pytest.mark.parametrize(
    ("proba", "y", "kwargs", "name"),
    [
        ([0.5, 0.5], [0], {}, "probabilities_2d"),
        ([[1.0]], [0], {}, "probabilities_2d"),
        ([[np.nan, 1.0]], [0], {}, "probabilities_2d"),
        ([[0.5, 0.5]], [2], {}, "y_true"),
        ([[0.5, 0.5]], [0, 1], {}, "y_true"),
        ([[0.5, 0.5]], [0], {"eps": 0.0}, "eps"),
    ],
)
def test_nll_bad_input(proba, y, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        negative_log_likelihood(proba, y, **kwargs)


def test_ece_bad_bins() -> None:
    with pytest.raises(ValueError, match="`bins`"):
        expected_calibration_error(ECE_PROBA, ECE_Y, bins=0)
    with pytest.raises(ValueError, match="`bins`"):
        calibration(ECE_PROBA, ECE_Y, bins=2.5)


# --------------------------------------------------------------------------- #
# Disagreement
# --------------------------------------------------------------------------- #
def test_disagreement_matrix_hand() -> None:
    # m0 vs m1 differ at s3 (1/4); m0 vs m2 at s0, s2, s3 (3/4); m1 vs m2 at s0, s2 (2/4).
    labels = [[0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 0, 0]]
    got = disagreement_matrix(labels)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[0.0, 0.25, 0.75], [0.25, 0.0, 0.5], [0.75, 0.5, 0.0]])


@pytest.mark.parametrize("labels", [[0, 1, 2], [[0.0, 1.0]], np.zeros((0, 3), dtype=int)])
def test_disagreement_matrix_bad_input(labels) -> None:
    with pytest.raises(ValueError, match="`member_labels`"):
        disagreement_matrix(labels)
