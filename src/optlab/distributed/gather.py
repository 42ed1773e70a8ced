"""Gathers built from our all_reduce (send/recv only), for metrics under `strategy=allreduce`:
every rank's tensor, any sizes, from two all_reduce(sum) calls (the shapes, then one zero row per
rank that each rank fills with its own tensor, so the sum is every rank's value, exactly). The
strategy's `all_gather` and max/min `reduce` use it, and torchmetrics objects get
`all_gather_list` as their `dist_sync_fn` (its signature is torchmetrics' gather_all_tensors').
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from optlab.distributed.collectives import all_reduce


def _world(group=None) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


@torch.no_grad()
def all_gather_list(tensor: Tensor, group=None, algorithm: str = "ring") -> list[Tensor]:
    """Every rank's `tensor` (same number of dims, any sizes), from two all_reduce(sum) calls: the
    shapes, then a zero tensor with one row per rank where each rank fills its own row (x + 0 = x,
    so the values arrive exactly)."""
    rank, n = _world(group)
    t = tensor.detach()
    dtype = t.dtype
    if dtype == torch.bool:
        t = t.to(torch.uint8)
    shapes = torch.zeros(n, max(t.dim(), 1), dtype=torch.int64, device=t.device)
    shapes[rank, : t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
    all_reduce(shapes, op="sum", algorithm=algorithm, group=group)
    shape_list = [tuple(row[: t.dim()]) for row in shapes.tolist()]
    biggest = tuple(max(s[d] for s in shape_list) for d in range(t.dim()))
    rows = torch.zeros((n, *biggest), dtype=t.dtype, device=t.device)
    rows[(rank, *(slice(0, s) for s in t.shape))] = t
    all_reduce(rows, op="sum", algorithm=algorithm, group=group)
    return [rows[(r, *(slice(0, s) for s in shape))].to(dtype) for r, shape in enumerate(shape_list)]
