"""Pictures of a function with optimizer paths: a PNG (matplotlib, Agg) and an HTML page (plotly).

Both show the same three panels: the 3-D surface with each path lying on it, the contour map
with the paths, the start point and the known minima (or the valley floor) marked, and each
optimizer's loss f against its step. Points of a
path outside the plot bounds (or non-finite, when an optimizer diverges) are left out of the
drawing, so one runaway path cannot squash the picture; the summary table still reports them.
The HTML pages share one plotly.min.js written beside them, so they open without a network.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from optlab.landscape.functions import TestFunction  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
VALLEY = "#ff00ff"


def grid(fn: TestFunction, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X, Y, Z arrays of shape (n, n) over fn.bounds (float64)."""
    (x0, x1), (y0, y1) = fn.bounds
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = fn(torch.stack([X, Y], dim=-1))
    return X.numpy(), Y.numpy(), Z.numpy()


def visible(fn: TestFunction, path: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, f(x, y) of a path as float64 arrays, with points outside the bounds set to nan."""
    p = path.detach().to("cpu", torch.float64)
    with torch.no_grad():
        z = fn(p)
    (x0, x1), (y0, y1) = fn.bounds
    inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1) & torch.isfinite(z)
    p, z = p.clone(), z.clone()
    p[~inside] = float("nan")
    z[~inside] = float("nan")
    return p[:, 0].numpy(), p[:, 1].numpy(), z.numpy()


def _levels(fn: TestFunction, Z: np.ndarray) -> np.ndarray:
    if fn.log_levels:
        lo, hi = Z.min(), Z.max()
        return np.logspace(np.log10(lo), np.log10(hi), 25)
    return np.linspace(Z.min(), Z.max(), 30)


def _width(i: int, n: int) -> float:
    """Earlier paths drawn wider, so a path that later ones retrace (Adam under AdamW) stays visible."""
    return 1.0 + 1.6 * (n - 1 - i) / max(n - 1, 1)


def values(fn: TestFunction, path: torch.Tensor) -> np.ndarray:
    """f at every point of a path (the loss the optimizer saw, step by step)."""
    with torch.no_grad():
        return fn(path.to(torch.float64)).numpy()


def _labels(paths: dict[str, torch.Tensor], labels: dict[str, str] | None) -> dict[str, str]:
    return {name: (labels or {}).get(name, name) for name in paths}


def write_png(
    fn: TestFunction, paths: dict[str, torch.Tensor], file: str | Path, labels: dict[str, str] | None = None, start=None
) -> Path:
    """Surface and contour side by side, one color per optimizer; returns the file written."""
    file = Path(file)
    labels = _labels(paths, labels)
    start = fn.start if start is None else tuple(float(v) for v in start)
    X, Y, Z = grid(fn, 120)
    fig = plt.figure(figsize=(20, 6))
    ax3 = fig.add_subplot(1, 3, 1, projection="3d")
    ax2 = fig.add_subplot(1, 3, 2)
    axf = fig.add_subplot(1, 3, 3)
    surf_z = np.log10(Z) if fn.log_levels else Z
    ax3.plot_surface(X, Y, surf_z, cmap="viridis", alpha=0.55, linewidth=0, antialiased=True, rcount=100, ccount=100)
    norm = LogNorm(vmin=Z.min(), vmax=Z.max()) if fn.log_levels else None
    ax2.contourf(X, Y, Z, levels=_levels(fn, Z), cmap="viridis", norm=norm, alpha=0.85)
    ax2.contour(X, Y, Z, levels=_levels(fn, Z), colors="k", linewidths=0.3, alpha=0.5, norm=norm)
    for i, (name, path) in enumerate(paths.items()):
        color, lw = COLORS[i % len(COLORS)], _width(i, len(paths))
        x, y, z = visible(fn, path)
        z = np.log10(z) if fn.log_levels else z
        ax3.plot(x, y, z, color=color, lw=lw, marker=".", ms=2, label=labels[name], zorder=10)
        ax2.plot(x, y, color=color, lw=lw, marker=".", ms=lw + 1, label=labels[name], zorder=4)
        ax2.plot(x[-1:], y[-1:], marker="X", ms=10, color=color, mec="k", ls="none", zorder=6)  # end (nan if outside)
        axf.plot(np.arange(len(path)), values(fn, path), color=color, lw=lw, label=labels[name])
    ax2.plot(*start, marker="o", ms=11, color="white", mec="k", ls="none", label="start", zorder=3)
    if fn.minima:
        mx, my = zip(*fn.minima)
        ax2.plot(mx, my, marker="*", ms=16, color="gold", mec="k", ls="none", label="minimum", zorder=5)
        with torch.no_grad():
            mz = fn(torch.tensor(fn.minima, dtype=torch.float64)).numpy()
        ax3.scatter(mx, my, np.log10(mz) if fn.log_levels else mz, marker="*", s=150, color="gold", edgecolors="k")
    if fn.valley is not None:
        (vx0, vy0), (vx1, vy1) = fn.valley
        ax2.plot(
            [vx0, vx1], [vy0, vy1], color=VALLEY, ls="--", lw=1.5, zorder=3, label="valley floor (min at infinity)"
        )
    (x0, x1), (y0, y1) = fn.bounds
    ax2.set(
        xlim=(x0, x1),
        ylim=(y0, y1),
        xlabel="x",
        ylabel="y",
        title="contour" + (" (log levels)" if fn.log_levels else ""),
    )
    ax3.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y", zlabel="log10 f" if fn.log_levels else "f")
    ax3.view_init(elev=35, azim=-60)
    axf.set(xlabel="step", ylabel="f(x, y)", title="loss against step", yscale="log" if fn.log_levels else "linear")
    axf.legend(loc="best", fontsize=8, framealpha=0.85)
    ax2.legend(loc="best", fontsize=8, framealpha=0.85, title="X = end point", title_fontsize=8)
    fig.suptitle(fn.title or fn.name)
    fig.tight_layout()
    fig.savefig(file, dpi=100)
    plt.close(fig)
    return file


def write_html(
    fn: TestFunction, paths: dict[str, torch.Tensor], file: str | Path, labels: dict[str, str] | None = None, start=None
) -> Path:
    """Interactive surface, contour and loss against step; path coordinates stored as plain numbers."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    file = Path(file)
    labels = _labels(paths, labels)
    start = fn.start if start is None else tuple(float(v) for v in start)
    X, Y, Z = grid(fn, 100)
    zlabel = "log10 f" if fn.log_levels else "f"
    surf_z = np.log10(Z) if fn.log_levels else Z
    fig = make_subplots(
        rows=1,
        cols=3,
        specs=[[{"type": "scene"}, {"type": "xy"}, {"type": "xy"}]],
        subplot_titles=("surface", "contour" + (" (log10 f)" if fn.log_levels else ""), "loss against step"),
    )
    fig.add_trace(
        go.Surface(x=X[0], y=Y[:, 0], z=surf_z, colorscale="Viridis", opacity=0.8, showscale=False, name=zlabel),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Contour(
            x=X[0],
            y=Y[:, 0],
            z=surf_z,
            colorscale="Viridis",
            ncontours=30,
            showscale=False,
            contours=dict(coloring="heatmap"),
            name=zlabel,
        ),
        row=1,
        col=2,
    )
    for i, (name, path) in enumerate(paths.items()):
        color, lw = COLORS[i % len(COLORS)], _width(i, len(paths))
        x, y, z = visible(fn, path)
        z = np.log10(z) if fn.log_levels else z
        # lists, not arrays: plotly would pack arrays as base64; plain numbers keep the page greppable
        xs, ys, zs = ([None if np.isnan(v) else float(v) for v in a] for a in (x, y, z))
        hover = dict(
            customdata=list(range(len(xs))),
            hovertemplate=f"{labels[name]}<br>step %{{customdata}}<br>x=%{{x:.5g}}, y=%{{y:.5g}}<extra></extra>",
        )
        fig.add_trace(
            go.Scatter3d(
                x=xs,
                y=ys,
                z=zs,
                mode="lines+markers",
                name=labels[name],
                legendgroup=name,
                line=dict(color=color, width=2 * lw),
                marker=dict(size=2, color=color),
                **hover,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=labels[name],
                legendgroup=name,
                showlegend=False,
                line=dict(color=color, width=lw),
                marker=dict(size=lw + 2),
                **hover,
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=list(range(len(path))),
                y=[None if not np.isfinite(v) else float(v) for v in values(fn, path)],
                mode="lines",
                name=labels[name],
                legendgroup=name,
                showlegend=False,
                line=dict(color=color, width=lw),
            ),
            row=1,
            col=3,
        )
    fig.add_trace(
        go.Scatter(
            x=[start[0]],
            y=[start[1]],
            mode="markers",
            name="start",
            marker=dict(size=12, color="white", line=dict(color="black", width=2)),
        ),
        row=1,
        col=2,
    )
    if fn.minima:
        mx, my = (list(v) for v in zip(*fn.minima))
        with torch.no_grad():
            mz = fn(torch.tensor(fn.minima, dtype=torch.float64)).numpy()
        mz = (np.log10(mz) if fn.log_levels else mz).tolist()
        fig.add_trace(
            go.Scatter(
                x=mx,
                y=my,
                mode="markers",
                name="minimum",
                legendgroup="minimum",
                marker=dict(symbol="star", size=16, color="gold", line=dict(color="black", width=1)),
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter3d(
                x=mx,
                y=my,
                z=mz,
                mode="markers",
                name="minimum",
                legendgroup="minimum",
                showlegend=False,
                marker=dict(symbol="diamond", size=6, color="gold"),
            ),
            row=1,
            col=1,
        )
    if fn.valley is not None:
        (vx0, vy0), (vx1, vy1) = fn.valley
        fig.add_trace(
            go.Scatter(
                x=[vx0, vx1],
                y=[vy0, vy1],
                mode="lines",
                name="valley floor (min at infinity)",
                line=dict(color=VALLEY, dash="dash"),
            ),
            row=1,
            col=2,
        )
    (x0, x1), (y0, y1) = fn.bounds
    fig.update_xaxes(range=[x0, x1], title_text="x", row=1, col=2)
    fig.update_yaxes(range=[y0, y1], title_text="y", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    fig.update_yaxes(title_text="f(x, y)", type="log" if fn.log_levels else "linear", row=1, col=3)
    fig.update_layout(
        title=fn.title or fn.name,
        height=650,
        width=1900,
        scene=dict(
            xaxis=dict(title="x", range=[x0, x1]), yaxis=dict(title="y", range=[y0, y1]), zaxis=dict(title=zlabel)
        ),
    )
    # one plotly.min.js beside the pages (copied there by plotly), not 4.6 MB inside each; offline still
    fig.write_html(file, include_plotlyjs="directory", full_html=True)
    return file
