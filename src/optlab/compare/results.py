"""A comparison's results read back from where the protocol left them (the tuning storage and the
re-runs' folders), so the report can be drawn again at any time (`report=only`)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from optlab import launch
from optlab.compare import curve, stats


@dataclass
class Run:
    """One re-run of a study's best configuration with one seed, read back from its run directory: the
    outcome, its final metrics, its validation curve (curves.jsonl) and fit cost (fit.json, if any)."""

    study: int
    seed: int
    status: str  # launch outcome status, or "missing" (not run yet)
    reason: str | None
    metrics: dict
    curve: list[dict]
    fit: dict | None


@dataclass
class Tuning:
    """One tuning study of a candidate, read back from its Optuna storage; `failure` says why there is no
    best value (not tuned yet, or no trial completed)."""

    study: int
    best_value: float | None
    best_params: dict
    states: dict  # state name -> count
    trials: list[tuple[dict, float]]  # (params, value) of each completed trial
    failure: str | None = None
    best_overrides: list[str] = field(default_factory=list)  # what the re-runs add to the candidate


@dataclass
class Entry:
    """One candidate on one task: every study's tuning and every re-run."""

    task: str
    candidate: str
    tuning: list[Tuning] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def finals(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.runs if r.status == "ok" and _finite(r.metrics.get(metric))]

    def reached(self, metric: str, target: float, higher: bool) -> list[stats.Reached]:
        return [
            stats.time_to_target(
                ((row["examples_seen"], row["step"], row["seconds"], row["metrics"].get(metric)) for row in r.curve),
                target,
                higher,
            )
            for r in self.runs
            if r.status == "ok"
        ]

    @property
    def failure(self) -> str | None:
        """Why this candidate has no result (None when some re-run finished)."""
        if any(r.status == "ok" for r in self.runs):
            return None
        reasons = [t.failure for t in self.tuning if t.failure]
        reasons += [f"{r.status}: {r.reason}" for r in self.runs if r.status not in ("ok", "missing")]
        return Counter(reasons).most_common(1)[0][0] if reasons else "not run yet"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def tuning_of(cell) -> Tuning | None:
    """The cell's study as its storage holds it; None when the cell is not tuned (tune.trials=0 or an empty space)."""
    import optuna

    from optlab.sweep import study as studies

    s = cell.settings
    if not cell.tuned:
        return None
    try:
        study = optuna.load_study(study_name=s.study_name, storage=studies.make_storage(s.storage, existing=True))
    except Exception:  # noqa: BLE001 - no storage file, or no such study in it: not tuned yet
        return Tuning(cell.study, None, {}, {}, [], "not tuned yet")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    states = dict(Counter(studies.state_name(t).lower() for t in trials))
    if not complete:
        reasons = Counter(t.user_attrs.get(studies.FAIL_REASON) or studies.state_name(t).lower() for t in trials)
        why = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(2)) or "no trials"
        return Tuning(cell.study, None, {}, states, [], f"no tuning trial completed ({why})")
    best = (max if s.direction == "maximize" else min)(complete, key=lambda t: t.value)
    return Tuning(
        cell.study,
        best.value,
        dict(best.params),
        states,
        [(dict(t.params), t.value) for t in complete],
        best_overrides=list(best.user_attrs.get("overrides") or []),
    )


def collect(p, cells) -> dict[tuple[str, str], Entry]:
    """Every cell's tuning and re-runs, grouped per (task, candidate); a re-run without an outcome file is
    "missing", and a study whose tuning found no best value has no re-runs to read."""
    from optlab.compare.protocol import eval_dir

    entries: dict[tuple[str, str], Entry] = {}
    for cell in cells:
        entry = entries.setdefault((cell.task.name, cell.candidate.name), Entry(cell.task.name, cell.candidate.name))
        tuning = tuning_of(cell)
        if tuning is not None:
            entry.tuning.append(tuning)
        if tuning is not None and tuning.best_value is None:
            continue
        for seed in p.eval_seeds:
            run_dir = eval_dir(p, cell, seed)
            outcome = launch.read_outcome(run_dir)
            if outcome is None:
                entry.runs.append(Run(cell.study, seed, "missing", None, {}, [], None))
                continue
            entry.runs.append(
                Run(
                    cell.study,
                    seed,
                    outcome["status"],
                    outcome.get("reason"),
                    outcome["metrics"],
                    curve.read_curve(run_dir),
                    curve.read_fit(run_dir),
                )
            )
    return entries
