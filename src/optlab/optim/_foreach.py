"""Small helpers shared by our multi-tensor optimizers (not public API).

Every optimizer here does the same three chores before its math: collect the params of a group
that received a gradient, create the `step` counter, and split the tensor lists by
(device, dtype) because one `torch._foreach_*` call needs all its tensors on one device with
one dtype. DTensors (FSDP2 shards) pass through untouched: they are grouped by their device
like plain tensors and the foreach ops dispatch on them.
"""

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer


def params_with_grad(group: dict, name: str) -> tuple[list[Tensor], list[Tensor]]:
    """The params of `group` that have a gradient this step, and those gradients."""
    params, grads = [], []
    for p in group["params"]:
        if p.grad is None:  # frozen, or unused in this forward: no update, no state
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{name} does not support sparse gradients")
        if p.is_complex():  # g*g would be g^2, not |g|^2: the math here is for real tensors only
            raise RuntimeError(f"{name} does not support complex parameters")
        params.append(p)
        grads.append(p.grad)
    return params, grads


def new_step() -> Tensor:
    """The per-parameter step counter: a float32 CPU scalar, as torch keeps it (no device sync
    to read it, and a checkpoint written by torch's optimizer loads unchanged)."""
    return torch.tensor(0.0, dtype=torch.float32)


def by_device_and_dtype(*tensor_lists: Sequence[Tensor]) -> Iterator[list[list[Tensor]]]:
    """Yield the lists cut into sub-lists whose tensors share the first list's device and dtype.

    Lists are kept aligned: item i of every yielded list belongs to the same parameter. Empty
    lists (e.g. `max_exp_avg_sqs` without amsgrad) come back empty.
    """
    if not tensor_lists[0]:
        return
    grouped = Optimizer._group_tensors_by_device_and_dtype([list(t) for t in tensor_lists])
    for lists, _ in grouped.values():
        yield [list(t) if t is not None else [] for t in lists]
