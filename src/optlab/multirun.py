"""After `python train.py -m ...`: one table of overrides -> optimized metric, also saved as
summary.csv and summary.md in the multirun folder, with curves.png: every job's validation curves.

Each job leaves its own result (`<job dir>/outcome.json`, optlab.launch.job) where it runs: in
this process (basic launcher), a joblib worker, or a SLURM job (submitit). The table is read back
from those files when the multirun ends, so it is complete under every launcher; a job that left
no result (killed, never started) is listed as such.
"""

import csv
import math
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from optlab.launch import read_outcome, write_outcome


class MultirunSummary(Callback):
    """A Hydra callback (`hydra.callbacks.multirun_summary`): writes the outcome of a job Hydra failed before
    optlab could, and the module docstring's table when the multirun ends."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        """A job that failed before optlab's task could record it (e.g. in Hydra's job set-up)."""
        job_dir = Path(config.hydra.runtime.output_dir)
        if config.hydra.mode != RunMode.MULTIRUN or job_return.status == JobStatus.COMPLETED:
            return
        if read_outcome(job_dir) is None:
            reason = " ".join(str(job_return._return_value).split())[:300]
            write_outcome(
                job_dir,
                {
                    "status": "error",
                    "reason": reason,
                    "metrics": {},
                    "overrides": list(job_return.overrides or []),
                    "run_dir": str(job_dir),
                },
            )

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        metric = config.get("optimized_metric") or "metric"
        rows = read_rows(sweep_dir, metric)
        if not rows:
            return
        with open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["job", "overrides", metric, "status", "run_dir"])
            writer.writeheader()
            for r in rows:
                writer.writerow({**{k: r[k] for k in ("job", "overrides", "status", "run_dir")}, metric: r["metric"]})
        shown = varying(rows)
        lines = [f"| job | overrides | {metric} | status |", "|---|---|---|---|"]
        lines += [f"| {r['job']} | `{shown[i]}` | {_fmt(r['metric'])} | {r['status']} |" for i, r in enumerate(rows)]
        from optlab.callbacks.curves import ROWS, overlay
        from optlab.callbacks.curves import read_rows as curve_rows

        picture = overlay(
            [(f"{r['job']}: {o}", curve_rows(Path(r["run_dir"]) / ROWS)) for r, o in zip(rows, shown)],
            sweep_dir / "curves.png",
        )
        if picture:
            lines.append(f"\n![validation curves of every job]({picture.name})")
        (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
        _print(rows, metric, sweep_dir)


def read_rows(sweep_dir: Path, metric: str) -> list[dict]:
    """One row per job folder (`<sweep dir>/<job number>/`), from its outcome.json."""
    rows = []
    job_dirs = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    for job_dir in sorted(job_dirs, key=lambda d: int(d.name)):
        outcome = read_outcome(job_dir)
        if outcome is None:
            outcome = {"status": "no result (the job was killed or never finished)", "overrides": []}
        elif outcome["status"] != "ok":
            outcome["status"] = f"failed ({outcome['status']}): {(outcome.get('reason') or '')[:200]}"
        rows.append(
            {
                "job": int(job_dir.name),
                "status": outcome["status"],
                "run_dir": str(job_dir),
                "overrides": " ".join(o for o in outcome["overrides"] if not o.startswith("hydra.")),
                "metric": (outcome.get("metrics") or {}).get(metric),
            }
        )
    return rows


def varying(rows: list[dict]) -> list[str]:
    """Each job's overrides less those every job shares (the CSV keeps them all)."""
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    return [" ".join(o for o in r["overrides"].split() if o not in common) for r in rows]


def _print(rows: list[dict], metric: str, sweep_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="multirun", title_justify="left")
    for name in ("job", "overrides", metric, "status"):
        table.add_column(name, justify="right" if name == metric else "left")
    scored = [r["metric"] for r in rows if r["metric"] is not None and math.isfinite(r["metric"])]
    best = max(scored) if scored else None  # the direction is the sweep's; bold the highest for a glance
    for r, overrides in zip(rows, varying(rows)):
        value = _fmt(r["metric"])
        table.add_row(str(r["job"]), overrides, f"[bold]{value}[/]" if r["metric"] == best else value, r["status"])
    console = Console()
    console.print(table)
    console.print(f"multirun dir: {sweep_dir}", soft_wrap=True)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
