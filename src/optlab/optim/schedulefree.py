r"""Schedule-free SGD and AdamW (Defazio et al., 2024, "The Road Less Scheduled"; the AlgoPerf 2024
self-tuning winner): no lr schedule, and an average of the iterates comes for free.

Three sequences per param: z (the SGD/AdamW iterate, in the state), x (a weighted average of the
z's: the weights to evaluate) and y (where the gradient is taken, between them: the weights to
train). The optimizer holds y in the param while training and x while evaluating; `train()` and
`eval()` switch (p <- lerp(p, z, 1 - beta1) and its inverse). With g the gradient at y, step k:

    lr_k  = lr * min(1, (k + 1) / warmup_steps)                   the only schedule: a warmup
    c     = w_k / sum(w_1..w_k),  w_k = (k + 1)^r * max(lr_1..lr_k)^weight_lr_power
    d     = g                             (SGD)   |   g / (sqrt(v / (1 - beta2^(k+1))) + eps),
                                                      v <- beta2 v + (1 - beta2) g^2   (AdamW)
    d    += weight_decay * y              (the decay is taken at y)
    y    <- lerp(y, z, c) + lr_k * (beta1 * (1 - c) - 1) * d       (beta1: `momentum` for SGD)
    z    <- z - lr_k * d

Argument names, defaults, param-group keys (`k`, `train_mode`, `weight_sum`, `lr_max`,
`scheduled_lr`) and state keys (`z`, `exp_avg_sq`) are those of the `schedulefree` package (the
reference of the tests), so their state_dicts load into each other. Unlike it, `step()` never
writes into p.grad. In train.py, the `ScheduleFreeModes` callback calls train()/eval() around
validation, testing and checkpoints, and recomputes BatchNorm statistics for the x weights.
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from optlab.optim._foreach import by_device_and_dtype, cache_blocks, closure_loss, grads_of_groups
from optlab.optim.hyperparameters import HyperparameterError, check, value


class _ScheduleFree(Optimizer):
    """The train/eval switch and the averaging weights both variants share; `_beta1(group)` is
    beta1 (AdamW) or momentum (SGD), `_direction` the update direction d of the module docstring
    (the weight decay included), from the state tensors named by STATE after z."""

    STATE: tuple[str, ...] = ()

    def __init__(self, params: ParamsT, **arguments) -> None:
        # the package's group keys: the step count and the average's running weights; `foreach` is
        # kept for the package's optimizer to read from our state_dict (ours is always foreach)
        defaults = dict(arguments, k=0, train_mode=False, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0)
        super().__init__(params, defaults)

    @staticmethod
    def _beta1(group: dict) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def eval(self) -> None:
        """Hold x, the averaged weights, in the params (for validation, testing and checkpoints)."""
        for group in self.param_groups:
            if group["train_mode"]:
                self._move(group, 1 - 1 / self._beta1(group))
                group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Hold y, the weights the gradient is taken at, in the params (for training steps)."""
        for group in self.param_groups:
            if not group["train_mode"]:
                self._move(group, 1 - self._beta1(group))
                group["train_mode"] = True

    def _move(self, group: dict, weight: float) -> None:
        for p in group["params"]:
            z = self.state[p].get("z")
            if z is not None:
                p.lerp_(end=z.to(p.device), weight=weight)

    def _direction(self, group: dict, y: list[Tensor], grads: list[Tensor], state: list[list[Tensor]], step: int):
        """d of the module docstring for one block of params (y) of one device and dtype; never p.grad."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(
                f"{type(self).__name__}.step() in eval mode: call optimizer.train() before training steps "
                "(train.py's ScheduleFreeModes callback does)"
            )
        loss = closure_loss(closure)

        for group, params, grads in grads_of_groups(self):
            k = group["k"]
            warmup = group["warmup_steps"]
            lr = value(group["lr"]) * ((k + 1) / warmup if k < warmup else 1.0)
            group["scheduled_lr"] = lr
            lr_max = group["lr_max"] = max(lr, group["lr_max"])
            weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
            weight_sum = group["weight_sum"] = group["weight_sum"] + weight
            c = weight / weight_sum if weight_sum != 0 else 0.0
            for p in params:
                if "z" not in self.state[p]:
                    self._init_state(self.state[p], p)
            states = [[self.state[p][key] for p in params] for key in ("z", *self.STATE)]
            for device_lists in by_device_and_dtype(params, grads, *states):
                # block by block on CPU: the ops below run while a block is in the cache (bit-exact)
                for y, g, z, *state in cache_blocks(*device_lists):
                    d = self._direction(group, y, g, state, k + 1)
                    torch._foreach_lerp_(y, z, weight=c)
                    torch._foreach_add_(y, d, alpha=lr * (self._beta1(group) * (1 - c) - 1))
                    torch._foreach_sub_(z, d, alpha=lr)
            group["k"] = k + 1
        return loss

    def _init_state(self, state: dict, p: Tensor) -> None:
        state["z"] = torch.clone(p, memory_format=torch.preserve_format)


class SGDScheduleFree(_ScheduleFree):
    """Schedule-free SGD (`optimizer=sgd_schedulefree`); schedulefree.SGDScheduleFree's arguments."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = None,
    ) -> None:
        check(lr=lr, weight_decay=weight_decay)
        if not 0 < momentum < 1:
            raise HyperparameterError(
                f"Momentum must be between 0 and 1 exclusive: {momentum}", "momentum", "a number in (0, 1)"
            )
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            foreach=foreach,
        )

    @staticmethod
    def _beta1(group: dict) -> float:
        return group["momentum"]

    def _direction(self, group, y, grads, state, step) -> list[Tensor]:
        if group["weight_decay"] == 0:
            return grads  # only read from here on
        return torch._foreach_add(grads, y, alpha=group["weight_decay"])


class AdamWScheduleFree(_ScheduleFree):
    """Schedule-free AdamW (`optimizer=adamw_schedulefree`); schedulefree.AdamWScheduleFree's arguments."""

    STATE = ("exp_avg_sq",)

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = None,
    ) -> None:
        check(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay)
        super().__init__(
            params,
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            foreach=foreach,
        )

    @staticmethod
    def _beta1(group: dict) -> float:
        return value(group["betas"][0])

    def _init_state(self, state: dict, p: Tensor) -> None:
        super()._init_state(state, p)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _direction(self, group, y, grads, state, step) -> list[Tensor]:
        beta2, (v,) = value(group["betas"][1]), state
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        denom = torch._foreach_div(v, 1 - beta2**step)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, group["eps"])
        d = torch._foreach_div(grads, denom)
        if group["weight_decay"] != 0:
            torch._foreach_add_(d, y, alpha=group["weight_decay"])
        return d
