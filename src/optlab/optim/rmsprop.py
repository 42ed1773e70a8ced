r"""RMSprop (Hinton, Coursera lecture 6e), centered variant (Graves, 2013), as torch.optim.RMSprop.

With gradient g (negated when `maximize`):

    g <- g + wd * p                                   L2 weight decay
    v <- alpha * v + (1 - alpha) * g^2                running mean of squared gradients
    a <- alpha * a + (1 - alpha) * g                  (centered only: running mean of g)
    s <- sqrt(v - a^2) + eps  if centered  else  sqrt(v) + eps
    b <- mu * b + g / s ;  p <- p - lr * b            with momentum mu > 0 (b starts at 0)
    p <- p - lr * g / s                               without momentum

Same arguments, defaults, state keys (`step`, `square_avg`, `grad_avg`, `momentum_buffer`)
and order of floating-point operations as `torch.optim.RMSprop`. There is no bias correction:
`v` starts at 0, so early steps are large (torch behaves the same). torch's switches and a tensor
`lr` are taken as torch takes them (docs/optimizers.md, "Drop-in"). `compiled=True` runs
`rmsprop_kernel` through torch.compile instead (one fused loop per param, not bit-exact; see
`optlab.optim._foreach.run_compiled`).
"""

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
    plain,
    run_compiled,
)
from optlab.optim.hyperparameters import check, check_torch_switches, value


def rmsprop_update(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """One RMSprop step, in place (block by block on CPU, see `optlab.optim._foreach.cache_blocks`).
    `grad_avgs` is empty unless centered, `momentum_buffers` empty unless momentum > 0.
    Increments `steps` (kept for torch compatibility, unused)."""
    for device_p, device_g, device_v, device_a, device_b, t in by_device_and_dtype(
        params, grads, square_avgs, grad_avgs, momentum_buffers, steps
    ):
        torch._foreach_add_(t, 1.0)
        for p, g, v, a, b in cache_blocks(device_p, device_g, device_v, device_a, device_b):
            g = effective_grads(g, p, maximize, weight_decay)

            torch._foreach_mul_(v, alpha)
            torch._foreach_addcmul_(v, g, g, 1 - alpha)
            if centered:
                torch._foreach_lerp_(a, g, 1 - alpha)
                denom = torch._foreach_addcmul(v, a, a, -1)  # variance estimate v - a^2
                torch._foreach_sqrt_(denom)
            else:
                denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, eps)

            if momentum > 0:
                torch._foreach_mul_(b, momentum)
                torch._foreach_addcdiv_(b, g, denom)
                torch._foreach_add_(p, b, alpha=-lr)
            else:
                torch._foreach_addcdiv_(p, g, denom, -lr)


def rmsprop_kernel(
    p: Tensor,
    g: Tensor,
    v: Tensor,
    a: Tensor | None,
    b: Tensor | None,
    h: Tensor,
    *,
    centered: bool,
    momentum: bool,
    weight_decay: bool,
    maximize: bool,
) -> None:
    """`rmsprop_update` for one param (step counter aside), for the compiled path;
    h = (lr, alpha, 1 - alpha, eps, weight_decay, momentum)."""
    if maximize:
        g = -g
    if weight_decay:
        g = g + h[4] * p
    v.mul_(h[1]).addcmul_(g, h[2] * g)
    if centered:
        a.lerp_(g, h[2])
        denom = (v - a * a).sqrt() + h[3]
    else:
        denom = v.sqrt() + h[3]
    if momentum:
        b.mul_(h[5]).add_(g / denom)
        p.sub_(h[0] * b)
    else:
        p.sub_(h[0] * (g / denom))


class RMSprop(Optimizer):
    """RMSprop with torch's arguments and defaults; see the module docstring for the update.

    `compiled=True` (keyword-only, not torch's) steps through torch.compile (`rmsprop_kernel`): on
    CPU about 2x faster than the default path after a one-time compile of a few seconds; agrees
    with it to ~1e-7 relative per step, not bit for bit (benchmarks/optim_step.py).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        compiled: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_torch_switches(type(self).__name__, foreach, fused, differentiable, capturable)
        check(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        self.compiled = compiled

    def __setstate__(self, state: dict) -> None:
        # Called by load_state_dict too: fill keys an older or foreign checkpoint may lack.
        super().__setstate__(state)
        self.__dict__.setdefault("compiled", False)
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)
            group.setdefault("maximize", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            momentum, centered = group["momentum"], group["centered"]
            for p in params:
                state = self.state[p]
                if not state:  # lazy init: state exists only for params that got a gradient
                    state["step"] = new_step()
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                # Checked separately so a group may switch momentum/centered on mid-training.
                if momentum > 0 and "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if centered and "grad_avg" not in state:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states = [self.state[p] for p in params]
            if self.compiled and plain(params):
                torch._foreach_add_([s["step"] for s in states], 1.0)
                alpha = group["alpha"]
                run_compiled(
                    rmsprop_kernel,
                    [
                        params,
                        grads,
                        [s["square_avg"] for s in states],
                        [s.get("grad_avg") for s in states],
                        [s.get("momentum_buffer") for s in states],
                    ],
                    [[value(group["lr"]), alpha, 1 - alpha, group["eps"], group["weight_decay"], momentum]],
                    centered=centered,
                    momentum=momentum > 0,
                    weight_decay=group["weight_decay"] != 0,
                    maximize=group["maximize"],
                )
            else:
                rmsprop_update(
                    params,
                    grads,
                    [s["square_avg"] for s in states],
                    [s["grad_avg"] for s in states] if centered else [],
                    [s["momentum_buffer"] for s in states] if momentum > 0 else [],
                    [s["step"] for s in states],
                    lr=value(group["lr"]),
                    alpha=group["alpha"],
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    momentum=momentum,
                    centered=centered,
                    maximize=group["maximize"],
                )
        return loss
