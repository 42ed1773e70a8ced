"""Turn a model's named parameters into optimizer param groups.

- No weight decay on biases and normalization weights (any parameter with dim <= 1): decaying them
  only fights the normalization and hurts accuracy (nanoGPT, timm and most recipes do the same).
- Per-prefix learning-rate scales, e.g. {"backbone": 0.1} to finetune a pretrained backbone slower.
- Frozen parameters (requires_grad=False) are left out.
"""

from collections.abc import Callable, Iterable

import torch
from torch import nn


def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                 no_decay_bias_norm: bool = True, lr_scales: dict[str, float] | None = None) -> list[dict]:
    lr_scales = dict(lr_scales or {})
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        # The longest matching prefix wins, so "backbone.layer4" can override "backbone".
        match = max((k for k in lr_scales if name == k or name.startswith(k + ".") or f".{k}." in f".{name}"),
                    key=len, default=None)
        scale = lr_scales[match] if match is not None else 1.0
        decay = not (no_decay_bias_norm and p.ndim <= 1)
        group = groups.setdefault((scale, decay), {
            "params": [], "param_names": [], "lr": lr * scale, "weight_decay": weight_decay if decay else 0.0,
        })
        group["params"].append(p)
        group["param_names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters (is everything frozen?)")
    return list(groups.values())


def build_optimizer(model: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                    no_decay_bias_norm: bool = True, lr_scales: dict[str, float] | None = None
                    ) -> torch.optim.Optimizer:
    """`optimizer` is a partial of an optimizer class with its hyperparameters (from conf/optimizer)."""
    defaults = getattr(optimizer, "keywords", {})
    lr = defaults.get("lr", 1e-3)
    weight_decay = defaults.get("weight_decay", 0.0)
    groups = param_groups(model.named_parameters(), lr, weight_decay, no_decay_bias_norm, lr_scales)
    return optimizer(groups)
