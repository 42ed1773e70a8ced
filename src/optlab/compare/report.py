"""The comparison's report: `report.md`, a self-contained `report.html` (pictures inline, works
offline) and the PNGs beside them, all from optlab.compare.results (so `report=only` redraws it).

Per task: each candidate's final metric (mean, 95% bootstrap CI, n seeds), its test accuracy, the
best value tuning saw against the re-runs' mean (the optimizer's curse), examples / steps /
seconds to the target (median, 95% CI, how many seeds reached it), the tuned hyperparameters and
the optimizer's state per parameter; then every pair of candidates: the difference and a test at
the stated level, "no difference shown" when it is not significant. Several tasks add AlgoPerf's
performance profiles and score (time = median seconds to target).
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from pathlib import Path

from optlab.compare import plots, stats, workers
from optlab.compare.results import collect

TEST_METRIC = "test/acc"


def _num(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    if isinstance(v, float):
        return (
            f"{v:.{digits}g}"
            if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)
            else f"{v:.{digits}f}".rstrip("0").rstrip(".")
        )
    return str(v)


def _interval(values) -> str:
    if not values:
        return "-"
    ci = stats.mean_ci(values)
    return f"{_num(ci.mean)} [{_num(ci.low)}, {_num(ci.high)}] (n={ci.n})" if ci.n > 1 else f"{_num(ci.mean)} (n=1)"


def _median(values) -> str:
    if not values:
        return "-"
    ci = stats.median_ci(values)
    hits = sum(math.isfinite(v) for v in values)
    return f"{_num(ci.mean)} [{_num(ci.low)}, {_num(ci.high)}] ({hits}/{len(values)})"


def _params(entry) -> str:
    shown = []
    for t in entry.tuning:
        if t.best_params:
            shown.append(" ".join(f"{k.removeprefix('optimizer.')}={_num(v, 3)}" for k, v in t.best_params.items()))
    return "; ".join(shown) or "as given"


def _state(entry) -> str:
    fit = next((r.fit for r in entry.runs if r.fit and r.fit.get("params")), None)
    return _num(fit["state_bytes"] / fit["params"], 3) if fit else "-"


def _curse(entry, metric: str) -> str:
    best = [t.best_value for t in entry.tuning if t.best_value is not None]
    finals = entry.finals(metric)
    if not best or not finals:
        return "-"
    gap = statistics.mean(best) - statistics.mean(finals)
    return f"{_num(statistics.mean(best))} vs {_num(statistics.mean(finals))} ({gap:+.4f})"


def task_blocks(p, task, entries, out: Path) -> list:
    """One task's section as blocks (the tuples `render_md` and `render_html` draw): a row per candidate
    (see the module docstring), the pairwise tests, and the task's pictures, written as PNGs into `out`."""
    metric = p.metric
    rows = []
    for e in entries:
        if e.failure:
            rows.append([e.candidate, f"failed: {e.failure}", "", "", "", "", "", "", ""])
            continue
        reached = e.reached(task.metric, task.value, task.higher_is_better)
        rows.append(
            [
                e.candidate,
                _interval(e.finals(metric)),
                _interval(e.finals(TEST_METRIC)),
                _curse(e, metric),
                _median([r.examples for r in reached]),
                _median([r.steps for r in reached]),
                _median([r.seconds for r in reached]),
                _params(e),
                _state(e),
            ]
        )
    op = ">=" if task.higher_is_better else "<="
    blocks = [
        ("h", 2, f"Task {task.name}: target {task.metric} {op} {task.value:g}"),
        (
            "table",
            [
                "candidate",
                f"{metric} mean [95% CI] (seeds)",
                f"{TEST_METRIC} mean [95% CI]",
                "best of tuning vs re-runs (curse)",
                "examples to target median [95% CI] (reached)",
                "steps to target",
                "seconds to target",
                "tuned hyperparameters",
                "optimizer state bytes/param",
            ],
            rows,
        ),
    ]
    blocks += pairwise_blocks(p, entries)
    for stem, draw in (
        ("curves_examples", lambda f: plots.curves(entries, task, "examples_seen", "examples seen", f)),
        ("curves_time", lambda f: plots.curves(entries, task, "seconds", "wall time (s)", f)),
        ("time_to_target", lambda f: plots.time_to_target(entries, task, f)),
        ("sensitivity", lambda f: plots.sensitivity(entries, task, metric, f)),
    ):
        path = draw(out / f"{task.name}_{stem}.png")
        blocks.append(("img", path.name, f"{task.name} {stem}") if path else ("p", f"{stem}: no data to draw"))
    return blocks


def pairwise_blocks(p, entries) -> list:
    """Every pair of candidates; the verdicts use p-values adjusted over the task's pairs (Holm)
    unless correction=none."""
    import dataclasses

    higher = p.direction == "maximize"
    tested, untested = [], []
    by_name = {e.candidate: e for e in entries}
    for a, b in ((by_name[x], by_name[y]) for x, y in p.tested_pairs() if x in by_name and y in by_name):
        x, y = a.finals(p.metric), b.finals(p.metric)
        if len(x) < 2 or len(y) < 2:
            untested.append(
                [
                    a.candidate,
                    b.candidate,
                    "-",
                    "-",
                    "-",
                    "-",
                    f"not tested (seeds: {len(x)} and {len(y)}; 2 each needed)",
                ]
            )
            continue
        test = stats.permutation_p(x, y) if p.test == "permutation" else stats.welch(x, y)
        other = stats.welch(x, y) if p.test == "permutation" else stats.permutation_p(x, y)
        tested.append((a.candidate, b.candidate, test, other))
    adjusted = stats.holm([t.p for *_, t, _ in tested]) if p.correction == "holm" else [t.p for *_, t, _ in tested]
    rows = [
        [
            a,
            b,
            f"{t.difference:+.4f}",
            f"{t.p:.3g}",
            f"{adj:.3g}",
            f"{o.p:.3g}",
            stats.verdict(dataclasses.replace(t, p=adj), p.alpha, higher, (a, b)),
        ]
        for (a, b, t, o), adj in zip(tested, adjusted)
    ] + untested
    if not rows:
        return []
    other_name = "welch" if p.test == "permutation" else "permutation"
    adjusted_name = f"p Holm ({len(tested)} pairs)" if p.correction == "holm" else "p (not adjusted)"
    seeds = min((len(t.finals(p.metric)) for t in entries), default=0)
    power = stats.why_no_winner_is_possible(seeds, len(tested), p.alpha, p.test, p.correction) if tested else None
    return [
        (
            "h",
            3,
            f"Pairwise: {p.metric}, {p.test} test at level {p.alpha:g} (two-sided) over {_which_pairs(p)}, verdicts on "
            + ("Holm-adjusted p-values" if p.correction == "holm" else "unadjusted p-values"),
        ),
        *([("p", f"With these seeds {power}.")] if power else []),
        ("table", ["A", "B", "mean A - B", f"p ({p.test})", adjusted_name, f"p ({other_name})", "verdict"], rows),
    ]


def _which_pairs(p) -> str:
    return "every pair" if p.pairs is None else f"{len(p.pairs)} planned pairs (pairs=)" if p.pairs else "no pairs"


def profile_blocks(p, entries_by_task, out: Path) -> list:
    if len(entries_by_task) < 2:
        return []
    times: dict[str, dict[str, float]] = {}
    for task, entries in entries_by_task:
        for e in entries:
            seconds = [r.seconds for r in e.reached(task.metric, task.value, task.higher_is_better)]
            times.setdefault(e.candidate, {})[task.name] = stats.median_ci(seconds).mean if seconds else math.inf
    path = plots.profiles(times, out / "performance_profiles.png")
    scores = stats.profile_score(times)
    rows = [[c, *(_num(times[c].get(t.name)) for t, _ in entries_by_task), f"{scores[c]:.3f}"] for c in times]
    return [
        ("h", 2, "Performance profiles (AlgoPerf): median seconds to target per task"),
        ("table", ["candidate", *(t.name for t, _ in entries_by_task), "score (tau_max 4)"], rows),
        *([("img", path.name, "performance profiles")] if path else []),
    ]


def protocol_blocks(p, cells, cost: dict | None) -> list:
    """The report's opening: what was compared and how (overrides, tuning and re-run budgets, statistics),
    what the last invocation that ran runs cost (`cost`), and the command that redraws the report."""
    s = cells[0].settings
    candidates = "; ".join(c.name + " = " + " ".join(c.overrides) for c in p.candidates)
    tasks = "; ".join(t.name + " = " + " ".join(t.overrides) for t in p.tasks)
    lines = [
        f"candidates: {candidates}",
        f"tasks: {tasks}",
        f"training overrides for all: {' '.join([*p.run_defaults, *p.training, *p.training_overrides]) or 'none'}",
        (
            f"tuning: {p.trials} trials per candidate and study, {p.studies} studies (sampler seeds "
            f"{p.tune_seed}..{p.tune_seed + p.studies - 1}), sampler {s.sampler.get('_target_', '-')}, "
            f"pruner {s.pruner.get('_target_', '-')}, {p.direction} {p.metric}"
        ),
        f"re-runs: the best configuration of each study with seeds {p.eval_seeds}, full budget, no pruning",
        (
            f"statistics: 95% expanded-percentile bootstrap CI of the mean over seeds; medians with a percentile "
            f"bootstrap; {p.test} test over {_which_pairs(p)}, winner declared at p < {p.alpha:g}"
            + (" after Holm's adjustment over the tested pairs of a task" if p.correction == "holm" else "")
        ),
    ]
    if cost and "runs_s" in cost:
        from optlab.compare.protocol import cost_line

        lines.append(
            f"protocol cost of the last invocation that ran runs, before drawing this report: {cost_line(cost)}"
        )
    lines.append(f"redraw: python compare.py report=only name={p.name}")
    return [("h", 1, f"Comparison {p.name}"), ("list", lines)]


def write_report(p, cells, cost: dict | None = None) -> Path:
    out = p.dir
    out.mkdir(parents=True, exist_ok=True)
    if cost is None and (out / "cost.json").is_file():
        cost = json.loads((out / "cost.json").read_text())
    entries = collect(p, cells)
    by_task = [(t, [entries[(t.name, c.name)] for c in p.candidates]) for t in p.tasks]
    blocks = protocol_blocks(p, cells, cost)
    for task, task_entries in by_task:
        blocks += task_blocks(p, task, task_entries, out)
    blocks += profile_blocks(p, by_task, out)
    for analysis in p.analyses:  # e.g. optlab.compare.scaling.power_law
        from hydra.utils import get_method

        options = {k: v for k, v in analysis.items() if k != "_target_"}
        blocks += get_method(analysis["_target_"])(p, by_task, out, **options)
    workers.write_text(out / "report.md", render_md(blocks))
    workers.write_text(out / "report.html", render_html(blocks, out, f"comparison {p.name}"))
    print(render_md([b for b in blocks if b[0] in ("h", "table")]), flush=True)
    print(f"[compare] report: {out / 'report.md'} and {out / 'report.html'}", flush=True)
    return out / "report.md"


def render_md(blocks) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, header, rows = block
            lines += [
                "| " + " | ".join(header) + " |",
                "|" + "---|" * len(header),
                *("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows),
                "",
            ]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def render_html(blocks, out: Path, title: str) -> str:
    parts = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode((out / block[1]).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style></head><body>"
        + "".join(parts)
        + "</body></html>"
    )
