"""Means with 95% confidence intervals over seeds, by Student's t (no scipy needed).

The interval is mean ± t₀.₉₇₅(n − 1) · s / √n, with s the sample standard
deviation; the t quantiles come from a table (exact to 3 decimals), which is all a
study with a handful of seeds needs. Beyond 120 degrees of freedom the normal
quantile 1.960 is used.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# two-sided 95%: t quantile 0.975 by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
Z975 = 1.960


def t_quantile_975(df: int) -> float:
    """t₀.₉₇₅ with ``df`` degrees of freedom; between table entries, the next smaller df's (conservative)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df > 120:
        return Z975
    return T975[max(d for d in T975 if d <= df)]


class MeanCI(NamedTuple):
    mean: float
    half_width: float  # NaN with fewer than two values
    n: int

    def format(self, spec: str = ".4f") -> str:
        """``0.9712 ± 0.0015`` (``spec=".2%"``: ``97.12% ± 0.15%``); ``(n=1)`` when there is no interval."""
        if self.n == 0:
            return "–"
        if math.isnan(self.half_width):
            return f"{self.mean:{spec}} (n=1)"
        return f"{self.mean:{spec}} ± {self.half_width:{spec}}"

    def __str__(self) -> str:
        return self.format()


def mean_ci(values) -> MeanCI:
    """Mean and 95% CI half-width of the finite values (NaN — a diverged run's metric — is left out)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return MeanCI(math.nan, math.nan, 0)
    if len(x) == 1:
        return MeanCI(float(x[0]), math.nan, 1)
    return MeanCI(float(x.mean()), t_quantile_975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x)), len(x))
