"""What a comparison needs from each run besides its final metrics: the learning curve, the time
spent training, and the optimizer's state size.

- The learning curve is the run's own `curves.jsonl` (optlab.callbacks.Curves, which every run
  has; here without its pictures): `read_curve` returns its validation rows as
  {"step", "examples_seen", "seconds" (wall time since training started), "metrics": {val/...}}.
- `FitCost` (a Lightning callback, rank 0 writes) leaves `fit.json` in the run directory at the
  end of training: {"fit_s" (training + validation wall time), "params" (trainable parameter
  count), "state_bytes" (the optimizer's state tensors), "steps", "examples_seen"}.
`configure_run` is the launch.Job hook that adds both (and the sweep's trial callback for a tuning
trial), so it works in whatever process trains the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning.pytorch import Callback
from omegaconf import open_dict

from optlab import strict_json
from optlab.callbacks.curves import ROWS, read_rows

FIT = "fit.json"


def _state_bytes(optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if hasattr(value, "numel") and hasattr(value, "element_size") and value.dim() > 0:
                total += value.numel() * value.element_size()
    return total


class FitCost(Callback):
    def __init__(self, run_dir: str):
        self.dir = Path(run_dir)
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if self._start is None or not trainer.is_global_zero:
            return
        optimizers = trainer.optimizers or []
        fit = {
            "fit_s": round(time.perf_counter() - self._start, 4),
            "params": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "state_bytes": sum(_state_bytes(o) for o in optimizers),
            "steps": trainer.global_step,
            "examples_seen": int(getattr(pl_module, "examples_seen", 0)),
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / FIT).write_text(strict_json.dumps(fit))


def configure_run(cfg, run_dir: str, val_every: int | None = None, **trial) -> None:
    """The launch.Job hook of every comparison run: its curve (without pictures: the comparison
    draws its own, over seeds), its cost, validation every `val_every` steps (None: every epoch),
    and for a tuning trial the sweep's own hook."""
    from optlab.sweep.objective import configure_trial

    configure_trial(cfg, **trial)
    with open_dict(cfg):
        if cfg.get("callbacks") is None:
            cfg.callbacks = {}
        cfg.callbacks.curves = {"_target_": "optlab.callbacks.Curves", "dir": run_dir, "draw": False}
        cfg.callbacks.fit_cost = {"_target_": f"{__name__}.FitCost", "run_dir": run_dir}
        if val_every:
            cfg.trainer.val_check_interval = int(val_every)
            cfg.trainer.check_val_every_n_epoch = None


def read_curve(run_dir: str | Path) -> list[dict]:
    """The run's validations, in order: {"step", "examples_seen", "seconds", "metrics": {val/...}}."""
    curve = []
    for row in read_rows(Path(run_dir) / ROWS):
        metrics = {k: v for k, v in row.items() if k.startswith("val/")}
        if metrics:
            curve.append({**{k: row[k] for k in ("step", "examples_seen", "seconds")}, "metrics": metrics})
    return curve


def read_fit(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / FIT
    return json.loads(path.read_text()) if path.is_file() else None
