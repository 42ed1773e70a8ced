r"""NAdam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam") and NAdamW, NAdam with
decoupled weight decay: the baseline optimizer of the AlgoPerf benchmark (Dahl et al., 2023).
Exactly torch.optim.NAdam (`decoupled_weight_decay=True` for NAdamW).

Adam whose first moment looks one step ahead, with a momentum coefficient that warms up. With
gradient g (negated when `maximize`, plus wd * p unless the decay is decoupled), step t:

    mu_t  = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))      the warming-up momentum
    P_t   = P_{t-1} * mu_t                                      its running product (state)
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    d  = sqrt(v / (1 - beta2^t)) + eps
    p <- p * (1 - lr * wd)                                      NAdamW only (decoupled)
    p <- p - lr * (1 - mu_t) / (1 - P_t) * g / d - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d

Defaults as torch: lr=2e-3, betas=(0.9, 0.999), eps=1e-8, momentum_decay=4e-3, weight_decay=0
(NAdamW too, as its reference; `optimizer=nadamw` sets one). State per param: `step`, `mu_product`, `exp_avg`,
`exp_avg_sq` (torch's keys: checkpoints load either way).
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
)
from optlab.optim.hyperparameters import check, check_torch_switches


def nadam_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    """One NAdam step for aligned lists, in place. `steps` and `mu_products` are CPU scalar tensors
    (read without a device sync); per-param scalars are computed as torch's step computes them."""
    for p, g, m, v, mu_prod, t in by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, mu_products, steps):
        torch._foreach_add_(t, 1.0)
        step_values = [s.item() for s in t]
        mus = [beta1 * (1.0 - 0.5 * (0.96 ** (s * momentum_decay))) for s in step_values]
        mu_nexts = [beta1 * (1.0 - 0.5 * (0.96 ** ((s + 1) * momentum_decay))) for s in step_values]
        for product, mu in zip(mu_prod, mus):
            product.mul_(mu)  # a float32 scalar, as torch keeps it
        products = [product.item() for product in mu_prod]
        bc2s = [float(1 - beta2**s) for s in step_values]
        grad_scales = [float(-lr * (1.0 - mu) / (1.0 - pr)) for mu, pr in zip(mus, products)]
        avg_scales = [float((-lr * nxt) / (1.0 - pr * nxt)) for nxt, pr in zip(mu_nexts, products)]
        decay, one_minus_beta1, b2, one_minus_beta2 = map(float, (1 - lr * weight_decay, 1 - beta1, beta2, 1 - beta2))

        blocks = cache_blocks(p, g, m, v, bc2s, grad_scales, avg_scales)
        for p, g, m, v, bc2s, grad_scales, avg_scales in blocks:
            if decoupled_weight_decay and weight_decay != 0:
                torch._foreach_mul_(p, decay)
            g = effective_grads(g, p, maximize, 0.0 if decoupled_weight_decay else weight_decay)
            torch._foreach_lerp_(m, g, one_minus_beta1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, g, g, one_minus_beta2)
            denom = torch._foreach_div(v, bc2s)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(p, g, denom, grad_scales)
            torch._foreach_addcdiv_(p, m, denom, avg_scales)


class NAdam(Optimizer):
    """NAdam; see the module docstring. torch.optim.NAdam's arguments, defaults and state."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_torch_switches(type(self).__name__, foreach, None, differentiable, capturable)
        # torch's NAdam takes betas of mixed types (a float and a tensor); so does ours
        check(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay, momentum_decay=momentum_decay, mixed_betas=True)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)  # also the end of load_state_dict
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", False)
        # load_state_dict casts state to each param's dtype, `step` excepted: back to a float32 CPU
        # scalar (lossless), so a resumed run rounds its products as the uninterrupted one does.
        for param_state in self.state.values():
            if isinstance(param_state.get("mu_product"), Tensor):
                param_state["mu_product"] = param_state["mu_product"].to(device="cpu", dtype=torch.float32)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            for p in params:
                state = self.state[p]
                if not state:  # lazy init, torch's keys and CPU scalars
                    state["step"] = new_step()
                    state["mu_product"] = torch.tensor(1.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states = [self.state[p] for p in params]
            beta1, beta2 = group["betas"]
            nadam_update(
                params,
                grads,
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["mu_product"] for s in states],
                [s["step"] for s in states],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                momentum_decay=group["momentum_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
                maximize=group["maximize"],
            )
        return loss


class NAdamW(NAdam):
    """NAdam with decoupled weight decay (`optimizer=nadamw`): torch.optim.NAdam(decoupled_weight_decay=True)."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            momentum_decay,
            decoupled_weight_decay=True,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)  # a checkpoint of NAdam must not turn this back into L2 decay
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
