"""Paired timing for template_overhead.py: a bare PyTorch step before every step of the loop under test.

The machines we measure on slow down by 30-80% for seconds at a time (other tenants of the host),
so two loops timed in separate runs, even interleaved, differ by more than the few percent we look
for. Here every step of the loop under test (the template's Trainer, the Lightning floor, or a
second bare loop as a control) is paired with one step of a bare loop run just before it, in the
same process: both see the same load, and the ratio of their times cancels it.

    loop under test:  | bare 0 | step 0 ....... | bare 1 | step 1 ....... | bare 2 | ...
                      t0       t1               t0       t1
    bare[k] = t1 - t0 of cycle k;  tested[k] = t0 of cycle k+1 - t1 of cycle k

The tested time thus covers everything the loop does between two `on_train_batch_start` calls
(data loading, hooks, logging, callbacks), the bare time one full step of the bare loop (its own
batch from its own DataLoader included). The Rich progress bar draws from a background thread;
the bare step holds the bar's lock, so every redraw lands in (and is charged to) the tested side.

Not a benchmark itself (see template_overhead.py); the repository root must be importable.
"""

import contextlib
import cProfile
import time

import torch
from lightning.pytorch import Callback


class BareLoop:
    """One plain-PyTorch training step at a time: its own network, optimizer (param groups as the
    template makes them), LR schedule and DataLoader, built from the run's config."""

    def __init__(self, net, optimizer, scheduler, criterion, loader):
        self.net, self.optimizer, self.scheduler, self.criterion = net, optimizer, scheduler, criterion
        self.batches = iter(loader)
        self.net.train()

    def step(self) -> None:
        x, y = next(self.batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.criterion(self.net(x), y)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


class PairedSteps:
    """Times `steps` cycles of (bare step, tested step) after `warmup` cycles. Call `cycle()` once
    per step of the tested loop, at the same point of each step (`on_train_batch_start`)."""

    def __init__(self, bare: BareLoop, warmup: int, steps: int, profile: bool = False):
        self.bare, self.warmup, self.steps = bare, warmup, steps
        self.calls, self.bare_end = 0, None
        self.tested_s: list[float] = []  # tested step k, matched with bare_s[k]
        self.bare_s: list[float] = []
        self.threads = None
        # cProfile of each side's own steps (the tested loop's Python code, the bare loop's torch calls)
        self.tested_profiler = cProfile.Profile() if profile else None
        self.bare_profiler = cProfile.Profile() if profile else None

    def cycle(self, bare_lock=None) -> None:
        start = time.perf_counter()
        k = self.calls
        if self.tested_profiler and self.warmup < k <= self.warmup + self.steps:
            self.tested_profiler.disable()
        if self.warmup < k <= self.warmup + self.steps:
            self.tested_s.append(start - self.bare_end)
        if k < self.warmup + self.steps:  # the last call only closes the last tested step
            timed = k >= self.warmup
            with bare_lock or contextlib.nullcontext():
                if timed and self.bare_profiler:
                    self.bare_profiler.enable()
                self.bare.step()
                if timed and self.bare_profiler:
                    self.bare_profiler.disable()
            self.bare_end = time.perf_counter()
            if timed:
                self.bare_s.append(self.bare_end - start)
                self.threads = torch.get_num_threads()
                if self.tested_profiler:
                    self.tested_profiler.enable()
        self.calls += 1

    @property
    def done(self) -> bool:
        return len(self.tested_s) == self.steps


class PairedTimer(Callback):
    """PairedSteps inside a Trainer. A Hydra override cannot pass a live BareLoop, so the script
    sets PairedTimer.next_bare before each run; the last instance made is kept in PairedTimer.last."""

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
