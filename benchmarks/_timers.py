"""The Lightning callback startup.py adds to the template's own runs through a config override:

    +callbacks.first_step._target_=benchmarks._timers.FirstStepTimer

The repository root must be importable (startup.py sets PYTHONPATH for its subprocesses).
"""

import json
import os
import time

from lightning.pytorch import Callback

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
