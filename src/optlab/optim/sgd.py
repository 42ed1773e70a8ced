r"""Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD.

With gradient g (negated when `maximize`):

    g <- g + wd * p                                   L2 weight decay
    b <- g                      on the first step      momentum buffer starts at g, undamped
    b <- mu * b + (1 - dampening) * g   afterwards
    d <- g + mu * b  if nesterov  else  b             (d = g when mu = 0: no buffer kept)
    p <- p - lr * d

Same arguments, defaults, state key (`momentum_buffer`) and order of floating-point operations
as `torch.optim.SGD`, so the two agree to rounding and share checkpoints. torch's switches and
a tensor `lr` are taken as torch takes them (docs/optimizers.md, "Drop-in"); sparse gradients are
refused. `compiled=True` runs `sgd_kernel` through torch.compile instead
(one fused loop per param, not bit-exact; see `optlab.optim._foreach.run_compiled`).
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import cache_blocks, closure_loss, effective_grads, grads_of_groups, plain, run_compiled
from optlab.optim.hyperparameters import check, check_torch_switches, value


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
    """One SGD step, in place, block by block on CPU (see `cache_blocks`). `momentum_buffers` is
    aligned with `params` (ignored when momentum is 0); its None entries are replaced by the newly
    created buffers."""
    if not params:
        return
    grouped = Optimizer._group_tensors_by_device_and_dtype([params, grads, momentum_buffers], with_indices=True)
    for (device_p, device_g, device_bufs), indices in grouped.values():
        # A param's first step: its buffer will start as the gradient itself, not (1-dampening)*g.
        firsts = [b is None for b in device_bufs]
        for i in [i for i, is_first in enumerate(firsts) if is_first]:
            device_bufs[i] = momentum_buffers[indices[i]] = torch.empty_like(device_g[i])
        for p, g, bufs, first in cache_blocks(device_p, device_g, device_bufs, firsts):
            g = effective_grads(g, p, maximize, weight_decay)

            if momentum != 0:
                old = [i for i, is_first in enumerate(first) if not is_first]
                if old:
                    torch._foreach_mul_([bufs[i] for i in old], momentum)
                    torch._foreach_add_([bufs[i] for i in old], [g[i] for i in old], alpha=1 - dampening)
                for b, g_i, is_first in zip(bufs, g, first):
                    if is_first:
                        b.copy_(g_i)
                g = torch._foreach_add(g, bufs, alpha=momentum) if nesterov else bufs

            torch._foreach_add_(p, g, alpha=-lr)


def sgd_kernel(
    p: Tensor,
    g: Tensor,
    buf: Tensor | None,
    h: Tensor,
    *,
    momentum: bool,
    nesterov: bool,
    weight_decay: bool,
    maximize: bool,
) -> None:
    """`sgd_update` for one param, for the compiled path; h = (lr, momentum, 1 - dampening,
    weight_decay). Needs the momentum buffer to exist (the first step runs `sgd_update`)."""
    if maximize:
        g = -g
    if weight_decay:
        g = g + h[3] * p
    if momentum:
        buf.mul_(h[1]).add_(h[2] * g)
        g = g + h[1] * buf if nesterov else buf
    p.sub_(h[0] * g)


class SGD(Optimizer):
    """SGD with torch's arguments and defaults; see the module docstring for the update.

    `compiled=True` (keyword-only, not torch's) steps through torch.compile (`sgd_kernel`): on CPU
    about 2x faster than the default path after a one-time compile of a few seconds; agrees with
    it to ~1e-7 relative per step, not bit for bit (benchmarks/optim_step.py).
    """

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
        compiled: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_torch_switches(type(self).__name__, foreach, fused, differentiable, capturable)
        check(lr=lr, momentum=momentum, weight_decay=weight_decay)
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
        self.compiled = compiled

    def __setstate__(self, state: dict) -> None:
        # Called by load_state_dict too: fill keys an older or foreign checkpoint may lack.
        super().__setstate__(state)
        self.__dict__.setdefault("compiled", False)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            use_buffers = group["momentum"] != 0
            bufs = [self.state[p].get("momentum_buffer") for p in params] if use_buffers else []
            # The compiled kernel needs the buffers: a param's first step goes through sgd_update.
            if self.compiled and all(b is not None for b in bufs) and plain(params):
                hyper = [value(group["lr"]), group["momentum"], 1 - group["dampening"], group["weight_decay"]]
                run_compiled(
                    sgd_kernel,
                    [params, grads, bufs or [None] * len(params)],
                    [hyper],
                    momentum=use_buffers,
                    nesterov=group["nesterov"],
                    weight_decay=group["weight_decay"] != 0,
                    maximize=group["maximize"],
                )
            else:
                sgd_update(
                    params,
                    grads,
                    bufs,
                    lr=value(group["lr"]),
                    momentum=group["momentum"],
                    dampening=group["dampening"],
                    weight_decay=group["weight_decay"],
                    nesterov=group["nesterov"],
                    maximize=group["maximize"],
                )
                for p, b in zip(params, bufs):  # keep buffers created on this step
                    self.state[p]["momentum_buffer"] = b
        return loss
