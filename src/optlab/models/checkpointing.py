"""`model.activation_checkpointing=true`: each block of the net keeps only its input in the forward
pass and recomputes its activations in the backward pass (torch.utils.checkpoint, non-reentrant).
Activation memory drops to the block inputs plus one block's activations; a step costs about one
more forward (docs/benchmarks.md).

The blocks are the net's `residual_blocks()` (the ones FSDP2 also shards one at a time). Each block's class is
swapped for a subclass whose forward runs through checkpoint, the way FSDP2's fully_shard does:
parameter names, state_dicts and checkpoints stay as they were, and fully_shard applies on top.

BatchNorm updates its running statistics in every training-mode forward, so the recomputation would
apply the momentum twice; the running statistics are put back after it, and a checkpointed step
leaves the buffers exactly as a plain one does (tests/test_checkpointing.py).
"""

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_SUBCLASSES: dict[type, type] = {}


@contextlib.contextmanager
def _running_stats_kept(module: nn.Module):
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.training]
    buffers = [b for m in norms for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)


class _Checkpointed:
    """Mixed in before a block's own class: its forward, recomputed in the backward pass."""

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():  # evaluation: nothing is saved, nothing to recompute
            return super().forward(*args, **kwargs)
        contexts = lambda: (contextlib.nullcontext(), _running_stats_kept(self))  # noqa: E731
        return checkpoint(super().forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)


def checkpoint_blocks(net: nn.Module) -> int:
    """Checkpoint every block of `net.residual_blocks()`; returns how many. A net without it is refused."""
    blocks = getattr(net, "residual_blocks", None)
    if not callable(blocks):
        raise ValueError(
            f"model.activation_checkpointing=true: {type(net).__name__} has no residual_blocks() method naming the blocks "
            "to recompute; add one (docs/extending.md) or set model.activation_checkpointing=false"
        )
    units = blocks()
    for block in units:
        cls = type(block)
        if issubclass(cls, _Checkpointed):
            continue
        if cls not in _SUBCLASSES:
            _SUBCLASSES[cls] = type(f"Checkpointed{cls.__name__}", (_Checkpointed, cls), {})
        block.__class__ = _SUBCLASSES[cls]
    return len(units)
