"""A job: one training run described so that any process can start it, and the file it leaves.

A `Job` is the command line of one run (`python train.py <overrides>`), where its config comes
from (config name, a fork's `--config-dir`), its run directory, and an optional `configure` hook
(a dotted function name: the sweep adds its Optuna callback with it). It is plain data, so it
travels as JSON to a fresh process, pickled to a worker process or a SLURM job, unchanged.

Every job leaves `outcome.json` in its run directory (rank 0 writes it), wherever it ran:
    {"status": "ok" | "config" | "oom" | "error" | "crash" | "timeout",
     "reason": one line when not ok (else null),
     "metrics": {name: value} (what train() returned; {} when it did not finish),
     "wall_s": seconds, "overrides": [...], "run_dir": "...",
     "exit_code": (crash only), "traceback": (error only)}
`-m` jobs (optlab.multirun), sweep trials (optlab.sweep) and comparisons read nothing else.
"""

from __future__ import annotations

import importlib
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optlab import strict_json
from optlab.launch.layout import is_rank_zero

OUTCOME = "outcome.json"


@dataclass
class Job:
    """One run as plain data (see the module docstring), so it reaches any process unchanged, as JSON or
    pickled; `config()` composes its training config there."""

    overrides: list[str]  # everything after `python train.py` (hydra.searchpath=... too)
    run_dir: str
    config_name: str = "train"
    config_dir: str | None = None  # None: optlab's conf/
    configure: str | None = None  # "package.module.function": called as f(cfg, **options) after composing
    options: dict = field(default_factory=dict)
    threads: int | None = None  # torch threads for this job (None: leave as is)
    log_file: str | None = None  # in a fresh or worker process: where its stdout/stderr go (None: inherit)

    def to_json(self) -> str:
        return strict_json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))

    def config(self):
        """The training config of this job (and Hydra's run-time config set to it, as train() needs)."""
        from optlab.run import CONFIG_DIR, compose_config

        config_dir = Path(self.config_dir) if self.config_dir else CONFIG_DIR
        cfg = compose_config(self.overrides, run_dir=self.run_dir, config_dir=config_dir, config_name=self.config_name)
        if self.configure:
            module, _, name = self.configure.rpartition(".")
            getattr(importlib.import_module(module), name)(cfg, **self.options)
        return cfg


def one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[:3])
    return f"{type(e).__name__}: {text[:500]}" if text else type(e).__name__


def write_outcome(run_dir: str | Path, outcome: dict) -> None:
    """Rank 0 only; non-finite numbers are written as strings ("nan"), so the file stays valid JSON
    (optlab.strict_json)."""
    if not is_rank_zero():
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / OUTCOME).write_text(strict_json.dumps(outcome, indent=2, default=str))


def read_outcome(run_dir: str | Path) -> dict | None:
    """The job's outcome, or None when it left none (killed, never started); "nan" reads back as nan."""
    path = Path(run_dir) / OUTCOME
    if not path.is_file():
        return None
    outcome = json.loads(path.read_text())
    outcome["metrics"] = {k: strict_json.number(v) for k, v in (outcome.get("metrics") or {}).items()}
    return outcome


def outcome_of(job: Job, status: str, reason: str, **extra) -> dict:
    return {
        "status": status,
        "reason": reason,
        "metrics": {},
        "overrides": list(job.overrides),
        "run_dir": job.run_dir,
        **extra,
    }


def _save_config(cfg, job: Job) -> None:
    """What Hydra's app would have saved (a `-m` job's launcher did already: keep that one)."""
    from omegaconf import OmegaConf

    hydra_dir = Path(job.run_dir) / ".hydra"
    if not is_rank_zero() or (hydra_dir / "config.yaml").exists():
        return
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(list(job.overrides))))


def run_here(job: Job, cfg=None, reraise: bool = False) -> dict:
    """Train the job in this process; write and return its outcome.

    `cfg`: the job's config when it is composed already (a `-m` job inside Hydra). A failure is
    recorded, then raised again with `reraise` (a command line reports it) or not (a sweep goes on)."""
    import torch

    from optlab.run import train
    from optlab.validate import ConfigError

    start = time.perf_counter()
    outcome = outcome_of(job, "ok", None)
    try:
        if job.threads:
            torch.set_num_threads(int(job.threads))
        if cfg is None:
            cfg = job.config()
        _save_config(cfg, job)
        outcome["metrics"] = train(cfg)
    except (torch.OutOfMemoryError, MemoryError) as e:
        outcome.update(status="oom", reason=f"out of memory: {one_line(e)}")
        error = e
    except ConfigError as e:
        outcome.update(status="config", reason=str(e))
        error = e
    except Exception as e:  # noqa: BLE001 - a job may fail in any way; its caller decides what follows
        outcome.update(status="error", reason=one_line(e), traceback=traceback.format_exc())
        error = e
    else:
        error = None
    outcome["wall_s"] = time.perf_counter() - start
    write_outcome(job.run_dir, outcome)
    if error is not None:
        if reraise:
            raise error
        if outcome["status"] == "error":
            traceback.print_exception(error)
    return outcome
