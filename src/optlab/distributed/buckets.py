"""Flat buffers for `strategy=allreduce` (optlab.distributed.strategy): the gradient buckets, the
communication thread that all-reduces them while backward runs, and the packed broadcast of rank
0's parameters and buffers. Why: one message per tensor would pay a message latency per parameter
(milliseconds each for small tensors, docs/distributed.md); packed per (device, dtype) into a few
flat buffers, the same bytes go in a few messages.

- Buckets: each optimizer's parameters (reverse registration order, roughly the order backward
  produces them) are packed into flat buffers of about `bucket_mb` MiB per (device, dtype), one
  `all_reduce(op="mean")` per bucket instead of one per parameter. Before backward, every gradient
  that is None (after zero_grad) becomes a view of its zeroed slice of a bucket (DDP's
  gradient_as_bucket_view), so backward accumulates straight into the buckets: nothing is copied
  in or out, and after the reduce `p.grad` already is the average. A gradient that is not a view
  (set by hand, or backward run outside Lightning) is copied in; `gradient_as_bucket_view=false`
  hands the optimizer copies instead of views.
- Overlap (`overlap=true`, off by default): a post-accumulate-grad hook counts the parameters
  backward has reached; a bucket whose parameters are all done is all-reduced at once by a
  communication thread while backward continues (buckets leave in index order on every rank, the
  last one, carrying the used-flags, after backward). Useful with several buckets (small
  `bucket_mb`); measured in docs/distributed.md.
- Unused parameters: a parameter whose grad is None on a rank counts as zeros there, so every rank
  sends the same bytes; one used-flag per parameter rides at the end of the last bucket, so a
  parameter nobody used keeps grad None on every rank (optimizers skip it, as in one process), and
  one used by some ranks gets the same averaged grad on all (DDP's find_unused_parameters rule).
"""

from __future__ import annotations

import threading
from functools import partial

import torch
import torch.distributed as dist
from torch import Tensor

from optlab.distributed.collectives import all_reduce, broadcast

MIB = 2**20


# -- packing tensors into flat buffers ---------------------------------------------------------


def _groups(tensors: list[Tensor], max_bytes: float | None = None) -> list[list[int]]:
    """Indices of `tensors` split by (device, dtype), in order, and into chunks that close once
    they reach max_bytes (as DDP's buckets: no tiny bucket squeezed between two large tensors)."""
    by_kind: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        by_kind.setdefault((t.device, t.dtype), []).append(i)
    chunks = []
    for indices in by_kind.values():
        chunk, size = [], 0
        for i in indices:
            chunk.append(i)
            size += tensors[i].numel() * tensors[i].element_size()
            if max_bytes is not None and size >= max_bytes:
                chunks.append(chunk)
                chunk, size = [], 0
        chunks.append(chunk)
    return [c for c in chunks if c]


def _dense(t: Tensor) -> bool:
    """Whether t's elements fill its storage span without gaps or overlaps, in some dim order."""
    expected = 1
    for d in sorted(range(t.dim()), key=t.stride):
        if t.size(d) != 1 and t.stride(d) != expected:
            return False
        expected *= t.size(d)
    return True


def _views(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Consecutive slices of `flat` shaped like each tensor, and laid out like it where it is dense
    (channels_last params get channels_last gradient views, as DDP's buckets give them)."""
    out, offset = [], 0
    for t in like:
        n = t.numel()
        piece = flat[offset : offset + n]
        plain = t.is_contiguous() or not _dense(t)
        out.append(piece.view(t.shape) if plain else piece.as_strided(t.shape, t.stride(), piece.storage_offset()))
        offset += n
    return out


@torch.no_grad()
def broadcast_tensors(tensors: list[Tensor], src: int = 0, group=None) -> None:
    """Rank src's values into `tensors` on every rank: one broadcast per (device, dtype)."""
    rank = dist.get_rank(group)
    for chunk in _groups(tensors):
        ts = [tensors[i] for i in chunk]
        flat = torch.empty(sum(t.numel() for t in ts), dtype=ts[0].dtype, device=ts[0].device)
        views = _views(flat, ts)
        if rank == src:
            torch._foreach_copy_(views, ts)
        broadcast(flat, src=src, group=group)
        if rank != src:
            torch._foreach_copy_(ts, views)


class _BufferBroadcaster:
    """The module's buffers, sent from rank 0 before a forward pass (DDP's broadcast_buffers).
    The flat buffers are made once; every call copies in (rank 0) or out (the others)."""

    def __init__(self, module: torch.nn.Module):
        self.buffers = [b for b in module.buffers()]
        self.chunks = []
        for chunk in _groups(self.buffers):
            ts = [self.buffers[i] for i in chunk]
            flat = torch.empty(sum(t.numel() for t in ts), dtype=ts[0].dtype, device=ts[0].device)
            self.chunks.append((ts, flat, _views(flat, ts)))

    @torch.no_grad()
    def __call__(self, rank: int, group=None) -> None:
        for ts, flat, views in self.chunks:
            if rank == 0:
                torch._foreach_copy_(views, ts)
            broadcast(flat, src=0, group=group)
            if rank != 0:
                torch._foreach_copy_(ts, views)


class GradientBuckets:
    """The gradients of a list of parameters, averaged over the ranks in flat buckets.

    Bucket k holds the parameters `params[i]` for i in `self.buckets[k]` back to back; the last
    bucket also holds one used-flag per parameter. `prepare()` (before backward) points every
    gradient that is None at its zeroed slice of a bucket, so backward accumulates into the buckets
    and nothing is copied; a post-accumulate-grad hook per parameter records which ones backward
    reached. `sync()` (after backward) copies in any gradient that is not a bucket view, zeroes the
    slots of missing ones, fills the flags, all-reduces every bucket (op="mean") and leaves each
    `p.grad` a view of its averaged slice (None where no rank had a gradient).

    overlap=True: a bucket whose parameters have all been reached during the backward of a step
    that syncs is all-reduced at once by a communication thread while backward goes on (buckets go
    out strictly in index order on every rank; the last one, holding the flags, at sync()).
    """

    def __init__(
        self,
        params: list[Tensor],
        bucket_mb: float,
        algorithm: str = "ring",
        group=None,
        as_bucket_view: bool = True,
        overlap: bool = False,
    ):
        self.params, self.algorithm, self.group = params, algorithm, group
        self.as_view, self.overlap = as_bucket_view, overlap
        self.buckets = _groups(params, bucket_mb * MIB)
        self.flats, self.views = [], []
        self.slot: list[tuple[int, Tensor]] = [None] * len(params)  # param index -> (bucket, view)
        for k, chunk in enumerate(self.buckets):
            ps = [params[i] for i in chunk]
            extra = len(params) if k == len(self.buckets) - 1 else 0
            flat = torch.zeros(sum(p.numel() for p in ps) + extra, dtype=ps[0].dtype, device=ps[0].device)
            views = _views(flat, ps)
            self.flats.append(flat)
            self.views.append(views)
            for i, view in zip(chunk, views):
                self.slot[i] = (k, view)
        self.flags = self.flats[-1][len(self.flats[-1]) - len(params) :]
        self.reached = [False] * len(params)  # backward accumulated into params[i] since the last sync
        self.syncing = True  # the current backward is followed by a sync (not an accumulation micro-batch)
        self.syncs = 0  # how many times the gradients were averaged (tests count them)
        self._hooks = [p.register_post_accumulate_grad_hook(partial(self._reached, i)) for i, p in enumerate(params)]
        self._comm = _CommThread(self) if overlap and len(self.buckets) > 1 else None

    @property
    def sizes_mb(self) -> list[float]:
        return [f.numel() * f.element_size() / MIB for f in self.flats]

    @property
    def early_sends(self) -> int:
        """Buckets all-reduced while backward was still running (overlap=True)."""
        return self._comm.early if self._comm is not None else 0

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._comm is not None:
            self._comm.stop()

    def _is_view(self, i: int, g: Tensor) -> bool:
        view = self.slot[i][1]
        return g.data_ptr() == view.data_ptr() and g.shape == view.shape and g.dtype == view.dtype

    @torch.no_grad()
    def prepare(self, syncing: bool = True) -> None:
        """Before a backward: missing gradients become zeroed bucket views (backward adds into them)."""
        self.syncing = syncing
        if self._comm is not None and syncing:
            self._comm.begin()
        for k, chunk in enumerate(self.buckets):
            views = self.views[k]
            empty = [(i, v) for i, v in zip(chunk, views) if self.params[i].grad is None]
            if not empty:
                continue
            if len(empty) == len(chunk):  # the usual case after zero_grad(set_to_none=True): one memset
                n = sum(v.numel() for v in views)
                self.flats[k][:n].zero_()
            else:
                torch._foreach_zero_([v for _, v in empty])
            for i, v in empty:
                self.params[i].grad = v

    def _reached(self, i: int, param: Tensor) -> None:
        self.reached[i] = True
        if self._comm is not None and self.syncing:
            self._comm.reached(i)

    @torch.no_grad()
    def _fill(self, k: int) -> None:
        """Bucket k's slots: gradients that are not views copied in, missing ones zeroed."""
        dst, src, zero = [], [], []
        for i, view in zip(self.buckets[k], self.views[k]):
            g = self.params[i].grad
            if g is None:
                zero.append(view)
            elif not self._is_view(i, g):
                dst.append(view)
                src.append(g)
        if dst:
            torch._foreach_copy_(dst, src)
        if zero:
            torch._foreach_zero_(zero)

    def _used(self, i: int) -> bool:
        g = self.params[i].grad
        return g is not None and (self.reached[i] or not self._is_view(i, g))

    @torch.no_grad()
    def sync(self) -> None:
        """After backward, a collective (every rank calls it at the same step): each `p.grad` becomes the mean
        over the ranks, a view of its bucket slot (a copy with `as_bucket_view=False`), None where no rank had one."""
        used = [self._used(i) for i in range(len(self.params))]
        missing = not all(used)
        last = len(self.buckets) - 1
        if missing:
            self.flags.copy_(torch.tensor(used, dtype=self.flags.dtype))
        else:
            self.flags.fill_(1)
        if self._comm is not None:
            for k in range(last + 1):
                self._comm.flush(k)  # fills and sends buckets the hooks did not (and the last)
            self._comm.wait()
        else:
            for k, flat in enumerate(self.flats):
                self._fill(k)
                all_reduce(flat, op="mean", algorithm=self.algorithm, group=self.group)
        global_used = self.flags.tolist() if missing else None  # a host sync only where a grad is missing
        for i, p in enumerate(self.params):
            view = self.slot[i][1]
            if missing and not global_used[i] > 0:
                p.grad = None  # no rank has a gradient for it
            elif self.as_view:
                if p.grad is None or not self._is_view(i, p.grad):
                    p.grad = view
            elif p.grad is None or self._is_view(i, p.grad):
                p.grad = view.clone()
            else:
                p.grad.copy_(view)
        self.reached = [False] * len(self.params)
        self.syncs += 1


class _CommThread:
    """All-reduces the buckets of one GradientBuckets in index order, each as soon as it is ready."""

    def __init__(self, owner: GradientBuckets):
        self.owner = owner
        n = len(owner.buckets)
        self.pending = [0] * n
        self.launched = [False] * n
        self.ready = [threading.Event() for _ in range(n)]
        self.done = [threading.Event() for _ in range(n)]
        self.error: BaseException | None = None
        self.stopping = False
        self.active = False
        self.early = 0  # buckets sent while backward was still running
        self.thread = threading.Thread(target=self._loop, name="optlab-allreduce", daemon=True)
        self.thread.start()

    def begin(self) -> None:
        """Start counting the parameters backward reaches (once per optimizer step)."""
        if self.active:
            return
        for k, chunk in enumerate(self.owner.buckets):
            self.pending[k] = len(chunk)
            self.launched[k] = False
            self.done[k].clear()
        self.active = True

    def reached(self, i: int) -> None:
        k = self.owner.slot[i][0]
        if not self.active or self.launched[k]:
            return
        self.pending[k] -= 1
        if self.pending[k] == 0 and k < len(self.owner.buckets) - 1:
            for j in self.owner.buckets[k]:  # a copy-in here would race with backward: leave it to sync()
                g = self.owner.params[j].grad
                if g is None or not self.owner._is_view(j, g):
                    return
            self.early += 1
            self._launch(k)

    def _launch(self, k: int) -> None:
        self.launched[k] = True
        self.ready[k].set()

    def flush(self, k: int) -> None:
        """From sync(): bucket k goes out now if the hooks did not send it."""
        self.begin()
        if not self.launched[k]:
            self.owner._fill(k)
            self._launch(k)

    def wait(self) -> None:
        for done in self.done:
            done.wait()
        self.active = False
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def stop(self) -> None:
        self.stopping = True
        for ready in self.ready:
            ready.set()

    def _loop(self) -> None:
        owner = self.owner
        while True:
            for k, flat in enumerate(owner.flats):
                self.ready[k].wait()
                if self.stopping:
                    return
                self.ready[k].clear()
                try:
                    if self.error is None:
                        all_reduce(flat, op="mean", algorithm=owner.algorithm, group=owner.group)
                except BaseException as e:  # a peer died: the main thread raises it from sync()
                    self.error = e
                self.done[k].set()
