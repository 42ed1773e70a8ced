"""Learning-rate schedules, all stepped once per optimizer step.

Each takes the optimizer and the run's total number of optimizer steps (known only once the
Trainer has seen the data), so conf/scheduler/*.yaml hold partials and the module finishes them.
A bad option raises ValueError naming its key; validate.py builds the schedule on a stand-in
optimizer before anything runs, so it stops the command in one line.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR, LambdaLR, LRScheduler, MultiStepLR, OneCycleLR


def _warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return int(round(total_steps * warmup_fraction))


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    warmup_start_factor: float = 0.1,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    warmup = _warmup_steps(total_steps, warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return warmup_start_factor + (1 - warmup_start_factor) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def warmup_linear(
    optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05, end_factor: float = 0.0
) -> LRScheduler:
    warmup = _warmup_steps(total_steps, warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 1 + (end_factor - 1) * progress

    return LambdaLR(optimizer, factor)


def one_cycle(
    optimizer: Optimizer,
    total_steps: int,
    max_lr_factor: float = 1.0,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
) -> LRScheduler:
    max_lr = [g["lr"] * max_lr_factor for g in optimizer.param_groups]
    return OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(1, total_steps), pct_start=pct_start, anneal_strategy=anneal_strategy
    )


def step_decay(optimizer: Optimizer, total_steps: int, milestones=(0.5, 0.75), gamma: float = 0.1) -> LRScheduler:
    return MultiStepLR(optimizer, milestones=[int(total_steps * m) for m in milestones], gamma=gamma)


CYCLIC_MODES = ("triangular", "triangular2")
WSD_DECAYS = ("linear", "cosine", "sqrt")


def cyclic(
    optimizer: Optimizer, total_steps: int, cycles: float = 4.0, base_lr_factor: float = 0.1, mode: str = "triangular"
) -> LRScheduler:
    """Smith's cyclical learning rate (2017): up from lr*base_lr_factor to lr and back, `cycles`
    times over the run; `triangular2` halves the height of each cycle. torch's CyclicLR, without
    its momentum cycling (which would need a `momentum` every optimizer does not have)."""
    if mode not in CYCLIC_MODES:
        raise ValueError(f"scheduler.mode={mode!r} is not one of {', '.join(CYCLIC_MODES)}")
    if not cycles > 0 or not 0 < base_lr_factor <= 1:
        raise ValueError(f"scheduler.cycles={cycles} must be > 0 and scheduler.base_lr_factor in (0, 1]")
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return CyclicLR(
        optimizer,
        base_lr=[lr * base_lr_factor for lr in max_lr],
        max_lr=max_lr,
        step_size_up=max(1, round(total_steps / (2 * cycles))),
        mode=mode,
        cycle_momentum=False,
    )


def wsd(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    decay_fraction: float = 0.2,
    decay: str = "linear",
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Warmup-stable-decay: linear warmup, a constant lr, and a decay over the last `decay_fraction`
    of the run. The lr of a step in the stable phase does not depend on the run's length, so a run
    resumed from a stable-phase checkpoint with a larger `trainer.max_epochs` continues as if it
    had been planned that long (only the decay moves)."""
    if decay not in WSD_DECAYS:
        raise ValueError(f"scheduler.decay={decay!r} is not one of {', '.join(WSD_DECAYS)}")
    if not (0 <= warmup_fraction and 0 <= decay_fraction and warmup_fraction + decay_fraction <= 1):
        raise ValueError(
            f"scheduler.warmup_fraction={warmup_fraction} and scheduler.decay_fraction={decay_fraction} "
            "must be >= 0 and add up to at most 1"
        )
    warmup = _warmup_steps(total_steps, warmup_fraction)
    decay_steps = int(round(total_steps * decay_fraction))
    decay_start = total_steps - decay_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, decay_steps))
        left = {
            "linear": 1 - progress,
            "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
            "sqrt": 1 - math.sqrt(progress),
        }
        return min_lr_ratio + (1 - min_lr_ratio) * left[decay]

    return LambdaLR(optimizer, factor)
