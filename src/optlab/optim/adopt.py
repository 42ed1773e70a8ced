r"""ADOPT (Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
Rate"): Adam with the second moment taken *before* the current gradient enters it, and the
normalization moved inside the momentum. With gradient g (negated when `maximize`), per param:

    step 1:   v <- g^2                                           no update: v needs one gradient
    step t:   n <- clip(g / max(sqrt(v), eps), t^(1/4))          normalized by the previous v (t >= 2)
              m <- beta1 * m + (1 - beta1) * n
              p <- p - lr * m
              v <- beta2 * v + (1 - beta2) * g^2

Because g is divided by a v it has not entered yet, the update stays bounded for any beta2 (Adam
needs beta2 close to 1 to converge). Weight decay: `weight_decouple=True` multiplies p by
1 - lr * wd (1 - wd with `fixed_decay`) first, as AdamW; otherwise wd * p is added to g.
Argument names and defaults are those of `pytorch_optimizer.ADOPT` (the reference of the tests):
lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, clip_lambda=step ** 0.25 (None: no clipping).
State per param: `step`, `exp_avg`, `exp_avg_sq`.
"""

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import (
    by_device_and_dtype,
    cache_blocks,
    closure_loss,
    effective_grads,
    grads_of_groups,
    new_step,
)
from optlab.optim.hyperparameters import check, value


def _quarter_power(step: float) -> float:
    return math.pow(step, 0.25)


def adopt_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    weight_decouple: bool,
    fixed_decay: bool,
    clip_lambda: Callable[[float], float] | None,
    maximize: bool,
) -> None:
    """One ADOPT step for aligned lists, in place (block by block on CPU, see `cache_blocks`)."""
    for p, g, m, v, t in by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, steps):
        first = [s.item() == 0 for s in t]
        torch._foreach_add_(t, 1.0)
        clips = [clip_lambda(s.item()) if clip_lambda is not None else math.inf for s in t]  # t = 2 first
        blocks = cache_blocks(p, g, m, v, clips, first)
        for p, g, m, v, clips, first in blocks:
            if weight_decouple and weight_decay != 0:
                torch._foreach_mul_(p, 1 - weight_decay * (1.0 if fixed_decay else lr))
            g = effective_grads(g, p, maximize, 0.0 if weight_decouple else weight_decay)
            starting = [i for i, f in enumerate(first) if f]
            if starting:  # v's first value; these params take no step now
                torch._foreach_addcmul_([v[i] for i in starting], [g[i] for i in starting], [g[i] for i in starting])
            going = [i for i, f in enumerate(first) if not f]
            if not going:
                continue
            p, g, m, v = ([x[i] for i in going] for x in (p, g, m, v))
            clips = [clips[i] for i in going]
            denom = torch._foreach_sqrt(v)
            torch._foreach_clamp_min_(denom, eps)
            normed = torch._foreach_div(g, denom)
            del denom
            if clip_lambda is not None:
                torch._foreach_clamp_min_(normed, [-c for c in clips])
                torch._foreach_clamp_max_(normed, clips)
            torch._foreach_lerp_(m, normed, 1.0 - beta1)
            torch._foreach_add_(p, m, alpha=-lr)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, g, g, 1.0 - beta2)


class ADOPT(Optimizer):
    """ADOPT; see the module docstring. pytorch_optimizer.ADOPT's arguments (`optimizer=adopt`)."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.9999),
        clip_lambda: Callable[[float], float] | None = _quarter_power,
        weight_decay: float = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        eps: float = 1e-6,
        maximize: bool = False,
    ) -> None:
        check(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        self.clip_lambda = clip_lambda  # a function: kept out of the state_dict

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = new_step()
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states = [self.state[p] for p in params]
            beta1, beta2 = map(value, group["betas"])
            adopt_update(
                params,
                grads,
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["step"] for s in states],
                lr=value(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                weight_decouple=group["weight_decouple"],
                fixed_decay=group["fixed_decay"],
                clip_lambda=self.clip_lambda,
                maximize=group["maximize"],
            )
        return loss
