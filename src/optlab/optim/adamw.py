r"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

    p <- p * (1 - lr * wd)                      decay the weights directly...
    p <- Adam step computed from g alone        ...so wd never enters m or v

Identical to `optlab.optim.Adam(..., decoupled_weight_decay=True)`; like torch.optim.AdamW
the default weight_decay is 1e-2 rather than 0. `compiled=True`: see `optlab.optim.adam.Adam`.
"""

from torch.optim.optimizer import ParamsT

from optlab.optim.adam import Adam


class AdamW(Adam):
    """AdamW with torch's arguments and defaults; the math is `optlab.optim.adam.adam_update`."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        cautious: bool = False,
        compiled: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            cautious=cautious,
            compiled=compiled,
            foreach=foreach,
            fused=fused,
            differentiable=differentiable,
            capturable=capturable,
        )

    def __setstate__(self, state: dict) -> None:
        # A checkpoint from (torch's or our) Adam must not turn this back into L2 decay.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
