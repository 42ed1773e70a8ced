"""What our optimizers' hyperparameters must be, in one place: torch.optim's rules and messages.

The constructors check their arguments here ("Invalid learning rate: -1", as torch says it),
raising a HyperparameterError that also names the argument and the rule. validate.py checks a
config by building its optimizer on one small tensor, so the constructor stays the only owner of
each rule, and a fork's own optimizer is checked by its own constructor too.
"""

from torch import Tensor


class HyperparameterError(ValueError):
    """A bad optimizer argument: `name` is the argument, `must` what it must be."""

    def __init__(self, message: str, name: str, must: str):
        super().__init__(message)
        self.name, self.must = name, must


def _at_least_0(value) -> bool:
    try:
        return bool(0.0 <= value)  # torch's test: NaN fails it, a tensor lr passes
    except (TypeError, RuntimeError):
        return False


def _in_0_1(value) -> bool:
    try:
        return bool(0.0 <= value < 1.0)
    except (TypeError, RuntimeError):
        return False


# argument -> (torch's words for it, test, what it must be)
RULES = {
    "lr": ("learning rate", _at_least_0, "a number >= 0"),
    "eps": ("epsilon value", _at_least_0, "a number >= 0"),
    "momentum": ("momentum value", _at_least_0, "a number >= 0"),
    "weight_decay": ("weight_decay value", _at_least_0, "a number >= 0"),
    "alpha": ("alpha value", _at_least_0, "a number >= 0"),
    "momentum_decay": ("momentum_decay value", _at_least_0, "a number >= 0"),
}
BETAS_RULE = "two numbers in [0, 1)"


def check(mixed_betas: bool = False, **arguments) -> None:
    """Raise HyperparameterError for the first argument that breaks its rule (`betas`: two in [0, 1);
    a float and a tensor only with `mixed_betas`, as torch's NAdam allows)."""
    check_tensor_hyperparameters(arguments.get("lr"), arguments.get("betas"))
    betas = arguments.get("betas")
    if not mixed_betas and betas is not None and len(betas) == 2:
        if not all(isinstance(b, float) for b in betas) and not all(isinstance(b, Tensor) for b in betas):
            raise HyperparameterError("betas must be either both floats or both Tensors", "betas", BETAS_RULE)
    for name, value in arguments.items():
        if name == "betas":
            check_betas(value)
            continue
        words, test, must = RULES[name]
        if not test(value):
            raise HyperparameterError(f"Invalid {words}: {value}", name, must)


def check_betas(betas, name: str = "betas") -> None:
    try:
        count = len(betas)
    except TypeError:
        count = None
    if count != 2:
        raise HyperparameterError(f"Invalid {name}: {betas} (expected two values)", name, BETAS_RULE)
    for i, beta in enumerate(betas):
        if not _in_0_1(beta):
            raise HyperparameterError(f"Invalid beta parameter at index {i}: {beta}", name, BETAS_RULE)


def check_etas(etas) -> None:
    """Rprop's (eta_minus, eta_plus): 0 < eta_minus < 1 < eta_plus."""
    try:
        ok = len(etas) == 2 and bool(0.0 < etas[0] < 1.0 < etas[1])
    except (TypeError, RuntimeError):
        ok = False
    if not ok:
        shown = f"{etas[0]}, {etas[1]}" if isinstance(etas, list | tuple) and len(etas) == 2 else etas
        raise HyperparameterError(f"Invalid eta values: {shown}", "etas", "two numbers with 0 < etas[0] < 1 < etas[1]")


def check_tensor_hyperparameters(lr, betas=None) -> None:
    """torch's rule for tensor-valued lr and betas, with torch's messages: one element each."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise HyperparameterError("Tensor lr must be 1-element", "lr", "a number >= 0 or a 1-element tensor")
    if betas is None or len(betas) != 2:
        return
    for i, beta in enumerate(betas):
        if isinstance(beta, Tensor) and beta.numel() != 1:
            raise HyperparameterError(f"Tensor betas[{i}] must be 1-element", "betas", BETAS_RULE)


def value(x):
    """A hyperparameter as the Python number the update uses (a 1-element tensor is read here)."""
    return x.item() if isinstance(x, Tensor) else x


def check_torch_switches(name: str, foreach=None, fused=None, differentiable=False, capturable=False) -> None:
    """torch.optim's implementation switches, accepted at what ours does so torch code runs as is.

    `foreach` any value: ours always runs the multi-tensor (foreach) math, equal to torch's for-loop
    path bit for bit on CPU. The rest only at their defaults; a ValueError says what to use instead.
    """
    if fused:
        raise ValueError(
            f"{name}(fused=True): ours has no fused kernel; it runs torch._foreach ops "
            "(compiled=True fuses them through torch.compile), or use torch.optim's"
        )
    if differentiable:
        raise ValueError(f"{name}(differentiable=True): ours steps under no_grad; use torch.optim's to differentiate")
    if capturable:
        raise ValueError(
            f"{name}(capturable=True): ours keeps the step count on the CPU, which CUDA graphs cannot "
            "capture; use torch.optim's"
        )
