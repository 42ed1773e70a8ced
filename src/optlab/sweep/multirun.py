"""After `python train.py -m ...`: one table of overrides -> optimized metric, also saved as
summary.csv and summary.md in the multirun folder."""

import csv
import math
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig


class MultirunSummary(Callback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if ok else None
        self.rows.append({
            "job": config.hydra.job.num,
            "overrides": " ".join(job_return.overrides or []),
            "status": "ok" if ok else f"failed: {type(job_return._return_value).__name__}",
            "metric": value if isinstance(value, (int, float)) else None,
            "run_dir": config.hydra.runtime.output_dir,
        })

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not self.rows:
            return
        metric = config.get("optimized_metric") or "metric"
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["job", "overrides", metric, "status", "run_dir"])
            writer.writeheader()
            for r in self.rows:
                writer.writerow({**{k: r[k] for k in ("job", "overrides", "status", "run_dir")}, metric: r["metric"]})
        lines = [f"| job | overrides | {metric} | status |", "|---|---|---|---|"]
        lines += [f"| {r['job']} | `{r['overrides']}` | {_fmt(r['metric'])} | {r['status']} |" for r in self.rows]
        (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
        self._print(metric, sweep_dir)

    def _print(self, metric: str, sweep_dir: Path) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"multirun {sweep_dir}", title_justify="left")
        for name in ("job", "overrides", metric, "status"):
            table.add_column(name, justify="right" if name == metric else "left")
        scored = [r["metric"] for r in self.rows if r["metric"] is not None and math.isfinite(r["metric"])]
        best = max(scored) if scored else None  # the direction is the sweep's; bold the highest for a glance
        for r in self.rows:
            value = _fmt(r["metric"])
            table.add_row(str(r["job"]), r["overrides"], f"[bold]{value}[/]" if r["metric"] == best else value,
                          r["status"])
        Console().print(table)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
