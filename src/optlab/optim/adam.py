r"""Adam (Kingma & Ba, 2015), with optional AMSGrad and decoupled weight decay (AdamW).

With gradient g (negated when `maximize`), step t = 1, 2, ...:

    g      <- g + wd * p                        (L2 penalty; AdamW instead: p <- p * (1 - lr * wd))
    m      <- beta1 * m + (1 - beta1) * g       first moment
    v      <- beta2 * v + (1 - beta2) * g^2     second moment
    v_max  <- max(v_max, v)                     (amsgrad only; then v_max replaces v below)
    p      <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

`cautious=True` (Liang et al. 2024, not torch's): m in the last line is masked where its sign
disagrees with g's and scaled by 1 / (fraction kept) per tensor (`_foreach.cautious_updates`).

Same arguments, defaults, state keys (`step`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`) and
floating-point order of operations as `torch.optim.Adam` (its foreach path), so the two agree
to rounding and their checkpoints are interchangeable. torch's switches and tensor `lr`/`betas`
are taken as torch takes them (docs/optimizers.md, "Drop-in"). `compiled=True` runs `adam_kernel` through torch.compile
instead: one fused loop per param, not bit-exact (see `optlab.optim._foreach.run_compiled`).
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import (
    by_device_and_dtype,
    cache_blocks,
    cautious_updates,
    closure_loss,
    effective_grads,
    grads_of_groups,
    new_step,
    plain,
    run_compiled,
)
from optlab.optim.hyperparameters import check, check_torch_switches, value


def adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    cautious: bool = False,
) -> None:
    """One Adam/AdamW step for a list of params, in place, with multi-tensor `_foreach` ops
    (block by block on CPU, see `optlab.optim._foreach.cache_blocks`).

    All lists are aligned (item i belongs to params[i]); `max_exp_avg_sqs` may be empty when
    `amsgrad` is False. `steps` holds each param's step count as a scalar tensor *before*
    this update: this function increments it (so state starts at 0, as in torch).
    `grads` are not modified. Tensors may live on several devices/dtypes; they are grouped.
    A tensor lr or beta gives the per-step scalars in its own dtype, as torch's step computes them.
    """
    for p, g, m, v, v_max, t in by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps):
        torch._foreach_add_(t, 1.0)
        # Bias corrections depend on each param's own step, so they are per-tensor scalars.
        # The step lives on the CPU: reading it costs no device sync.
        step_values = [s.item() for s in t]
        step_sizes = [float(-lr / (1 - beta1**s)) for s in step_values]
        bc2_sqrts = [float((1 - beta2**s) ** 0.5) for s in step_values]
        decay, one_minus_beta1, b2, one_minus_beta2 = map(float, (1 - lr * weight_decay, 1 - beta1, beta2, 1 - beta2))

        whole = [[p, g, m, v, v_max, step_sizes, bc2_sqrts]]  # cautious needs each tensor whole
        blocks = whole if cautious else cache_blocks(p, g, m, v, v_max, step_sizes, bc2_sqrts)
        for p, g, m, v, v_max, step_sizes, bc2_sqrts in blocks:
            if decoupled_weight_decay and weight_decay != 0:
                torch._foreach_mul_(p, decay)
            g = effective_grads(g, p, maximize, 0.0 if decoupled_weight_decay else weight_decay)

            torch._foreach_lerp_(m, g, one_minus_beta1)  # m + (1 - beta1) * (g - m)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, g, g, one_minus_beta2)
            update = cautious_updates(m, g) if cautious else m  # m / denom has m's signs
            del g  # drop any negated/decayed copy of the grads before denom is allocated: lower peak memory

            if amsgrad:
                torch._foreach_maximum_(v_max, v)
                denom = torch._foreach_sqrt(v_max)
            else:
                denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, bc2_sqrts)
            torch._foreach_add_(denom, eps)  # eps outside the sqrt and after bias correction
            torch._foreach_addcdiv_(p, update, denom, step_sizes)


def adam_kernel(
    p: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    v_max: Tensor | None,
    h: Tensor,
    *,
    weight_decay: bool,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    """`adam_update` for one param (step counter aside), for the compiled path; h = (weight
    decay: 1 - lr * wd if decoupled else wd, 1 - beta1, beta2, 1 - beta2, eps, sqrt(1 - beta2^t),
    -lr / (1 - beta1^t))."""
    if maximize:
        g = -g
    if weight_decay:
        if decoupled_weight_decay:
            p.mul_(h[0])
        else:
            g = g + h[0] * p
    m.lerp_(g, h[1])
    v.mul_(h[2]).addcmul_(g, h[3] * g)
    if amsgrad:
        v = v_max.copy_(torch.maximum(v_max, v))
    p.add_(h[6] * (m / (v.sqrt() / h[5] + h[4])))


def adam_compiled(params: list[Tensor], grads: list[Tensor], states: list[dict], group: dict) -> None:
    """One Adam/AdamW step of a param group through `adam_kernel`, compiled; `states` (the params'
    optimizer state) aligned with `params`."""
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1.0)
    lr, wd, (beta1, beta2) = value(group["lr"]), group["weight_decay"], map(value, group["betas"])
    decay = 1 - lr * wd if group["decoupled_weight_decay"] else wd
    scalars = [
        [decay, 1 - beta1, beta2, 1 - beta2, group["eps"], (1 - beta2**t) ** 0.5, -lr / (1 - beta1**t)]
        for t in (s.item() for s in steps)
    ]
    tensors = [
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [s.get("max_exp_avg_sq") for s in states],
    ]
    run_compiled(
        adam_kernel,
        tensors,
        scalars,
        weight_decay=wd != 0,
        amsgrad=group["amsgrad"],
        decoupled_weight_decay=group["decoupled_weight_decay"],
        maximize=group["maximize"],
    )


class Adam(Optimizer):
    """Adam with torch's arguments and defaults; see the module docstring for the update.

    `compiled=True` (keyword-only, not torch's) steps through torch.compile (`adam_kernel`): on CPU
    about 2x faster than the default path after a one-time compile of a few seconds; agrees with
    it to ~1e-7 relative per step, not bit for bit (benchmarks/optim_step.py).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        cautious: bool = False,
        compiled: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_torch_switches(type(self).__name__, foreach, fused, differentiable, capturable)
        check(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
            cautious=cautious,
        )
        super().__init__(params, defaults)
        self.compiled = compiled

    def __setstate__(self, state: dict) -> None:
        # Called by load_state_dict too: fill keys an older or foreign checkpoint may lack.
        super().__setstate__(state)
        self.__dict__.setdefault("compiled", False)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", False)
            group.setdefault("cautious", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            for p in params:
                state = self.state[p]
                if not state:  # lazy init: state exists only for params that got a gradient
                    state["step"] = new_step()
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"] and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states = [self.state[p] for p in params]
            if self.compiled and plain(params) and not group["cautious"]:
                adam_compiled(params, grads, states, group)
            else:
                beta1, beta2 = group["betas"]
                adam_update(
                    params,
                    grads,
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
                    [s["step"] for s in states],
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    decoupled_weight_decay=group["decoupled_weight_decay"],
                    amsgrad=group["amsgrad"],
                    maximize=group["maximize"],
                    cautious=group["cautious"],
                )
        return loss
