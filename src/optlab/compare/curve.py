"""What a comparison needs from each run besides its final metrics: the learning curve, the time
spent training, and the optimizer's state size.

`CurveRecorder` (a Lightning callback, rank 0 writes) leaves in the run directory:
- `curve.jsonl`: one line per validation (the sanity check excluded):
  {"step", "examples_seen", "seconds" (wall time since training started), "metrics": {val/...}};
- `fit.json` at the end of training: {"fit_s" (training + validation wall time), "params"
  (trainable parameter count), "state_bytes" (the optimizer's state tensors), "steps",
  "examples_seen"}.
`configure_run` is the launch.Job hook that adds it (and the sweep's trial callback for a tuning
trial), so it works in whatever process trains the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning.pytorch import Callback
from omegaconf import open_dict

from optlab.loggers.steps import scalar_metrics

CURVE, FIT = "curve.jsonl", "fit.json"


def _state_bytes(optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if hasattr(value, "numel") and hasattr(value, "element_size") and value.dim() > 0:
                total += value.numel() * value.element_size()
    return total


class CurveRecorder(Callback):
    def __init__(self, run_dir: str, prefix: str = "val/"):
        self.dir, self.prefix = Path(run_dir), prefix
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()
        if trainer.is_global_zero:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / CURVE).write_text("")  # a re-run replaces, never appends to, a killed run's curve

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self._start is None or not trainer.is_global_zero:
            return
        metrics = {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith(self.prefix)}
        row = {
            "step": trainer.global_step,
            "examples_seen": int(getattr(pl_module, "examples_seen", 0)),
            "seconds": round(time.perf_counter() - self._start, 4),
            "metrics": metrics,
        }
        with open(self.dir / CURVE, "a") as f:
            f.write(json.dumps(row) + "\n")

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
        (self.dir / FIT).write_text(json.dumps(fit))


def configure_run(cfg, run_dir: str, val_every: int | None = None, **trial) -> None:
    """The launch.Job hook of every comparison run: the curve recorder, validation every
    `val_every` steps (None: every epoch), and for a tuning trial the sweep's own hook."""
    from optlab.sweep.objective import configure_trial

    configure_trial(cfg, **trial)
    with open_dict(cfg):
        if cfg.get("callbacks") is None:
            cfg.callbacks = {}
        cfg.callbacks.curve = {"_target_": f"{__name__}.CurveRecorder", "run_dir": run_dir}
        cfg.callbacks.pop("curves", None)  # the comparison draws its own curves, over seeds
        if val_every:
            cfg.trainer.val_check_interval = int(val_every)
            cfg.trainer.check_val_every_n_epoch = None


def read_curve(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / CURVE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_fit(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / FIT
    return json.loads(path.read_text()) if path.is_file() else None
