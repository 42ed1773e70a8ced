"""The comparison's pictures (matplotlib, PNG): validation curves against examples seen and against
wall time (mean over seeds and the min-max band), time-to-target bars, tuning sensitivity (metric
vs learning rate), and AlgoPerf's performance profiles when there are several tasks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from optlab.compare import stats, workers

GRID = 60  # points of the common x-grid the seeds' curves are interpolated on


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(runs, x_key: str, metric: str):
    """(x, mean, low, high) over the seeds, on a grid within every seed's range; None without data."""
    series = []
    for r in runs:
        pts = [
            (row[x_key], row["metrics"][metric])
            for row in r.curve
            if math.isfinite(row["metrics"].get(metric, math.nan))
        ]
        if pts:
            series.append(np.array(pts, dtype=float))
    if not series:
        return None
    end = min(s[-1, 0] for s in series)
    start = max(s[0, 0] for s in series)
    grid = np.linspace(start, end, GRID) if end > start else np.array([end])
    ys = np.stack([np.interp(grid, s[:, 0], s[:, 1]) for s in series])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def curves(entries, task, x_key: str, xlabel: str, path: Path) -> Path | None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for entry in entries:
        band = _band([r for r in entry.runs if r.status == "ok"], x_key, task.metric)
        if band is None:
            continue
        x, mean, low, high = band
        n = sum(r.status == "ok" for r in entry.runs)
        (line,) = ax.plot(x, mean, label=f"{entry.candidate} (n={n})")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(task.value, color="grey", linestyle="--", linewidth=1, label=f"target {task.value:g}")
    ax.set(xlabel=xlabel, ylabel=task.metric, title=f"{task.name}: {task.metric} (mean, band = min..max over seeds)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def time_to_target(entries, task, path: Path) -> Path | None:
    """One bar per candidate: the median examples its finished re-runs took to reach the task's target, a 95%
    bootstrap interval and how many reached it. A run that never did counts as inf, so a median that is inf
    draws no bar ("median: never"). None when no candidate has a finished re-run."""
    plt = _pyplot()
    names, medians, errs, labels = [], [], [[], []], []
    for entry in entries:
        reached = [r.examples for r in entry.reached(task.metric, task.value, task.higher_is_better)]
        if not reached:
            continue
        ci = stats.median_ci(reached)
        hits = sum(math.isfinite(v) for v in reached)
        names.append(entry.candidate)
        finite = math.isfinite(ci.mean)
        medians.append(ci.mean if finite else 0.0)
        errs[0].append(ci.mean - ci.low if finite else 0.0)
        errs[1].append((ci.high - ci.mean) if finite and math.isfinite(ci.high) else 0.0)
        labels.append(f"{hits}/{len(reached)} reached" + ("" if finite else " (median: never)"))
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.5))
    ax.barh(names, medians, xerr=errs, capsize=4, color="tab:blue", alpha=0.7)
    for i, text in enumerate(labels):
        ax.text(medians[i], i, f"  {text}", va="center", fontsize=8)
    ax.set(
        xlabel=f"examples to {task.metric} {'>=' if task.higher_is_better else '<='} {task.value:g} "
        "(median, 95% bootstrap CI)",
        title=f"{task.name}: time to target",
    )
    return _save(fig, path)


def sensitivity(entries, task, metric: str, path: Path, param: str = "optimizer.lr") -> Path | None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for entry in entries:
        pts = sorted((params[param], value) for t in entry.tuning for params, value in t.trials if param in params)
        if not pts:
            continue
        x, y = zip(*pts)
        ax.plot(x, y, marker="o", linestyle="-", alpha=0.8, label=entry.candidate)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xscale="log", xlabel=param, ylabel=f"{metric} (tuning trials)", title=f"{task.name}: tuning sensitivity")
    ax.legend(fontsize=8)
    return _save(fig, path)


def profiles(times: dict[str, dict[str, float]], path: Path, tau_max: float = 4.0) -> Path | None:
    if len({t for per in times.values() for t in per}) < 2:
        return None
    plt = _pyplot()
    taus = np.linspace(1.0, tau_max, 200)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    scores = stats.profile_score(times, tau_max)
    for cand, rho in stats.performance_profile(times, taus).items():
        ax.step(taus, rho, where="post", label=f"{cand} (score {scores[cand]:.3f})")
    ax.set(
        xlabel="tau (time to target / best candidate's)",
        ylabel="share of tasks",
        ylim=(-0.02, 1.02),
        title="performance profiles (AlgoPerf)",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    workers.replace(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))  # other workers may draw it too
    _pyplot().close(fig)
    return path
