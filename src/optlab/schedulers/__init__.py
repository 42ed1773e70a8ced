"""Learning-rate schedules, all stepped once per optimizer step.

Each takes the optimizer and the run's total number of optimizer steps (known only once the
Trainer has seen the data), so conf/scheduler/*.yaml hold partials and the module finishes them.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR, OneCycleLR


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
