"""A comparison analysis: the final loss of models of several sizes trained on several amounts of
data, fitted to a power law in parameters N and examples D (Hoffmann et al. 2022's form):

    L(N, D) = E + A / N^alpha + B / D^beta

fitted by least squares on every seed's final loss (or, with `best`, its lowest validation loss); 95% intervals of the exponents by a bootstrap
that resamples the seeds within each (N, D) cell and fits again. N is the trainable parameter count
a run recorded (fit.json), D the candidate's value of `data_key` (e.g. data.num_samples).
Configured in a comparison as `analyses: [{_target_: optlab.compare.scaling.power_law, ...}]`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

NAMES = ("E", "A", "alpha", "B", "beta")


def _law(nd, e, a, alpha, b, beta):
    n, d = nd
    return e + a * n ** (-alpha) + b * d ** (-beta)


def fit(n, d, loss, start: np.ndarray | None = None) -> np.ndarray:
    """(E, A, alpha, B, beta) of the least-squares fit (N and D rescaled by their geometric means);
    `start`: a previous fit's parameters to start from (a bootstrap refit converges in a few steps)."""
    from scipy.optimize import curve_fit

    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    n0, d0 = math.exp(np.mean(np.log(n))), math.exp(np.mean(np.log(d)))
    if start is None:
        p0 = (max(loss.min() * 0.5, 1e-6), loss.mean() * 0.5, 0.5, loss.mean() * 0.5, 0.5)
    else:
        e, a, alpha, b, beta = start
        p0 = (e, a / n0**alpha, alpha, b / d0**beta, beta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params, _ = curve_fit(_law, (n / n0, d / d0), loss, p0=p0, bounds=([0.0] * 5, [np.inf] * 5), maxfev=20000)
    e, a, alpha, b, beta = params
    return np.array([e, a * n0**alpha, alpha, b * d0**beta, beta])  # back to the units of N and D


def _final(run, metric: str, best: bool) -> float:
    """The run's final value of `metric`, or with `best` its lowest validation (early stopping's)."""
    if not best:
        return run.metrics.get(metric, math.nan)
    values = [row["metrics"].get(metric, math.nan) for row in run.curve]
    return min((v for v in values if math.isfinite(v)), default=math.nan)


def _points(p, entries, data_key: str, metric: str, best: bool) -> list[tuple[float, float, list[float]]]:
    """(N, D, losses over seeds) per candidate with finished runs."""
    by_name = {c.name: c for c in p.candidates}
    cells = []
    for entry in entries:
        overrides = dict(o.split("=", 1) for o in by_name[entry.candidate].overrides)
        runs = [r for r in entry.runs if r.status == "ok" and r.fit and math.isfinite(_final(r, metric, best))]
        if data_key not in overrides or not runs:
            continue
        cells.append(
            (float(runs[0].fit["params"]), float(overrides[data_key]), [_final(r, metric, best) for r in runs])
        )
    return cells


def power_law(
    p,
    by_task,
    out,
    data_key: str = "data.num_samples",
    metric: str | None = None,
    best: bool = False,
    resamples: int = 300,
    level: float = 0.95,
    seed: int = 0,
) -> list:
    """`best`: fit each run's lowest validation value of `metric` (its curve), not its final one."""
    metric = metric or p.metric
    blocks = []
    for task, entries in by_task:
        cells = _points(p, entries, data_key, metric, best)
        if len({c[0] for c in cells}) < 2 or len({c[1] for c in cells}) < 2:
            blocks.append(("p", f"{task.name}: no power-law fit (it needs at least 2 model sizes and 2 data sizes)"))
            continue
        n = np.array([c[0] for c in cells for _ in c[2]])
        d = np.array([c[1] for c in cells for _ in c[2]])
        loss = np.array([v for c in cells for v in c[2]])
        fitted = fit(n, d, loss)
        rng, boots = np.random.default_rng(seed), []
        if max(len(c[2]) for c in cells) < 2:
            resamples = 0  # one seed per cell: nothing to resample, so no interval
        for _ in range(resamples):
            sample = np.concatenate([rng.choice(c[2], size=len(c[2])) for c in cells])
            try:
                boots.append(fit(n, d, sample, start=fitted))
            except RuntimeError:  # a resample the optimizer cannot fit: left out, and counted
                pass
        boots = np.array(boots)
        tail = (1 - level) / 2
        residual = loss - _law((n, d), *fitted)
        r2 = 1 - np.sum(residual**2) / np.sum((loss - loss.mean()) ** 2)
        rows = []
        for i, name in enumerate(NAMES):
            low, high = np.quantile(boots[:, i], [tail, 1 - tail]) if len(boots) else (math.nan, math.nan)
            rows.append([name, f"{fitted[i]:.4g}", f"[{low:.4g}, {high:.4g}]"])
        seeds = sorted({len(c[2]) for c in cells})
        what = f"lowest {metric} of each run" if best else f"final {metric}"
        blocks += [
            ("h", 2, f"Scaling law on {task.name}: {what} = E + A/N^alpha + B/D^beta"),
            (
                "p",
                (
                    f"{len(cells)} (N, D) cells, {'/'.join(map(str, seeds))} seeds each, {len(loss)} runs; "
                    f"N = trainable parameters, D = {data_key}; R^2 = {r2:.3f}; "
                    + (
                        f"{level:.0%} intervals from {len(boots)}/{resamples} bootstrap refits (seeds "
                        "resampled within each cell)"
                        if resamples
                        else "no intervals (one seed per cell)"
                    )
                ),
            ),
            ("table", ["parameter", "fit", f"{level:.0%} CI"], rows),
        ]
        path = _plot(cells, fitted, what, data_key, out / f"{task.name}_scaling_law.png", task.name)
        blocks.append(("img", path.name, f"{task.name} scaling law"))
    return blocks


def _plot(cells, params, what: str, data_key: str, path, title: str):
    from matplotlib.ticker import NullFormatter

    from optlab.compare.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for d in sorted({c[1] for c in cells}):
        pts = sorted((c[0], float(np.mean(c[2])), float(np.std(c[2]))) for c in cells if c[1] == d)
        x, y, err = (np.array(v) for v in zip(*pts))
        (line,) = ax.plot(x, y, "o", label=f"{data_key}={d:g}")
        ax.errorbar(x, y, yerr=err, fmt="none", color=line.get_color())
        grid = np.geomspace(x.min(), x.max(), 50)
        ax.plot(grid, _law((grid, np.full_like(grid, d)), *params), "-", color=line.get_color(), alpha=0.7)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="trainable parameters N",
        ylabel=what,
        title=f"{title}: power-law fit (lines) and mean ± sd over seeds",
    )
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    return _save(fig, path)
