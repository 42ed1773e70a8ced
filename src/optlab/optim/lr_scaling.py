"""`+optimizer.lr_scaling.rule=linear` (or sqrt): the lr for the run's global batch size, from an lr
tuned at another size.

    global batch = data.batch_size x processes (devices x nodes) x trainer.accumulate_grad_batches
    linear: lr x global / base_batch_size     (Goyal et al. 2017: SGD's linear scaling rule)
    sqrt:   lr x sqrt(global / base_batch_size)   (the rule often used for adaptive optimizers)
    none:   lr as configured (the default)

The Trainer's process count is known once it is built, so run.py builds the optimizer after it
and prints the scaled lr; the learning-rate monitor then logs it per step.
"""

import math

RULES = ("none", "linear", "sqrt")


def scaled_lr(lr: float, global_batch_size: int, rule: str = "none", base_batch_size: int = 256) -> float:
    if rule not in RULES:
        raise ValueError(f"optimizer.lr_scaling.rule={rule!r} is not one of {', '.join(RULES)}")
    if not (isinstance(base_batch_size, int) and base_batch_size > 0):
        raise ValueError(f"optimizer.lr_scaling.base_batch_size={base_batch_size!r} must be a positive integer")
    ratio = global_batch_size / base_batch_size
    return lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def global_batch_size(batch_size: int, trainer) -> int:
    return batch_size * trainer.world_size * trainer.accumulate_grad_batches
