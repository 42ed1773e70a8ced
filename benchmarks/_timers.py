"""The harness's Lightning callbacks, added to the template's own runs through config overrides:

    +callbacks.first_step._target_=benchmarks._timers.FirstStepTimer   (startup.py)
    +callbacks.paired._target_=benchmarks._timers.PairedTimer          (template_overhead.py)

Apart from _harness.py only because importing Lightning takes seconds, and Hydra needs a class
path to import. The repository root must be importable (the scripts put it on the path, and on
PYTHONPATH for their subprocesses: _harness.subprocess_env).
"""

import json
import os
import time

from lightning.pytorch import Callback

from benchmarks._harness import BareLoop, PairedSteps

FIRST = "fit: train loader, progress bar, first batch fetched"


class FirstStepTimer(Callback):
    """Writes wall-clock times (time.time()) of the fit's milestones, up to the first training batch,
    as JSON to the file named by $OPTLAB_BENCH_TIMES. Each name says what the time before it went to."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def _mark(self, name: str) -> None:
        self.times.setdefault(name, time.time())

    def setup(self, trainer, pl_module, stage) -> None:
        self._mark("fit: Lightning setup, datamodule.setup (data loaded)")

    def on_fit_start(self, trainer, pl_module) -> None:
        self._mark("fit: configure_model, configure_optimizers, model summary")

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._mark("fit: on_fit_start hooks")

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        self._mark("fit: sanity check (validation batches)")

    def on_train_start(self, trainer, pl_module) -> None:
        self._mark("fit: sanity check to on_train_start")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if FIRST not in self.times:
            self._mark(FIRST)
            path = os.environ.get("OPTLAB_BENCH_TIMES")
            if path:
                with open(path, "w") as f:
                    json.dump(self.times, f)


class PairedTimer(Callback):
    """_harness.PairedSteps inside a Trainer. A Hydra override cannot pass a live BareLoop, so the
    script sets PairedTimer.next_bare before each run; the last instance made is kept in PairedTimer.last."""

    next_bare: BareLoop | None = None
    last: "PairedTimer | None" = None

    def __init__(self, warmup: int = 10, steps: int = 100, profile: bool = False):
        self.pairs = PairedSteps(PairedTimer.next_bare, warmup, steps, profile)
        self.bar_lock = None  # found at the first batch (the bar starts in on_train_start), then kept
        PairedTimer.next_bare = None
        PairedTimer.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.pairs.calls == 0:
            self.bar_lock = _progress_bar_lock(trainer)
        self.pairs.cycle(bare_lock=self.bar_lock)


def _progress_bar_lock(trainer):
    """The lock the Rich progress bar's drawing thread takes for each redraw (None without a bar)."""
    for callback in trainer.callbacks:
        live = getattr(getattr(callback, "progress", None), "live", None)
        if live is not None:
            return live._lock
    return None
