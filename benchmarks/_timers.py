"""Lightning callbacks the benchmarks add to the template's own runs through a config override.

    +callbacks.step_timer._target_=benchmarks._timers.StepTimer     (template_overhead.py)
    +callbacks.first_step._target_=benchmarks._timers.FirstStepTimer (startup.py)

The repository root must be importable (startup.py sets PYTHONPATH for its subprocesses).
"""

import cProfile
import json
import os
import time

import torch
from lightning.pytorch import Callback

FIRST = "fit: train loader, progress bar, first batch fetched"


class StepTimer(Callback):
    """Times `steps` whole training steps after `warmup` steps: from the start of batch `warmup`
    to the start of batch `warmup + steps` (data loading, hooks, logging and progress bar included).

    The last instance made is kept in StepTimer.last so the caller can read the result.
    """

    last: "StepTimer | None" = None

    def __init__(self, warmup: int = 10, steps: int = 100, profile: bool = False):
        self.warmup, self.steps, self.calls = warmup, steps, 0
        self.start = self.end = None
        self.stamps: list[float] = []  # perf_counter at the start of each timed batch (and the one after)
        self.cpu_stamps: list[float] = []  # process CPU time (all threads) at the same moments
        self.threads = None
        self.profiler = cProfile.Profile() if profile else None
        StepTimer.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.warmup <= self.calls <= self.warmup + self.steps:
            self.stamps.append(time.perf_counter())
            self.cpu_stamps.append(time.process_time())
        if self.calls == self.warmup:
            self.threads = torch.get_num_threads()
            if self.profiler:
                self.profiler.enable()
            self.start = time.perf_counter()
        elif self.calls == self.warmup + self.steps:
            self.end = time.perf_counter()
            if self.profiler:
                self.profiler.disable()
        self.calls += 1

    @property
    def steps_per_s(self) -> float:
        if self.end is None:
            raise RuntimeError(f"only {self.calls} training batches ran; need warmup + steps + 1 = "
                               f"{self.warmup + self.steps + 1} (raise trainer.max_steps or data.num_samples)")
        return self.steps / (self.end - self.start)

    @property
    def step_times(self) -> list[float]:
        """Seconds of each timed step (batch start to the next batch start)."""
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]

    @property
    def cpu_s(self) -> float:
        """Process CPU seconds (every thread) per timed step."""
        return (self.cpu_stamps[-1] - self.cpu_stamps[0]) / self.steps


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
