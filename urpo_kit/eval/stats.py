"""Uncertainty of the accuracies we report: a small held-out set (32 or 128 rows) moves by several points between two
runs by chance alone, so every accuracy carries a 95% interval and every before -> after change a paired one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Change", "interval", "paired_bootstrap"]

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def interval(scores: Sequence[float]) -> tuple[float, float]:
    """The 95% Wilson score interval of a mean accuracy over rows whose scores lie in [0, 1].

    Wilson rather than the normal approximation because it stays inside [0, 1] and keeps its coverage at small n and
    at rates near 0 or 1, which is where our held-out sets live. p is the mean score and n the number of rows, so
    fractional scores (a tie scoring 0.5, an unparseable judgment 1/N) count as fractional successes.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("an interval needs at least one row")
    p = sum(scores) / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Change:
    """after - before over `n` rows matched by key, with its 95% paired bootstrap interval [lo, hi]."""

    diff: float
    lo: float
    hi: float
    n: int

    @property
    def bracket(self) -> str:
        return f"[{self.lo:+.3f}, {self.hi:+.3f}]"

    def __str__(self) -> str:
        return f"{self.diff:+.3f} {self.bracket}"


def paired_bootstrap(before: Mapping[str, float], after: Mapping[str, float], *, seed: int = 0,
                     resamples: int = 2000) -> Change | None:
    """The mean per-row difference after - before over the keys present in both, with a 95% percentile bootstrap
    interval that resamples rows with replacement; None with fewer than 2 shared rows.

    Pairing matters: the same rows are scored before and after, so row difficulty cancels and the interval is much
    narrower than two independent intervals would suggest. Keys are sorted and the RandomState seeded, so the same
    scores always give the same interval.
    """
    keys = sorted(before.keys() & after.keys())
    if len(keys) < 2:
        return None
    diffs = np.array([after[k] - before[k] for k in keys], dtype=float)
    rng = np.random.RandomState(seed)
    means = [diffs[rng.randint(0, len(diffs), len(diffs))].mean() for _ in range(resamples)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Change(float(diffs.mean()), float(lo), float(hi), len(keys))
