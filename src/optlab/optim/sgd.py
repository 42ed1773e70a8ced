r"""Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD.

With gradient g (negated when `maximize`):

    g <- g + wd * p                                   L2 weight decay
    b <- g                      on the first step      momentum buffer starts at g, undamped
    b <- mu * b + (1 - dampening) * g   afterwards
    d <- g + mu * b  if nesterov  else  b             (d = g when mu = 0: no buffer kept)
    p <- p - lr * d

Same arguments, defaults, state key (`momentum_buffer`) and order of floating-point operations
as `torch.optim.SGD`, so the two agree to rounding and share checkpoints. Not supported:
torch's `foreach`/`fused`/`differentiable` switches (always the multi-tensor path), tensor
`lr`, sparse gradients.
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import params_with_grad


def sgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """One SGD step, in place. `momentum_buffers` is aligned with `params` (ignored when
    momentum is 0); its None entries are replaced by the newly created buffers."""
    if not params:
        return
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, momentum_buffers], with_indices=True
    )
    for (p, g, bufs), indices in grouped.values():
        if maximize:
            g = torch._foreach_neg(g)  # a fresh list we may update in place below
        if weight_decay != 0:
            if maximize:
                torch._foreach_add_(g, p, alpha=weight_decay)
            else:  # never write into p.grad
                g = torch._foreach_add(g, p, alpha=weight_decay)

        if momentum != 0:
            old = [i for i, b in enumerate(bufs) if b is not None]
            if old:
                torch._foreach_mul_([bufs[i] for i in old], momentum)
                torch._foreach_add_([bufs[i] for i in old], [g[i] for i in old], alpha=1 - dampening)
            for i, b in enumerate(bufs):
                if b is None:  # first step: the buffer is the gradient itself, not (1-dampening)*g
                    bufs[i] = momentum_buffers[indices[i]] = g[i].clone()
            g = torch._foreach_add(g, bufs, alpha=momentum) if nesterov else bufs

        torch._foreach_add_(p, g, alpha=-lr)


class SGD(Optimizer):
    """SGD with torch's arguments and defaults; see the module docstring for the update."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={momentum}, dampening={dampening})"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        # Called by load_state_dict too: fill keys an older or foreign checkpoint may lack.
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params, grads = params_with_grad(group, "SGD")
            use_buffers = group["momentum"] != 0
            bufs = [self.state[p].get("momentum_buffer") for p in params] if use_buffers else []
            sgd_update(
                params,
                grads,
                bufs,
                lr=group["lr"],
                momentum=group["momentum"],
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
            )
            for p, b in zip(params, bufs):  # keep buffers created on this step
                self.state[p]["momentum_buffer"] = b
        return loss
