"""Turn a model's named parameters into optimizer param groups.

- No weight decay on biases and normalization weights (any parameter with dim <= 1): decaying them
  only fights the normalization and hurts accuracy (nanoGPT, timm and most recipes do the same).
- Per-prefix learning-rate scales, e.g. {"backbone": 0.1} to finetune a pretrained backbone slower.
- Layer-wise lr decay (`layer_decay`, BEiT/ELECTRA-style finetuning): the layer k steps below the
  top trains at lr * layer_decay**k, so early, generic features move least. Layers come from the
  network's `lr_layers()` (name prefixes, input to output), else from its top-level children.
  Scales multiply: lr = lr * lr_scale * layer_decay**depth_from_top.
- Frozen parameters (requires_grad=False) are left out.
"""

import inspect
from collections.abc import Callable, Iterable

import torch
from torch import nn

LAYER_DECAY_RULE = "a number in (0, 1] (e.g. 0.75), or null"


def layer_decay_ok(value) -> bool:
    """The one rule for layer_decay (optlab.validate checks configs with it before anything runs)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1)


def _matches(name: str, prefix: str) -> bool:
    """`prefix` names a module on `name`'s path: "backbone" matches "net.backbone.conv1.weight"."""
    return name == prefix or name.startswith(prefix + ".") or f".{prefix}." in f".{name}"


Layer = tuple[str, ...]  # the name prefixes of one layer's modules


def layer_prefixes(model: nn.Module) -> list[Layer]:
    """The model's layers, input to output, as name prefixes seen from `model`."""
    for path, module in model.named_modules():
        if hasattr(module, "lr_layers"):
            layers = [(entry,) if isinstance(entry, str) else tuple(entry) for entry in module.lr_layers()]
            return [tuple(f"{path}.{p}" if path else p for p in layer) for layer in layers]
    inner = model
    while len(children := [c for c in inner.named_children() if any(True for _ in c[1].parameters())]) == 1:
        inner = children[0][1]  # e.g. a LightningModule holding one net (metrics have no parameters)
    root = next((path for path, m in model.named_modules() if m is inner), "")
    return [(f"{root}.{name}" if root else name,) for name, _ in inner.named_children()]


def _layer_scale(name: str, layers: list[Layer], layer_decay: float) -> float:
    # The longest matching prefix wins, so a layer listed inside another is its own layer.
    hits = [(len(p), i) for i, layer in enumerate(layers) for p in layer if _matches(name, p)]
    depth = max(hits)[1] if hits else None
    if depth is None:
        raise ValueError(
            f"param_groups.layer_decay: parameter {name!r} is in none of the layers {layers}; "
            "list it in the network's lr_layers()"
        )
    return layer_decay ** (len(layers) - 1 - depth)


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    no_decay_bias_norm: bool = True,
    lr_scales: dict[str, float] | None = None,
    layer_decay: float | None = None,
    layers: list[Layer] | None = None,
) -> list[dict]:
    """The module docstring's rules as param groups, one per (lr scale, decayed or not), each with its lr,
    weight_decay and `param_names`. The options are `model.param_groups`; `build_optimizer` finds `layers`."""
    lr_scales = dict(lr_scales or {})
    if not layer_decay_ok(layer_decay):
        raise ValueError(f"param_groups.layer_decay={layer_decay} must be {LAYER_DECAY_RULE}")
    if layer_decay is not None and not layers:
        raise ValueError("param_groups.layer_decay needs the model's layers (build_optimizer finds them)")
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        # The longest matching prefix wins, so "backbone.layer4" can override "backbone".
        match = max((k for k in lr_scales if _matches(name, k)), key=len, default=None)
        scale = lr_scales[match] if match is not None else 1.0
        if layer_decay is not None:
            scale *= _layer_scale(name, layers, layer_decay)
        decay = not (no_decay_bias_norm and p.ndim <= 1)
        group = groups.setdefault(
            (scale, decay),
            {
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(p)
        group["param_names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters (is everything frozen?)")
    return list(groups.values())


def _argument(optimizer: Callable, name: str, fallback: float):
    """The partial's value of `name`, else the optimizer class's own default (Lion's lr is 1e-4,
    AdamW's weight_decay 1e-2), else `fallback`: the groups must not override what the class means."""
    given = getattr(optimizer, "keywords", {})
    if name in given:
        return given[name]
    try:
        default = inspect.signature(getattr(optimizer, "func", optimizer)).parameters[name].default
    except (KeyError, TypeError, ValueError):
        return fallback
    return fallback if default is inspect.Parameter.empty else default


def build_optimizer(
    model: nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer],
    no_decay_bias_norm: bool = True,
    lr_scales: dict[str, float] | None = None,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """`optimizer` is a partial of an optimizer class with its hyperparameters (from conf/optimizer)."""
    lr = _argument(optimizer, "lr", 1e-3)
    weight_decay = _argument(optimizer, "weight_decay", 0.0)
    layers = layer_prefixes(model) if layer_decay is not None else None
    groups = param_groups(
        model.named_parameters(), lr, weight_decay, no_decay_bias_norm, lr_scales, layer_decay, layers
    )
    return optimizer(groups)
