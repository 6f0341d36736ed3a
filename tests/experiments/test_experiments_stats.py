"""Statistics: paired tests against scipy.stats on known numbers, Holm, bounded accuracy intervals, the power
calculation, time to result; and the Glorot–Bengio saturation measure on a saturated and a healthy net."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from experiments.data import Split
from experiments.runs import training
from experiments.runs.training import RunConfig
from experiments.stats import (accuracy_ci, compare_arms, finite, holm, mean_ci, paired, power_paired_t,
                               seeds_disagree, seeds_needed, time_to_target, verdict)

A = np.array([0.9712, 0.9730, 0.9705, 0.9741, 0.9722])
B = np.array([0.9690, 0.9701, 0.9699, 0.9712, 0.9688])


def test_paired_tests_match_scipy_on_known_numbers():
    r = paired(A, B)
    d = A - B
    assert r["n"] == 5 and r["mean_diff"] == pytest.approx(d.mean())
    assert r["p_t"] == pytest.approx(sps.ttest_rel(A, B).pvalue)
    assert r["p_wilcoxon"] == pytest.approx(sps.wilcoxon(A, B).pvalue) and r["p_wilcoxon"] == pytest.approx(0.0625)
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # by hand: t = mean / (s / √n) with 4 degrees of freedom
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert r["p_t"] == pytest.approx(2 * sps.t.sf(abs(t), 4))


def test_pairs_with_a_diverged_seed_are_left_out():
    r = paired(np.append(A, np.nan), np.append(B, 0.5))
    assert r["n"] == 5 and r["p_t"] == pytest.approx(sps.ttest_rel(A, B).pvalue)


def test_holm_on_known_numbers():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3·0.01, max(2·0.03, .), max(1·0.04, .)
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    out = holm([0.02, np.nan])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1])


def test_compare_arms_verdicts_for_a_clear_difference_and_identical_arms():
    values = pd.DataFrame({"relu": A, "gelu": B, "copy": A})
    table = compare_arms(values, "g")
    assert list(table.columns) == ["group", "arm_a", "arm_b", "metric", "n", "mean_diff", "ci_low", "ci_high", "p_t",
                                   "p_wilcoxon", "p_holm", "verdict"]
    clear = table[(table["arm_a"] == "relu") & (table["arm_b"] == "gelu")].iloc[0]
    assert clear["mean_diff"] == pytest.approx(100 * (A - B).mean())  # points
    # copy − gelu has the same p: the smallest two of 3 get 3·p (Holm's running maximum carries it to the second)
    assert clear["p_holm"] == pytest.approx(min(1, 3 * sps.ttest_rel(A, B).pvalue))
    assert clear["verdict"] == f"relu > gelu by {100 * (A - B).mean():.2f} points, p_Holm = {clear['p_holm']:.2g}"
    same = table[table["mean_diff"] == 0].iloc[0]
    assert {same["arm_a"], same["arm_b"]} == {"relu", "copy"}
    assert same["verdict"] == "not separable with 5 seeds: identical on every seed" and same["p_holm"] == 1


def test_a_small_noisy_difference_says_how_many_seeds_it_needs():
    noisy = B + np.array([0.004, -0.003, 0.001, -0.002, 0.0015])
    row = compare_arms(pd.DataFrame({"a": A, "b": noisy}), "g").iloc[0]
    d = (row["arm_a"] == "a") * (A - noisy) + (row["arm_a"] == "b") * (noisy - A)
    n = seeds_needed(d.mean(), d.std(ddof=1))
    assert row["p_holm"] >= 0.05
    assert row["verdict"].startswith("not separable with 5 seeds: a difference of this size") and f"about {n} seeds" \
        in row["verdict"]
    effect = d.mean() / d.std(ddof=1)
    assert power_paired_t(effect, n) >= 0.8 > power_paired_t(effect, n - 1)
    assert math.isinf(seeds_needed(0.0, 1.0))


def test_accuracy_intervals_stay_inside_0_and_100_percent():
    bimodal = [0.97, 0.97, 0.10]
    t = mean_ci(bimodal)
    assert t.high > 1  # what a t interval does on 3 seeds of a bimodal arm
    ci = accuracy_ci(bimodal)
    assert 0 <= ci.low <= ci.mean <= ci.high <= 1 and ci.mean == pytest.approx(0.68)
    assert seeds_disagree(bimodal) and not seeds_disagree(A)
    assert seeds_disagree([0.97, 0.97, np.nan], ["ok", "ok", "diverged"])
    tight = accuracy_ci(A)
    assert tight.low < A.mean() < tight.high and tight.high - tight.low < 0.005
    assert accuracy_ci([1.0, 1.0, 1.0]).high <= 1 and accuracy_ci([0.9]).n == 1


def test_time_to_target_keeps_not_reached():
    epochs = pd.DataFrame({"key": ["a"] * 3 + ["b"] * 3, "epoch": [1, 2, 3] * 2, "epoch_time_s": [2.0] * 6,
                           "val_acc": [0.95, 0.971, 0.98, 0.90, 0.92, 0.93]})
    out = time_to_target(epochs, 0.97).set_index("key")
    assert out.loc["a", "epoch"] == 2 and out.loc["a", "seconds"] == 4.0
    assert np.isnan(out.loc["b", "epoch"]) and np.isnan(out.loc["b", "seconds"])


@pytest.fixture(scope="module")
def probe(mnist):
    val = mnist(100).val
    return val.images[:300], val.labels[:300]


def hidden_saturation(config, probe) -> list:
    backend = training.ManualBackend(config)
    X, y = backend.prepare(Split(*probe))
    return [row["saturated_frac"] for row in backend.probe(X, y)[:-1]]


def test_glorot_bengio_saturation_reads_high_on_a_saturated_net_and_low_on_a_healthy_one(probe):
    deep = (784,) + (100,) * 5 + (10,)
    saturated = hidden_saturation(RunConfig(layer_sizes=deep, activation="sigmoid", init="normal"), probe)
    healthy = hidden_saturation(RunConfig(layer_sizes=deep, activation="sigmoid", init="xavier"), probe)
    tanh = hidden_saturation(RunConfig(layer_sizes=deep, activation="tanh", init="xavier"), probe)
    assert min(saturated) > 0.5  # N(0, 1) weights: |z| ~ √fan-in ≫ 1, outputs pinned at 0 or 1
    assert max(healthy) < 0.05 and max(tanh) < 0.05
    relu = hidden_saturation(RunConfig(layer_sizes=deep, activation="relu", init="normal"), probe)
    assert all(np.isnan(relu))  # no flat tails: ReLU's flat side is "dead", reported as such


def test_a_pair_not_separable_after_holm_is_never_said_to_need_fewer_seeds_than_it_had():
    a = np.array([0.9810, 0.9822, 0.9805, 0.9831, 0.9818])
    b = a - np.array([0.0030, 0.0020, 0.0045, 0.0035, 0.0030])  # a clear difference for one pair alone
    r = paired(pd.Series(a), pd.Series(b))
    text = verdict("x", "y", r, p_holm=0.08, n_pairs=36)  # but not after Holm over 36 pairs
    needed = int(text.rsplit("about ", 1)[1].split()[0])
    assert text.startswith("not separable with 5 seeds") and needed > 5


# --------------------------------------------------------------------------- absolute facts of the statistics
def test_accuracy_interval_of_two_seeds_is_the_t_interval_on_the_logit_scale_worked_out():
    x = np.array([0.90, 0.92])
    logit = np.log(x / (1 - x))  # 2.1972, 2.4423
    half = 12.706204736174707 * logit.std(ddof=1) / math.sqrt(2)  # t(0.975, 1 degree of freedom)
    low, high = 1 / (1 + np.exp(-(logit.mean() - half))), 1 / (1 + np.exp(-(logit.mean() + half)))
    interval = accuracy_ci(x)
    assert interval.n == 2 and interval.mean == pytest.approx(0.91)
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)
    assert 0 < interval.low < 0.9 and 0.92 < interval.high < 1


def test_an_accuracy_of_zero_gives_a_finite_interval():
    interval = accuracy_ci([0.0, 0.0, 0.1])
    assert all(math.isfinite(v) for v in interval[:3]) and 0 <= interval.low <= interval.mean <= interval.high <= 1


def test_intervals_print_as_documented():
    from experiments.stats import Interval
    assert str(Interval(0.97123, 0.97011, 0.97234, 3)) == "0.9712 [0.9701, 0.9723]"
    assert Interval(0.97123, 0.97011, 0.97234, 3).format(".2%") == "97.12% [97.01, 97.23%]"
    assert mean_ci([]).format() == "–"
    assert mean_ci([0.9]).format() == "0.9000 (n=1)" and mean_ci([0.9]).n == 1


def simulated_power(effect: float, n: int, alpha: float = 0.05, trials: int = 200_000) -> float:
    """The power of the two-sided paired t-test by simulation: how often |t| exceeds its critical value when
    the differences are drawn from N(effect, 1)."""
    d = np.random.default_rng(0).normal(effect, 1.0, size=(trials, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > sps.t.ppf(1 - alpha / 2, n - 1)))


@pytest.mark.parametrize("effect, n, alpha", [(1.0, 10, 0.05), (0.1, 5, 0.05), (0.5, 8, 0.01), (-0.7, 6, 0.05)])
def test_power_matches_a_simulation_of_the_test(effect, n, alpha):
    # 200,000 trials: the simulation's standard error is at most 0.0011
    assert power_paired_t(effect, n, alpha) == pytest.approx(simulated_power(effect, n, alpha), abs=0.005)


def test_power_without_a_difference_is_alpha_and_power_does_not_care_about_the_sign():
    for n in (2, 5, 30):
        assert power_paired_t(0.0, n) == pytest.approx(0.05, abs=1e-12)
        assert power_paired_t(0.0, n, alpha=0.01) == pytest.approx(0.01, abs=1e-12)
    assert power_paired_t(-0.4, 12) == power_paired_t(0.4, 12)


def test_power_far_in_the_tail_takes_the_normal_limit():
    # scipy's noncentral t gives NaN here (n = 10,000, noncentrality 20): the normal limit is 1 to 1e-80
    assert power_paired_t(0.2, 10_000) == 1.0
    assert power_paired_t(0.1, 100_000) == 1.0


def test_seeds_needed_on_known_cases():
    assert seeds_needed(100.0, 1.0) == 2  # the smallest paired test there is
    assert seeds_needed(1.0, 0.0) == math.inf and seeds_needed(0.0, 1.0) == math.inf
    assert seeds_needed(0.01, 1e-320) == math.inf  # a ratio that overflows is not taken for a huge effect
    assert seeds_needed(1e-4, 1.0) == math.inf  # would need about 800 million
    for alpha in (0.05, 0.01):
        n = seeds_needed(0.5, 1.0, alpha=alpha)
        assert power_paired_t(0.5, n, alpha) >= 0.8 > power_paired_t(0.5, n - 1, alpha)
    assert seeds_needed(0.5, 1.0) == 34 and seeds_needed(0.5, 1.0, alpha=0.01) == 51  # Cohen's tables: 34, 51
    # reachable within 100,000 seeds at alpha 0.05 (power 0.885) but not at alpha 0.01 (power 0.72)
    assert seeds_needed(0.01, 1.0) < 100_000 and seeds_needed(0.01, 1.0, alpha=0.01) == math.inf


def test_seeds_needed_stops_at_its_limit():
    # an effect that needs exactly limit + 1 seeds: not found within the limit, found with one seed more
    low, high = 1e-3, 2e-2
    for _ in range(60):  # bisect for the effect whose power at 100,000 seeds is just below 0.8
        mid = (low + high) / 2
        low, high = (mid, high) if power_paired_t(mid, 100_000) < 0.8 else (low, mid)
    effect = low
    assert power_paired_t(effect, 100_000) < 0.8 <= power_paired_t(effect, 100_001)
    assert seeds_needed(effect, 1.0) == math.inf
    assert seeds_needed(effect, 1.0, limit=100_001) == 100_001


def test_time_to_target_counts_an_epoch_that_reaches_the_target_exactly():
    epochs = pd.DataFrame({"key": ["c"] * 3, "epoch": [1, 2, 3], "epoch_time_s": [1.5] * 3,
                           "val_acc": [0.5, 0.9, 0.95]})
    out = time_to_target(epochs, 0.9).set_index("key")
    assert out.loc["c", "epoch"] == 2 and out.loc["c", "seconds"] == 3.0


def test_seeds_disagree_more_than_5_points_apart_or_with_mixed_statuses():
    assert seeds_disagree([0.90, 0.91], ["ok", "ok"]) is False  # one status is not mixed
    assert seeds_disagree([0.90, 0.91], ["ok", "diverged"]) is True
    assert seeds_disagree([0.80, 0.90]) is True  # two seeds 10 points apart
    assert seeds_disagree([0.0, 0.05]) is False  # exactly 5 points: not more than 5
    assert seeds_disagree([0.5]) is False and seeds_disagree([]) is False


def test_compare_arms_orders_by_p_holm_then_the_larger_difference_and_counts_seeds_at_holms_level():
    noise = np.array([0.01, -0.01, 0.01, -0.01, 0.001])  # mean 0.0002: no arm separates from another
    values = pd.DataFrame({"base": A, "n1": A + noise, "n2": A + 3 * noise})
    table = compare_arms(values, "g")
    assert list(table["metric"]) == ["test_acc"] * 3  # the default metric
    assert list(table["p_holm"]) == [1.0, 1.0, 1.0]
    # ties in p_Holm: the larger difference first
    assert list(zip(table["arm_a"], table["arm_b"])) == [("n2", "base"), ("n2", "n1"), ("n1", "base")]
    assert list(table["mean_diff"]) == pytest.approx([0.06, 0.04, 0.02])
    for row in table.itertuples():
        r = paired(values[row.arm_a], values[row.arm_b])
        needed = seeds_needed(r["mean_diff"], r["sd_diff"], alpha=0.05 / 3)  # 3 pairs: Holm may ask for α/3
        assert row.verdict.endswith(f"needs about {needed} seeds")
    clear = compare_arms(pd.DataFrame({"lo": B, "hi": A, "noisy": A + noise}), "g")
    assert list(clear["p_holm"]) == sorted(clear["p_holm"])  # the most significant pair first


def test_identical_arms_keep_their_order_and_a_single_arm_has_no_pairs():
    table = compare_arms(pd.DataFrame({"relu": A, "copy": A}), "g")
    assert (table["arm_a"].iloc[0], table["arm_b"].iloc[0]) == ("relu", "copy")
    empty = compare_arms(pd.DataFrame({"relu": A}), "g")
    assert len(empty) == 0 and list(empty.columns) == ["group", "arm_a", "arm_b", "metric", "n", "mean_diff",
                                                        "ci_low", "ci_high", "p_t", "p_wilcoxon", "p_holm", "verdict"]


# --------------------------------------------------------------------------- paired, holm, verdict: every branch
NAN_RESULT = {"n": 0, "mean_diff": math.nan, "sd_diff": math.nan, "ci_low": math.nan, "ci_high": math.nan,
              "p_t": math.nan, "p_wilcoxon": math.nan}


def same_numbers(got: dict, want: dict) -> bool:
    """Equal keys, and equal values with NaN equal to NaN."""
    return got.keys() == want.keys() and all(
        (isinstance(v, float) and math.isnan(v) and math.isnan(got[k])) or got[k] == v for k, v in want.items())


def test_paired_with_no_pair_and_with_one_pair():
    assert same_numbers(paired([], []), NAN_RESULT)
    assert same_numbers(paired([np.nan, 0.9], [0.8, np.inf]), NAN_RESULT)  # no pair where both finished
    assert same_numbers(paired([0.9], [0.7]), {**NAN_RESULT, "n": 1, "mean_diff": pytest.approx(0.2)})


def test_paired_with_two_pairs_has_an_interval_and_a_t_test():
    r = paired([0.9, 0.8], [0.7, 0.7])  # differences 0.2 and 0.1: mean 0.15, sd 0.0707
    assert r["n"] == 2 and r["sd_diff"] == pytest.approx(math.sqrt(0.005))
    half = 12.706204736174707 * math.sqrt(0.005) / math.sqrt(2)  # t(0.975, 1 degree of freedom)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.15 - half, 0.15 + half))
    assert r["p_t"] == pytest.approx(sps.ttest_rel([0.9, 0.8], [0.7, 0.7]).pvalue) and 0 < r["p_t"] < 1
    assert r["p_wilcoxon"] == pytest.approx(0.5)  # 2 pairs, both positive: 2 · (1/4)


def test_paired_differences_without_spread():
    same = paired([0.9] * 6, [0.9] * 6)
    assert same["p_t"] == 1.0 and same["p_wilcoxon"] == 1.0 and same["sd_diff"] == 0.0
    assert paired([0.9] * 60, [0.9] * 60)["p_wilcoxon"] == 1.0  # scipy's normal approximation would say NaN
    shifted = paired([1.5] * 6, [0.5] * 6)  # the same nonzero difference on every seed: t = ±inf
    assert shifted["p_t"] == 0.0 and shifted["mean_diff"] == 1.0
    assert shifted["p_wilcoxon"] == pytest.approx(2 / 64)  # all 6 signs positive: 2 · 2⁻⁶


def test_wilcoxon_ranks_the_differences_not_the_values():
    # differences 1, 2, 3, 4, 5, −6: W− = 6, and 14 of the 64 sign patterns have W− ≤ 6 → p = 2 · 14/64
    r = paired([11, 12, 13, 14, 15, 4], [10] * 6)
    assert r["p_wilcoxon"] == pytest.approx(28 / 64)


def test_missing_values_are_left_out_whatever_their_spelling():
    assert paired([0.9, None, 0.8, 0.85], [0.7, 0.6, None, 0.75])["n"] == 2
    assert list(finite([1.0, None, np.nan, np.inf, 2])) == [1.0, 2.0]
    out = holm([0.01, None, 0.02])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([1, 0]).dtype == np.float64 and list(holm([0, 1])) == [0.0, 1.0]


def test_holm_never_exceeds_one():
    assert list(holm([0.3, 0.6, 0.9])) == pytest.approx([0.9, 1.0, 1.0])
    assert list(holm([0.7, 0.6])) == [1.0, 1.0]


def test_mean_interval_of_no_value_and_one_value():
    none = mean_ci([])
    assert none.n == 0 and all(isinstance(v, float) and math.isnan(v) for v in none[:3])
    one = mean_ci([0.9, np.nan])
    assert one.n == 1 and one.mean == 0.9 and math.isnan(one.low) and isinstance(one.high, float) \
        and math.isnan(one.high)
    three = mean_ci([0.1, 0.2, 0.3])
    assert three.n == 3 and isinstance(three.n, int)


def test_verdict_sentences_worked_out():
    r = {"n": 5, "mean_diff": -0.02, "sd_diff": 0.01}
    assert verdict("x", "y", r, p_holm=0.01) == "y > x by 2.00 points, p_Holm = 0.01"  # unit 100 by default
    assert verdict("x", "y", {**r, "mean_diff": 0.02}, p_holm=0.01) == "x > y by 2.00 points, p_Holm = 0.01"
    at_alpha = verdict("x", "y", r, p_holm=0.05)  # p_Holm must be below α, not equal to it
    assert at_alpha.startswith("not separable with 5 seeds: a difference of this size (2.00 points) needs about ")
    zero_mean = {"n": 4, "mean_diff": 0.0, "sd_diff": 0.01}  # seeds that disagree, averaging no difference
    assert verdict("x", "y", zero_mean, p_holm=1.0) == \
        "not separable with 4 seeds: a difference of this size (0.00 points) needs more than 100,000 seeds"
    assert verdict("x", "y", {**zero_mean, "sd_diff": 0.0}, p_holm=1.0) == \
        "not separable with 4 seeds: identical on every seed"


def test_verdict_never_asks_for_fewer_seeds_than_one_more_than_it_had():
    r = paired(np.array([0.91, 0.92, 0.93, 0.90, 0.94]), np.array([0.90, 0.91, 0.92, 0.89, 0.935]))
    assert seeds_needed(r["mean_diff"], r["sd_diff"]) == 3  # fewer than the 5 seeds run
    assert verdict("x", "y", r, p_holm=0.2).endswith("needs about 6 seeds")


def test_verdict_counts_seeds_at_holms_level_for_the_pairs_given():
    r = {"n": 5, "mean_diff": 0.01, "sd_diff": 0.02}
    alone, of_ten = seeds_needed(0.01, 0.02), seeds_needed(0.01, 0.02, alpha=0.05 / 10)
    assert 6 < alone < of_ten < seeds_needed(0.01, 0.02, alpha=0.05 / 20)
    assert verdict("x", "y", r, p_holm=0.5).endswith(f"needs about {alone} seeds")  # one pair by default
    assert verdict("x", "y", r, p_holm=0.5, n_pairs=10).endswith(f"needs about {of_ten} seeds")


def test_time_to_target_of_no_epochs_has_its_columns():
    epochs = pd.DataFrame(columns=["key", "epoch", "val_acc", "epoch_time_s"])
    out = time_to_target(epochs, 0.9)
    assert out.empty and list(out.columns) == ["key", "epoch", "seconds"]
