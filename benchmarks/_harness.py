"""Shared by the benchmark scripts: how they time things and pair them. Output lives in _report.py.

- Interleaving: `rotated`, `interleaved`: every round runs each implementation once, starting one
  further along each round, so slow drifts of the machine's load spread over all of them.
- Timing: `time_calls` (wall and CPU seconds per call, with a device sync around the clock),
  `sample_interleaved` (warm-up calls, then interleaved samples; the median).
- Pairing: `paired_ratios` (tested / reference within each round or window, so load that hits
  both cancels), `bootstrap_interval` (of the median, resampling whole repeats), and
  `PairedSteps` / `BareLoop` / `paired_overhead`: a bare PyTorch step timed before every step of a
  loop under test (template_overhead.py; the Lightning side is `_timers.PairedTimer`).
- Summaries: `spread` (max/min - 1, the run-to-run noise), `summary` (mean, median, min, max).
- `subprocess_env`: the environment for a child that imports `benchmarks.*` (Hydra callbacks).

Pure Python at import (no torch, no Lightning), so tests and light scripts load it in no time.
Not a benchmark itself.

Why pairing: the machines we measure on slow down by 30-80% for seconds at a time (other tenants of
the host), so two loops timed in separate runs, even interleaved, differ by more than the few
percent we look for. PairedSteps pairs every step of the loop under test (the template's Trainer,
the Lightning floor, or a second bare loop as a control) with one step of a bare loop run just
before it, in the same process: both see the same load, and the ratio of their times cancels it.

    loop under test:  | bare 0 | step 0 ....... | bare 1 | step 1 ....... | bare 2 | ...
                      t0       t1               t0       t1
    bare[k] = t1 - t0 of cycle k;  tested[k] = t0 of cycle k+1 - t1 of cycle k

The tested time thus covers everything the loop does between two `on_train_batch_start` calls
(data loading, hooks, logging, callbacks), the bare time one full step of the bare loop (its own
batch from its own DataLoader included). The Rich progress bar draws from a background thread;
the bare step can hold the bar's lock, so every redraw lands in (and is charged to) the tested side.
"""

import contextlib
import cProfile
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


# Interleaving


def rotated(names: Sequence[T], round_index: int) -> list[T]:
    """`names` in the order of round `round_index`: starting `round_index` places further along."""
    k = round_index % len(names)
    return [*names[k:], *names[:k]]


def interleaved(names: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, name) for `rounds` rounds, each running every name once in its rotated order."""
    for r in range(rounds):
        for name in rotated(names, r):
            yield r, name


# Timing


class CallTime(NamedTuple):
    wall_s: float  # seconds per call
    cpu_s: float  # process CPU seconds per call: all threads of this process, gloo's or torch's included


def time_calls(fn: Callable[[], object], calls: int = 1, sync: Callable[[], object] | None = None) -> CallTime:
    """Time `calls` back-to-back calls of fn. `sync` (e.g. torch.cuda.synchronize) runs before the
    clock starts and before it stops, so queued device work is charged to the calls that queued it."""
    if sync:
        sync()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()  # read last and first: the wall clock times only the calls
    for _ in range(calls):
        fn()
    if sync:
        sync()
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    return CallTime(wall / max(calls, 1), cpu / max(calls, 1))


def sample_interleaved(
    steps: dict[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    calls: int,
    sync: Callable[[], object] | None = None,
) -> dict[str, dict]:
    """Per name: `first` (seconds of its `warmup` calls: compiles, caches, first allocations),
    `samples` (seconds per call of each of `repeats` samples of `calls` calls, the names
    interleaved) and their `median`."""
    first = {name: time_calls(step, warmup, sync).wall_s * warmup for name, step in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _, name in interleaved(list(steps), repeats):
        samples[name].append(time_calls(steps[name], calls, sync).wall_s)
    return {
        name: {"first": first[name], "samples": samples[name], "median": statistics.median(samples[name])}
        for name in steps
    }


# Pairing


def paired_ratios(tested: Sequence[float], reference: Sequence[float], window: int = 1) -> list[float]:
    """tested / reference over each run of `window` consecutive pairs (timed side by side, so the
    load both saw cancels); a last, incomplete window is dropped."""
    return [
        sum(tested[i : i + window]) / sum(reference[i : i + window])
        for i in range(0, min(len(tested), len(reference)) - window + 1, window)
    ]


def window_means(times: Sequence[float], window: int) -> list[float]:
    return [statistics.fmean(times[i : i + window]) for i in range(0, len(times) - window + 1, window)]


def bootstrap_interval(
    groups: Sequence[Sequence[float]], level: float = 0.95, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the median of all values, resampling whole groups (the windows of one
    repeat share its load, so they are not independent; the repeats are)."""
    rng = random.Random(seed)
    medians = sorted(
        statistics.median([v for group in rng.choices(groups, k=len(groups)) for v in group]) for _ in range(draws)
    )
    return medians[int((1 - level) / 2 * draws)], medians[int((1 + level) / 2 * draws) - 1]


def torch_threads() -> int | None:
    """torch's intra-op thread count; None where torch is not loaded (nothing to count, nothing imported)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch else None


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

    def __init__(self, bare, warmup: int, steps: int, profile: bool = False):
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
                self.threads = torch_threads()
                if self.tested_profiler:
                    self.tested_profiler.enable()
        self.calls += 1

    @property
    def done(self) -> bool:
        return len(self.tested_s) == self.steps


def paired_overhead(runs: Sequence[PairedSteps], window: int) -> dict:
    """Overhead of the tested loop over its paired bare loop: the median over all windows of all
    runs of tested / bare - 1, its 95% interval (resampling whole runs), each run's pooled ratio - 1,
    the median window's ms/step of both sides, and added ms/step = overhead x bare ms/step."""
    ratios = [paired_ratios(p.tested_s, p.bare_s, window) for p in runs]
    low, high = bootstrap_interval(ratios)
    bare_ms = 1000 * statistics.median([m for p in runs for m in window_means(p.bare_s, window)])
    tested_ms = 1000 * statistics.median([m for p in runs for m in window_means(p.tested_s, window)])
    overhead = statistics.median([r for run in ratios for r in run]) - 1
    return {
        "overhead": overhead,
        "low": low - 1,
        "high": high - 1,
        "pooled": [sum(p.tested_s) / sum(p.bare_s) - 1 for p in runs],
        "bare_ms": bare_ms,
        "tested_ms": tested_ms,
        "added_ms": overhead * bare_ms,
    }


# Summaries


def spread(values: Sequence[float]) -> float:
    """max / min - 1: how far repeats of one measurement disagree; smaller differences are noise."""
    return max(values) / min(values) - 1


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


# Child processes


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ with the repository root first on PYTHONPATH, so a child (train.py) can import
    `benchmarks.*` callbacks named in Hydra overrides."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
