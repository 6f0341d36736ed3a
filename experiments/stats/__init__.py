"""The statistics of a study: intervals per arm, paired comparisons per pair of arms, time to a target.

- ``mean_ci``: mean with a Student-t 95% interval (losses, times: unbounded quantities).
- ``accuracy_ci``: an interval for a mean accuracy that stays inside [0, 1]: the t interval of the seeds'
  accuracies on the logit scale, mapped back (a seed at 100% or 0% is moved half a test image inwards).
  Three seeds of a bimodal arm (97%, 97%, 10%) then read 68% [0.1%, 100.0%) instead of a t interval that
  ends past 100%; ``seeds_disagree`` flags such arms.
- ``paired``: the same seed gives every arm the same batch order and initialisation stream, so two arms
  are compared seed by seed: the mean of the per-seed differences with its t interval, the paired t-test
  (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact for small
  n). ``holm`` corrects the t-tests' p-values across all the pairs of a group; ``verdict`` words the result,
  and for a pair that is not separable, ``seeds_needed`` says how many seeds a difference of the observed
  size would need (a paired t-test with 80% power at α = 0.05, from the noncentral t distribution).
- ``time_to_target``: the epoch (and the training seconds) at which a run's validation accuracy first
  reaches a target; runs that never do are kept as "not reached" (NaN), not dropped.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.8
WILD_SPREAD = 0.05  # seeds whose accuracies span more than 5 points disagree wildly
EDGE = 0.5 / 10_000  # half a test image: where an accuracy of exactly 0 or 1 is moved for the logit
COMPARISON_COLUMNS = ["group", "arm_a", "arm_b", "metric", "n", "mean_diff", "ci_low", "ci_high", "p_t",
                      "p_wilcoxon", "p_holm", "verdict"]


class Interval(NamedTuple):
    """A mean with its 95% interval [low, high] over ``n`` values (NaN bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, spec: str = ".4f") -> str:
        """``0.9712 [0.9701, 0.9723]`` (``spec=".2%"``: ``97.12% [97.01, 97.23]``); ``(n=1)`` with one value."""
        if self.n == 0:
            return "–"
        if math.isnan(self.low):
            return f"{self.mean:{spec}} (n=1)"
        low, high = f"{self.low:{spec}}", f"{self.high:{spec}}"
        return f"{self.mean:{spec}} [{low.rstrip('%')}, {high}]"

    def __str__(self) -> str:
        return self.format()


def finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def t_975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    return float(sps.t.ppf(0.975, df))


def mean_ci(values) -> Interval:
    """Mean and t-based 95% interval of the finite values (NaN, a diverged run's metric, is left out)."""
    x = finite(values)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if len(x) == 1:
        return Interval(float(x[0]), math.nan, math.nan, 1)
    half = t_975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Interval(float(x.mean()), float(x.mean()) - half, float(x.mean()) + half, len(x))


def accuracy_ci(values) -> Interval:
    """Mean accuracy (a fraction) with a 95% interval inside [0, 1]: the t interval on the logit scale."""
    x = finite(values)
    if len(x) < 2:
        return mean_ci(x)
    logits = sps.logistic.ppf(np.clip(x, EDGE, 1 - EDGE))  # log(p / (1 − p))
    centre = mean_ci(logits)
    low, high = sps.logistic.cdf([centre.low, centre.high])
    return Interval(float(x.mean()), float(min(low, x.mean())), float(max(high, x.mean())), len(x))


def seeds_disagree(values, statuses=None) -> bool:
    """Whether an arm's seeds disagree wildly: accuracies more than 5 points apart, or some diverged and some
    not."""
    x = finite(values)
    mixed = statuses is not None and len(set(statuses)) > 1
    return bool(mixed or (len(x) > 1 and x.max() - x.min() > WILD_SPREAD))


# --------------------------------------------------------------------------- paired comparisons
def paired(a, b) -> dict:
    """Arm a against arm b over the same seeds (``a[i]`` and ``b[i]`` share a seed; pairs with a NaN are
    left out): n, mean difference a − b with its t interval, paired t-test and Wilcoxon p-values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    out = {"n": n, "mean_diff": math.nan, "sd_diff": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "p_t": math.nan, "p_wilcoxon": math.nan}
    if n == 0:
        return out
    out["mean_diff"] = float(d.mean())
    if n < 2:
        return out
    ci = mean_ci(d)
    out.update(sd_diff=float(d.std(ddof=1)), ci_low=ci.low, ci_high=ci.high)
    if np.all(d == d[0]):  # no spread: the t statistic is 0/0 or ±inf
        out["p_t"] = 1.0 if d[0] == 0 else 0.0
    else:
        out["p_t"] = float(sps.ttest_rel(a[keep], b[keep]).pvalue)
    if np.all(d == 0):
        out["p_wilcoxon"] = 1.0
    else:
        with warnings.catch_warnings():  # "exact p-value with ties": scipy then falls back, as documented
            warnings.simplefilter("ignore")
            out["p_wilcoxon"] = float(sps.wilcoxon(a[keep], b[keep]).pvalue)
    return out


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of the p-values of one family (NaN stays NaN, and is not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def power_paired_t(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test with ``n`` pairs when the true mean difference is ``effect``
    standard deviations of the differences."""
    df = n - 1
    critical = sps.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * math.sqrt(n)
    power = float(sps.nct.sf(critical, df, nc) + sps.nct.cdf(-critical, df, nc))
    if not math.isfinite(power):  # scipy's noncentral t fails far in the tail: the normal limit is exact there
        power = float(sps.norm.sf(critical - nc) + sps.norm.cdf(-critical - nc))
    return power


def seeds_needed(mean_diff: float, sd_diff: float, power: float = POWER, alpha: float = ALPHA,
                 limit: int = 100_000) -> float:
    """The fewest seeds with which a paired t-test detects a true difference of ``mean_diff`` (differences
    spread by ``sd_diff``) with probability ``power``; inf when there is no difference or beyond ``limit``."""
    if not (mean_diff and sd_diff > 0) or not math.isfinite(mean_diff / sd_diff):
        return math.inf
    effect = mean_diff / sd_diff
    if power_paired_t(effect, limit, alpha) < power:
        return math.inf
    low, high = 2, limit  # power grows with n: bisect for the first n that reaches it
    while low < high:
        mid = (low + high) // 2
        if power_paired_t(effect, mid, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return low


def verdict(arm_a: str, arm_b: str, result: dict, p_holm: float, unit: float = 100, alpha: float = ALPHA,
            n_pairs: int = 1) -> str:
    """One sentence for a pair: ``gelu > relu by 0.21 points, p_Holm = 0.003`` or why it is not separable.
    ``result`` is ``paired``'s, on accuracies in [0, 1] (``unit`` turns them into points). The seeds a
    difference needs are counted at α/n_pairs, the level Holm's correction may demand of a pair among
    ``n_pairs``, so that "needs about N seeds" never names fewer seeds than were run."""
    n, diff = result["n"], result["mean_diff"]
    if n < 2:
        return f"not comparable: {n} seed(s) where both finished"
    if p_holm < alpha:
        better, worse = (arm_a, arm_b) if diff > 0 else (arm_b, arm_a)
        return f"{better} > {worse} by {abs(diff) * unit:.2f} points, p_Holm = {p_holm:.2g}"
    if result["sd_diff"] == 0 and diff == 0:
        return f"not separable with {n} seeds: identical on every seed"
    needed = max(seeds_needed(diff, result["sd_diff"], alpha=alpha / n_pairs), n + 1)
    size = f"a difference of this size ({abs(diff) * unit:.2f} points)"
    if math.isinf(needed):
        return f"not separable with {n} seeds: {size} needs more than 100,000 seeds"
    return f"not separable with {n} seeds: {size} needs about {needed} seeds"


def compare_arms(values: pd.DataFrame, group: str, metric: str = "test_acc") -> pd.DataFrame:
    """Every pair of arms of one group, compared per seed; ``values``: one row per seed, one column per arm
    (NaN for a diverged run). Each pair is oriented so that arm_a has the higher mean; differences and their
    interval are in percentage points; p_holm is Holm-adjusted over the group's pairs."""
    rows = []
    for a, b in itertools.combinations(values.columns, 2):
        r = paired(values[a], values[b])
        if r["mean_diff"] < 0:
            a, b = b, a
            r = paired(values[a], values[b])
        rows.append({"group": group, "arm_a": a, "arm_b": b, "metric": metric, **r})
    df = pd.DataFrame(rows, columns=COMPARISON_COLUMNS[:-2] + ["sd_diff"])
    if not len(df):
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    df["p_holm"] = holm(df["p_t"])
    df["verdict"] = [verdict(r["arm_a"], r["arm_b"], r, r["p_holm"], n_pairs=len(df)) for r in df.to_dict("records")]
    for column in ("mean_diff", "ci_low", "ci_high"):
        df[column] = df[column] * 100
    return df[COMPARISON_COLUMNS].sort_values(["p_holm", "mean_diff"], ascending=[True, False],
                                              kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- time to result
def time_to_target(epochs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run (``key``): the first epoch whose validation accuracy reaches ``target`` and the training
    seconds until then; NaN for a run that never reaches it ("not reached")."""
    rows = []
    for key, run in epochs.sort_values(["key", "epoch"]).groupby("key", sort=False):
        seconds = run["epoch_time_s"].cumsum().to_numpy()
        hit = np.flatnonzero(run["val_acc"].to_numpy(dtype=float) >= target)
        rows.append({"key": key, "epoch": float(run["epoch"].iloc[hit[0]]) if len(hit) else math.nan,
                     "seconds": float(seconds[hit[0]]) if len(hit) else math.nan})
    return pd.DataFrame(rows, columns=["key", "epoch", "seconds"])
