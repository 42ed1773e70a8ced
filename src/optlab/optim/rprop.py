r"""Rprop (Riedmiller & Braun, 1993, "A Direct Adaptive Method for Faster Backpropagation Learning:
The RPROP Algorithm"), as torch.optim.Rprop runs it (the Rprop- variant).

Each weight has its own step size d (started at lr) and moves by d against the sign of its
gradient; only the gradient's sign is used, never its size. With gradient g (negated when
`maximize`) and the previous step's gradient g_prev:

    s <- sign(g * g_prev)                    did the gradient keep its sign?
    d <- clamp(d * (eta_plus if s > 0 else eta_minus if s < 0 else 1), step_min, step_max)
    g <- 0 where s < 0                       a sign change: skip this weight once, forget g
    p <- p - d * sign(g)
    g_prev <- g

Defaults as torch: lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50). Rprop was made for full-batch
training: on mini-batches the gradient's sign flips with the batch and the step sizes shrink,
which is what `optimizer=rprop` on digits shows. State per param: `step`, `prev`, `step_size`
(torch's keys, so checkpoints load either way).
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import by_device_and_dtype, cache_blocks, closure_loss, grads_of_groups, new_step
from optlab.optim.hyperparameters import check, check_etas, check_torch_switches, value


def rprop_update(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    steps: list[Tensor],
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float,
    step_size_max: float,
    maximize: bool,
) -> None:
    """One Rprop step for aligned lists, in place (block by block on CPU, see `cache_blocks`)."""
    for device_lists in by_device_and_dtype(params, grads, prevs, step_sizes, steps):
        torch._foreach_add_(device_lists[-1], 1.0)
        for p, g, prev, d in cache_blocks(*device_lists[:-1]):
            signs = torch._foreach_mul(g, prev)
            if maximize:
                torch._foreach_neg_(signs)
            torch._foreach_sign_(signs)
            # torch writes etaplus / etaminus / 1 into the sign tensor; a NaN sign stays NaN.
            factors = [
                torch.where(s > 0, etaplus, torch.where(s < 0, etaminus, torch.where(s == 0, 1.0, s))) for s in signs
            ]
            del signs
            torch._foreach_mul_(d, factors)
            torch._foreach_clamp_min_(d, step_size_min)
            torch._foreach_clamp_max_(d, step_size_max)
            g = [torch.where(f == etaminus, 0.0, -x if maximize else x) for f, x in zip(factors, g)]
            torch._foreach_addcmul_(p, torch._foreach_sign(g), d, value=-1)
            for old, new in zip(prev, g):  # copy_ one by one: DTensors have no _foreach_copy_
                old.copy_(new)


class Rprop(Optimizer):
    """Rprop; see the module docstring for the update. torch.optim.Rprop's arguments and state."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_torch_switches(type(self).__name__, foreach, None, differentiable, capturable)
        check(lr=lr)
        check_etas(etas)
        defaults = dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), maximize=maximize)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            for p, g in zip(params, grads):
                state = self.state[p]
                if not state:  # lazy init, torch's keys: every step size starts at lr
                    state["step"] = new_step()
                    state["prev"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step_size"] = torch.full_like(g, value(group["lr"]))
            states = [self.state[p] for p in params]
            etaminus, etaplus = group["etas"]
            step_size_min, step_size_max = group["step_sizes"]
            rprop_update(
                params,
                grads,
                [s["prev"] for s in states],
                [s["step_size"] for s in states],
                [s["step"] for s in states],
                etaminus=etaminus,
                etaplus=etaplus,
                step_size_min=step_size_min,
                step_size_max=step_size_max,
                maximize=group["maximize"],
            )
        return loss
