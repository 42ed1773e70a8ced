"""What our optimizers' hyperparameters must be, in one place: torch.optim's rules and messages.

The constructors check their arguments here ("Invalid learning rate: -1", as torch says it),
raising a HyperparameterError that also names the argument and the rule. validate.py checks a
config by building its optimizer on one small tensor, so the constructor stays the only owner of
each rule, and a fork's own optimizer is checked by its own constructor too.
"""


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
}
BETAS_RULE = "two numbers in [0, 1)"


def check(**arguments) -> None:
    """Raise HyperparameterError for the first argument that breaks its rule (`betas`: two in [0, 1))."""
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
