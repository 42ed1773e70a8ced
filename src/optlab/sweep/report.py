"""The end of a sweep: top trials, their re-runs with fresh seeds, and plots.

The best of many noisy trials overstates its value (it was selected *because* its seed was lucky),
so the top `sweep.top_k` configurations are trained again with `sweep.rerun_seeds` new seeds (the
full budget, no pruning, with the test set) and reported as mean +- std. Re-run results are cached
in the study (user attribute `rerun:<trial>:<seed>`), so `report=only` is instant the second time
and an interrupted report resumes where it stopped.

Written to `logs/sweeps/<study>/`: report.md, trials.csv (every trial), report.html (table and
interactive plots; plotly.min.js next to it, so it works offline) and one PNG per plot:
optimization history, parameter importances, parallel coordinates, intermediate values.
"""

from __future__ import annotations

import csv
import html
import logging
import math
import statistics
import warnings
from collections import Counter
from pathlib import Path

from optlab.sweep import study as studies
from optlab.sweep.pruning import EPOCHS

log = logging.getLogger(__name__)
PLOTS = {  # file stem -> optuna.visualization function name
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "intermediate_values": "plot_intermediate_values",
}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} +- {std:.4f} (n={len(values)})"


def _value(v) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def top_trials(study, k: int) -> list:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.direction.name == "MAXIMIZE"
    return sorted(done, key=lambda t: (-t.value if reverse else t.value, t.number))[:k]


def rerun(study, s, trial, seed: int) -> dict:
    """One re-run of a trial's configuration with another seed (cached in the study)."""
    key = f"rerun:{trial.number}:{seed}"
    cached = study.user_attrs.get(key)
    if cached is not None:
        return cached
    run_dir = s.study_dir / f"rerun-{trial.number:04d}-seed{seed}"
    overrides = [*s.training_overrides, *trial.user_attrs.get("overrides", []), f"seed={seed}", "test=true"]
    outcome = s.launch(s.job(overrides, run_dir, f"{s.study_name}-{run_dir.name}"))
    metrics = outcome.get("metrics") or {}
    result = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    if outcome["status"] != "ok":
        result["error"] = outcome.get("reason", outcome["status"])
    study.set_user_attr(key, result)
    print(
        f"[report] re-run of trial {trial.number} with seed={seed}: "
        f"{s.metric}={_value(result.get(s.metric))} test/acc={_value(result.get('test/acc'))} | {run_dir}",
        flush=True,
    )
    return result


def write_csv(study, path: Path, metric: str) -> None:
    """trials.csv: every trial whatever its state, with its params, epochs, seconds, why it was pruned,
    failed or lost, and its run dir."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({p for t in trials for p in t.params})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", metric, *names, "epochs", "wall_s", "reason", "run_dir"])
        for t in trials:
            reason = next(
                (
                    t.user_attrs[k]
                    for k in ("prune_reason", studies.FAIL_REASON, studies.LOST_REASON)
                    if k in t.user_attrs
                ),
                "",
            )
            w.writerow(
                [
                    t.number,
                    studies.state_name(t),
                    "" if t.value is None else t.value,
                    *(t.params.get(n, "") for n in names),
                    t.user_attrs.get(EPOCHS, ""),
                    t.user_attrs.get("wall_s", ""),
                    reason,
                    t.user_attrs.get("run_dir", ""),
                ]
            )


def _figures(study, out: Path) -> tuple[dict, dict]:
    """plotly figures (for the HTML) and PNG files; plots that cannot be drawn are listed with why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    figures, skipped = {}, {}
    for stem, fn in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                figures[stem] = getattr(vis, fn)(study)
                ax = getattr(vis_mpl, fn)(study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
                fig.set_size_inches(9, 5.5)
                fig.tight_layout()
                fig.savefig(out / f"{stem}.png", dpi=110)
                plt.close("all")
            except Exception as e:  # noqa: BLE001 - e.g. importances need >= 2 finished trials that vary
                figures.pop(stem, None)
                skipped[stem] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                plt.close("all")
    return figures, skipped


def _html(
    study, s, table_md_rows: list[list[str]], headers: list[str], figures: dict, skipped: dict, summary: str
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_md_rows)
    parts = [
        f"<h2>{html.escape(t)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=False)
        for t, fig in figures.items()
    ]
    parts += [f"<p><b>{html.escape(t)}</b>: not drawn ({html.escape(why)})</p>" for t, why in skipped.items()]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {html.escape(s.study_name)}</title>"
        "<script src='plotly.min.js'></script>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>sweep {html.escape(s.study_name)}</h1><p>{html.escape(summary)}</p>"
        f"<table><tr>{head}</tr>{body}</table>{''.join(parts)}</body></html>"
    )


def write_report(study, s) -> Path:
    """Train the re-runs of the top `sweep.top_k` trials that the study has not cached yet, then write the
    module docstring's files into `sweep.dir` (returned) and print the top trials."""
    from rich.console import Console
    from rich.table import Table

    out = s.study_dir
    out.mkdir(parents=True, exist_ok=True)
    top = top_trials(study, max(s.top_k, 5))
    reruns = {t.number: [rerun(study, s, t, seed) for seed in s.rerun_seeds] for t in top[: s.top_k]}
    names = sorted({p for t in top for p in t.params})
    headers = ["rank", "trial", f"{s.metric} (search)", f"{s.metric} re-runs", "test/acc re-runs", "epochs", *names]
    rows = []
    for rank, t in enumerate(top, 1):
        runs = reruns.get(t.number, [])
        val = [r[s.metric] for r in runs if isinstance(r.get(s.metric), float) and math.isfinite(r[s.metric])]
        test = [r["test/acc"] for r in runs if isinstance(r.get("test/acc"), float)]
        rows.append(
            [
                str(rank),
                str(t.number),
                f"{t.value:.4f}",
                _mean_std(val) if t.number in reruns else "",
                _mean_std(test) if t.number in reruns else "",
                _value(t.user_attrs.get(EPOCHS)),
                *(_value(t.params.get(n)) for n in names),
            ]
        )
    trials = study.get_trials(deepcopy=False)
    epochs = sum(t.user_attrs.get(EPOCHS) or 0 for t in trials)
    states = Counter(studies.state_name(t) for t in trials)
    summary = (
        f"{len(trials)} trials ({', '.join(f'{n} {k.lower()}' for k, n in sorted(states.items()))}), "
        f"{epochs} training epochs in all; {s.direction} {s.metric}; re-runs: seeds {s.rerun_seeds}, "
        f"full budget, no pruning"
    )
    write_csv(study, out / "trials.csv", s.metric)
    md = [
        f"# Sweep {s.study_name}",
        "",
        summary,
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    figures, skipped = _figures(study, out)
    if figures:
        import plotly.offline

        (out / "plotly.min.js").write_text(plotly.offline.get_plotlyjs())
    md += ["", *(f"![{k}]({k}.png)" for k in figures), *(f"- {k}: not drawn ({why})" for k, why in skipped.items())]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text(_html(study, s, rows, headers, figures, skipped, summary))

    table = Table(
        title=f"sweep {s.study_name}: top trials", title_justify="left", caption=summary, caption_justify="left"
    )
    for h in headers:
        table.add_column(h, justify="left" if h in ("rank", "trial") else "right")
    for r in rows:
        table.add_row(*r)
    console = Console(width=max(Console().width, 160))
    console.print(table)
    console.print(f"report: {out / 'report.html'} (plots: {', '.join(figures) or 'none'})", soft_wrap=True)
    return out
