"""The statistics a comparison reports: how good each candidate is, by how much one beats
another, and how sure we are, from a handful of seeds.

- `mean_ci`: the mean over seeds with a bootstrap interval. The plain percentile bootstrap is too
  narrow with few seeds, so its percentiles are widened by Student's t ("expanded percentile",
  Hesterberg 2015). Measured coverage of a 95% interval, 1000 simulations each
  (benchmarks/bootstrap_coverage.py, docs/benchmarks.md): normal data 0.74 at 3 seeds (no
  bootstrap can do better: it never leaves the data's range), 0.91 at 5 (plain percentile 0.83),
  0.94 at 10 (plain 0.89); skewed (lognormal) data 0.81 at 5, 0.85 at 10.
  Hence the default of 5 seeds as the least for an interval; tests/test_compare_stats.py checks it.
- `welch`: the difference of means, Welch's t-test (unequal variances) and its two-sided p.
- `permutation_p`: the same question without a normality assumption (exact for small samples).
- `smallest_p` / `why_no_winner_is_possible`: the least p a permutation test can give with these
  seeds; with k pairs under Holm a winner needs k x that below alpha, and the protocol says so
  before it runs (5 seeds a side: 2/252, so 2 pairs at most at 0.01).
- `verdict`: "A better" / "B better" only when the test says so at the stated level; otherwise
  "no difference shown", which is a result, not a failure.
- `time_to_target`: the first evaluation at or past a target (examples, steps, seconds), inf when
  never reached.
- `performance_profile` / `profile_score`: AlgoPerf's summary over several tasks: for each
  candidate, the share of tasks it reaches the target within tau times the best candidate's
  time, and the area under that curve for tau in [1, tau_max] over (tau_max - 1), in [0, 1].
Every function states its level and the number of seeds it rests on in what it returns.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval at `level`, resting on `n` values; `mean` holds the median for
    `median_ci`."""

    mean: float
    low: float
    high: float
    level: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}] ({self.level:.0%} CI, n={self.n})"


def _values(values) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"expected finite numbers, got {list(values)}")
    return x


def mean_ci(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Mean with an expanded-percentile bootstrap interval at `level` (n=1: the interval is the point)."""
    from scipy.stats import norm, t

    x = _values(values)
    n, mean = len(x), float(np.mean(x))
    if n < 2 or np.ptp(x) == 0:
        return Interval(mean, mean, mean, level, n)
    # Percentiles at Phi(sqrt(n/(n-1)) * t_{n-1}) instead of (1 -+ level)/2.
    tail = norm.cdf(math.sqrt(n / (n - 1)) * t.ppf((1 - level) / 2, n - 1))
    means = np.random.default_rng(seed).choice(x, size=(resamples, n), replace=True).mean(axis=1)
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(mean, float(low), float(high), level, n)


def median_ci(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Median with a percentile-bootstrap interval at `level`; values may be inf (a target never
    reached), so no interpolation between resampled medians. Rough with few seeds: read n."""
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or len(x) == 0 or np.any(np.isnan(x)):
        raise ValueError(f"expected numbers or inf, got {list(values)}")
    median = float(np.median(x))
    if len(x) < 2 or np.all(x == x[0]):
        return Interval(median, median, median, level, len(x))
    medians = np.sort(np.median(np.random.default_rng(seed).choice(x, size=(resamples, len(x))), axis=1))
    low = medians[int(np.floor((1 - level) / 2 * (resamples - 1)))]
    high = medians[int(np.ceil((1 + level) / 2 * (resamples - 1)))]
    return Interval(median, float(low), float(high), level, len(x))


@dataclass(frozen=True)
class Test:
    """A two-sided test of two samples (`welch` or `permutation_p`), with the sizes its p rests on."""

    difference: float  # mean(a) - mean(b)
    p: float
    method: str
    n_a: int
    n_b: int


def welch(a, b) -> Test:
    """Welch's two-sided t-test of mean(a) == mean(b); p is 1.0 when both samples are constant and equal."""
    from scipy.stats import t

    x, y = _values(a), _values(b)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("Welch's test needs at least 2 seeds per candidate")
    diff = float(np.mean(x) - np.mean(y))
    vx, vy = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
    if vx + vy == 0:
        return Test(diff, 1.0 if diff == 0 else 0.0, "welch", len(x), len(y))
    stat = diff / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return Test(diff, float(2 * t.sf(abs(stat), df)), "welch", len(x), len(y))


def permutation_p(a, b, resamples: int = 20_000, seed: int = 0) -> Test:
    """Two-sided permutation test of the difference of means: every split when there are at most
    `resamples` of them (exact), else that many random ones (p counts the observed split too)."""
    x, y = _values(a), _values(b)
    pooled, n = np.concatenate([x, y]), len(x)
    observed = abs(np.mean(x) - np.mean(y))
    total = math.comb(len(pooled), n)
    if total <= resamples:
        chosen = np.array(list(itertools.combinations(range(len(pooled)), n)))
        splits = np.zeros((total, len(pooled)), dtype=bool)
        np.put_along_axis(splits, chosen, True, axis=1)
    else:
        rng = np.random.default_rng(seed)
        splits = np.zeros((resamples, len(pooled)), dtype=bool)
        for row in splits:
            row[rng.choice(len(pooled), n, replace=False)] = True
    diffs = np.abs((splits @ pooled) / n - ((~splits) @ pooled) / (len(pooled) - n))
    extreme = np.sum(diffs >= observed - 1e-12 * max(1.0, abs(observed)))
    p = extreme / total if total <= resamples else (extreme + 1) / (resamples + 1)
    return Test(float(np.mean(x) - np.mean(y)), float(p), "permutation", len(x), len(y))


def smallest_p(n_a: int, n_b: int, resamples: int = 20_000) -> float:
    """The least two-sided p `permutation_p` can return for samples of these sizes: the observed
    split alone (and its mirror, with equal sizes) as extreme, of every split or of `resamples`."""
    total = math.comb(n_a + n_b, n_a)
    return (2 if n_a == n_b else 1) / total if total <= resamples else 1 / (resamples + 1)


def why_no_winner_is_possible(n: int, pairs: int, alpha: float, test: str, correction: str) -> str | None:
    """Why no pair can be declared a winner with `n` seeds a candidate, or None when one can."""
    if test != "permutation" or n < 2 or pairs < 1:
        return None
    k = pairs if correction == "holm" else 1
    if k * smallest_p(n, n) < alpha:
        return None
    need = next(m for m in itertools.count(n + 1) if k * smallest_p(m, m) < alpha)
    family = f" x {pairs} pairs (Holm) = {k * smallest_p(n, n):.3g}" if k > 1 else ""
    return (
        f"no winner can be declared: with {n} seeds a candidate the smallest permutation p is "
        f"{smallest_p(n, n):.3g}{family}, not below alpha={alpha:g}; {need} seeds would make one possible"
        + (", or fewer pairs (pairs=<baseline> or [[A, B], ...])" if k > 1 else "")
    )


def holm(ps: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values of a family of tests (same order as given): controls the
    chance of any false winner among them at alpha, where raw p-values control it per pair."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def verdict(test: Test, alpha: float = 0.01, higher_is_better: bool = True, names=("A", "B")) -> str:
    """Who is better at level alpha, or "no difference shown"."""
    if test.p >= alpha or test.difference == 0:
        return f"no difference shown (p={test.p:.3g} >= {alpha:g})"
    a_wins = (test.difference > 0) == higher_is_better
    return f"{names[0] if a_wins else names[1]} better (p={test.p:.3g} < {alpha:g})"


@dataclass(frozen=True)
class Reached:
    """Where a run first met its target (`time_to_target`): examples seen, step and seconds; inf in all
    three (`NEVER`) when it never did."""

    examples: float
    steps: float
    seconds: float


NEVER = Reached(math.inf, math.inf, math.inf)


def time_to_target(evaluations, target: float, higher_is_better: bool = True) -> Reached:
    """`evaluations`: (examples_seen, step, seconds, value) in training order; the first one at or
    past the target, or NEVER."""
    for examples, step, seconds, value in evaluations:
        if value is not None and math.isfinite(value) and (value >= target if higher_is_better else value <= target):
            return Reached(float(examples), float(step), float(seconds))
    return NEVER


def _ratios(times: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Each candidate's time on each task over the best candidate's time on it (inf: never)."""
    tasks = sorted({task for per_task in times.values() for task in per_task})
    ratios = {c: [] for c in times}
    for task in tasks:
        best = min(times[c].get(task, math.inf) for c in times)
        for c in times:
            t = times[c].get(task, math.inf)
            ratios[c].append(t / best if math.isfinite(t) else math.inf)
    return ratios


def performance_profile(times: dict[str, dict[str, float]], taus) -> dict[str, list[float]]:
    """`times[candidate][task]`: time to target (inf: never). rho(tau) per candidate at each tau."""
    return {c: [sum(r <= tau for r in rs) / len(rs) for tau in taus] for c, rs in _ratios(times).items()}


def profile_score(times: dict[str, dict[str, float]], tau_max: float = 4.0) -> dict[str, float]:
    """The area under each candidate's performance profile on [1, tau_max], normalized to [0, 1]
    (exact: the profile is a step function); 1 = fastest on every task, 0 = never within tau_max."""
    return {c: sum(max(tau_max - r, 0.0) for r in rs) / (len(rs) * (tau_max - 1)) for c, rs in _ratios(times).items()}
