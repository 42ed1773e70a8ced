"""Optimizer paths on a 2-D function, and the names the CLI knows optimizers by.

`trajectory(fn, xy, optimizer_cls, n_iters, **hparams)` puts the point in one 2-element parameter,
runs any `torch.optim.Optimizer` subclass on it for `n_iters` steps (zero_grad, f(p).backward(),
step; done through a closure, so optimizers that need one, like LBFGS, work too) and returns the
`(n_iters + 1, 2)` path, first row the start point.

Optimizer names map to dotted paths, imported only when used, so ours and torch's can be compared
side by side: "adam" is `optlab.optim.adam.Adam`, "torch_adam" is `torch.optim.Adam`. A name with a
dot in it is taken as a dotted path itself. Muon is left out: it orthogonalizes the update of a
weight *matrix*; a single 2-D point is a vector, for which it is not defined (torch's Muon rejects
non-2-D parameters).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch
from torch import Tensor

from optlab.landscape.functions import TestFunction, get_function

# name -> (dotted path of the class, hparams it runs with unless overridden)
OPTIMIZERS: dict[str, tuple[str, dict]] = {
    "sgd": ("optlab.optim.sgd.SGD", {}),
    "momentum": ("optlab.optim.sgd.SGD", {"momentum": 0.9}),
    "nesterov": ("optlab.optim.sgd.SGD", {"momentum": 0.9, "nesterov": True}),
    "rmsprop": ("optlab.optim.rmsprop.RMSprop", {}),
    "adam": ("optlab.optim.adam.Adam", {}),
    "adamw": ("optlab.optim.adamw.AdamW", {}),
    "lion": ("optlab.optim.lion.Lion", {}),
    "rprop": ("optlab.optim.rprop.Rprop", {}),
    "nadamw": ("optlab.optim.nadam.NAdamW", {}),
    "adopt": ("optlab.optim.adopt.ADOPT", {}),
    "adamw_schedulefree": ("optlab.optim.schedulefree.AdamWScheduleFree", {}),
    "sgd_schedulefree": ("optlab.optim.schedulefree.SGDScheduleFree", {}),
    "torch_sgd": ("torch.optim.SGD", {}),
    "torch_momentum": ("torch.optim.SGD", {"momentum": 0.9}),
    "torch_nesterov": ("torch.optim.SGD", {"momentum": 0.9, "nesterov": True}),
    "torch_rmsprop": ("torch.optim.RMSprop", {}),
    "torch_adam": ("torch.optim.Adam", {}),
    "torch_adamw": ("torch.optim.AdamW", {}),
    "torch_rprop": ("torch.optim.Rprop", {}),
    "torch_nadamw": ("torch.optim.NAdam", {"decoupled_weight_decay": True}),
}
DEFAULT_OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")


def family(name: str) -> str:
    """The key a function's `lrs` uses for an optimizer name: torch_adam and adam share "adam"."""
    return name.removeprefix("torch_")


def import_object(dotted: str):
    module, _, attr = dotted.rpartition(".")
    if not module:
        raise ImportError(f"{dotted!r} is not a dotted path (package.module.Class)")
    return getattr(importlib.import_module(module), attr)


def resolve_optimizer(name_or_cls: str | type[torch.optim.Optimizer]) -> tuple[type[torch.optim.Optimizer], dict]:
    """(class, default hparams) for a registered name, a dotted path, or a class."""
    if not isinstance(name_or_cls, str):
        return name_or_cls, {}
    if name_or_cls in OPTIMIZERS:
        dotted, hparams = OPTIMIZERS[name_or_cls]
    elif "." in name_or_cls:
        dotted, hparams = name_or_cls, {}
    else:
        raise KeyError(f"unknown optimizer {name_or_cls!r}; choose one of: {', '.join(OPTIMIZERS)} (or a dotted path)")
    cls = import_object(dotted)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"{dotted} is not a torch.optim.Optimizer subclass")
    return cls, dict(hparams)


def trajectory(
    fn: TestFunction | str,
    xy: Tensor | Sequence[float] | None,
    optimizer_cls: type[torch.optim.Optimizer] | str,
    n_iters: int,
    *,
    dtype: torch.dtype | None = None,
    **hparams,
) -> Tensor:
    """The `(n_iters + 1, 2)` path of `optimizer_cls(**hparams)` on `fn` from `xy` (first row).

    fn: a function object or its registered name. xy: the start point; None uses `fn.start`.
    optimizer_cls: any `torch.optim.Optimizer` subclass, or a name from `OPTIMIZERS` (whose default
    hparams, e.g. momentum=0.9, apply under `hparams`). dtype: of the parameter; default is xy's
    dtype when it is a floating tensor, else torch's default dtype (float32). The path is returned
    detached, on xy's device. A diverging optimizer is not stopped: its path holds inf/nan.
    """
    fn = get_function(fn) if isinstance(fn, str) else fn
    cls, defaults = resolve_optimizer(optimizer_cls)
    if n_iters < 0:
        raise ValueError(f"n_iters must be >= 0, got {n_iters}")
    if xy is None:
        xy = fn.start
    if dtype is None:
        dtype = xy.dtype if isinstance(xy, Tensor) and xy.is_floating_point() else torch.get_default_dtype()
    start = torch.as_tensor(xy, dtype=dtype).detach().clone().reshape(-1)
    if start.numel() != 2:
        raise ValueError(f"xy must hold 2 numbers, got shape {tuple(torch.as_tensor(xy).shape)}")
    param = torch.nn.Parameter(start)
    optimizer = cls([param], **{**defaults, **hparams})
    if callable(getattr(optimizer, "train", None)):  # schedule-free: the path is y, where gradients are taken
        optimizer.train()
    path = torch.empty(n_iters + 1, 2, dtype=dtype, device=param.device)
    path[0] = param.detach()

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = fn(param)
        loss.backward()
        return loss

    for i in range(n_iters):
        optimizer.step(closure)  # the same as zero_grad, backward, step(); LBFGS-style optimizers need it
        path[i + 1] = param.detach()
    return path
