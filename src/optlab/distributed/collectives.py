"""Collectives built only from point-to-point messages (send / recv / isend / irecv).

    broadcast(tensor, src=0, group=None)
    reduce(tensor, dst=0, op="sum", group=None)
    all_reduce(tensor, op="sum", algorithm="ring", group=None)

The contract is torch.distributed's: every rank of `group` (default: the whole world) calls with a
tensor of the same shape and dtype, on an initialized process group (gloo on CPU); the result is
written into `tensor` in place, which is also returned. Ranks are ranks within `group`. A rank
that is not a member of `group` returns its tensor untouched, as torch does. `op` is "sum" or
"mean"; "mean" is the sum divided by the group size, for floating-point tensors only (an integer
mean raises TypeError rather than silently flooring). After `reduce`, only `dst` holds the result;
other ranks' tensors hold partial sums (torch leaves them unspecified too). Non-contiguous tensors
work through a contiguous copy that is written back. Additions run in the tensor's own dtype, one
pair at a time, as gloo's do (bfloat16 sums round to bfloat16 after every addition), so integer
results equal torch.distributed's exactly and floating-point ones up to summation order. Every
rank ends with bit-identical results: one rank computes each element's sum and the others copy it.

Cost for N ranks and a tensor of S bytes; a "step" is one message latency on the critical path
(N=1 and empty tensors cost nothing):

| algorithm            | steps            | bytes sent by the busiest rank | bytes sent, all ranks |
| -------------------- | ---------------- | ------------------------------ | --------------------- |
| all_reduce naive     | N (see below)    | (N-1)*S (rank 0; others S)     | 2(N-1)*S              |
| all_reduce tree      | 2*ceil(log2 N)   | ceil(log2 N)*S (rank 0)        | 2(N-1)*S              |
| all_reduce ring      | 2(N-1)           | 2(N-1)/N*S (every rank)        | 2(N-1)*S              |
| reduce (tree)        | ceil(log2 N)     | S (dst receives ceil(log2 N)*S)| (N-1)*S               |
| broadcast (tree)     | ceil(log2 N)     | ceil(log2 N)*S (src)           | (N-1)*S               |

naive: everyone sends to rank 0, which adds the N-1 tensors one by one (N-1 steps) and sends the
sum back to each rank (all sends at once: one step, but (N-1)*S through rank 0's link).
tree: binomial-tree reduce to rank 0, then binomial-tree broadcast from it.
ring: reduce-scatter then all-gather over N chunks (sizes differ by at most one element); each rank
sends and receives one chunk per step, concurrently. Ring is bandwidth-optimal (its busiest rank sends
2(N-1)/N*S, the lower bound for any all-reduce) but pays 2(N-1) latencies, where tree pays
2*ceil(log2 N). See docs/distributed.md for the reasoning and the measured bandwidth
(benchmarks/allreduce.py).

How messages travel: a tensor that is added on arrival goes in messages of at most SEGMENT_BYTES,
with two in flight, so the receiver adds one while the next arrives and needs only two small
buffers. Gloo sends data only to a receive that has been posted, so a receive posted late costs a
round trip; all_reduce therefore posts the receives of its second phase (the result coming back)
first, under tag 1, and the reduce phase uses tag 0, so the two never match each other's messages.
"""

import torch
import torch.distributed as dist

OPS = ("sum", "mean")
ALGORITHMS = ("naive", "tree", "ring")
SEGMENT_BYTES = 2 * 2**20  # tensors travel in messages of at most this size (see _send_recv_add)


def broadcast(tensor: torch.Tensor, src: int = 0, group=None) -> torch.Tensor:
    """Copy `tensor` of rank `src` into `tensor` on every rank of `group`; returns `tensor`."""
    return _run(tensor, group, src, "src", lambda flat, rank, n: _tree_broadcast(flat, src, rank, n, group))


def reduce(tensor: torch.Tensor, dst: int = 0, op: str = "sum", group=None) -> torch.Tensor:
    """Sum (or mean) of `tensor` over the ranks of `group`, written into `tensor` on rank `dst` only."""
    _check_op(op, tensor)

    def body(flat, rank, n):
        _tree_reduce(flat, dst, rank, n, group)
        if op == "mean" and rank == dst:
            flat.div_(n)

    return _run(tensor, group, dst, "dst", body)


def all_reduce(tensor: torch.Tensor, op: str = "sum", algorithm: str = "ring", group=None) -> torch.Tensor:
    """Sum (or mean) of `tensor` over the ranks of `group`, written into `tensor` on every rank."""
    _check_op(op, tensor)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}; got {algorithm!r}")
    algo = {"naive": _naive_all_reduce, "tree": _tree_all_reduce, "ring": _ring_all_reduce}[algorithm]

    def body(flat, rank, n):
        algo(flat, rank, n, group)
        if op == "mean":
            flat.div_(n)

    return _run(tensor, group, None, None, body)


# ---------------------------------------------------------------------------------------------
# The algorithms. Each works on a contiguous 1-D tensor `flat`; rank and n are within `group`.


def _naive_all_reduce(flat, rank, n, group):
    """Gather at rank 0 (adding as the tensors arrive), then send the sum to every other rank."""
    if rank == 0:
        for peer in range(1, n):
            _send_recv_add(None, None, flat, peer, group)
        _wait([_isend(flat, peer, group, tag=1) for peer in range(1, n)])
    else:
        result = _irecv(flat, 0, group, tag=1)  # posted first (see _ring_all_reduce)
        _send_recv_add(flat, 0, None, None, group)
        result.wait()


def _tree_all_reduce(flat, rank, n, group):
    """Binomial-tree reduce to rank 0, then binomial-tree broadcast from rank 0. The receive of the
    result from the parent (rank minus its lowest set bit) is posted first (see _ring_all_reduce)."""
    result = _irecv(flat, rank & (rank - 1), group, tag=1) if rank else None
    _tree_reduce(flat, 0, rank, n, group)
    _tree_broadcast(flat, 0, rank, n, group, tag=1, received=result)


def _tree_reduce(flat, root, rank, n, group):
    """Binomial tree: in round k (k = 0, 1, ...), a rank whose distance from root has bit k set sends
    its partial sum to the rank 2**k closer to root and is done; the others add what they receive."""
    me, mask = (rank - root) % n, 1
    while mask < n:
        if me & mask:
            _send_recv_add(flat, (me - mask + root) % n, None, None, group)
            return
        if me + mask < n:
            _send_recv_add(None, None, flat, (me + mask + root) % n, group)
        mask <<= 1


def _tree_broadcast(flat, root, rank, n, group, tag=0, received=None):
    """Binomial tree, the reduce run backwards: receive from the parent (or wait for `received`, that
    receive posted earlier), then send to the children, the largest subtree first."""
    me, mask = (rank - root) % n, 1
    while mask < n:
        if me & mask:
            (_irecv(flat, (me - mask + root) % n, group, tag) if received is None else received).wait()
            break
        mask <<= 1
    _wait([_isend(flat, (me + m + root) % n, group, tag) for m in _powers_of_two_below(mask) if me + m < n])


def _ring_all_reduce(flat, rank, n, group):
    """Reduce-scatter then all-gather around the ring rank -> rank + 1, one chunk per step.

    Reduce-scatter, step s: send chunk (rank - s) to the right while receiving chunk (rank - s - 1)
    from the left and adding it into ours. After N-1 steps this rank holds the full sum of chunk
    (rank + 1). All-gather, step s: send the finished chunk (rank + 1 - s) to the right while
    receiving the finished chunk (rank - s) from the left, in place."""
    size, extra = divmod(flat.numel(), n)
    bounds = [i * size + min(i, extra) for i in range(n + 1)]  # chunk i = flat[bounds[i]:bounds[i+1]]

    def chunk(i):
        i %= n
        return flat[bounds[i] : bounds[i + 1]]

    right, left = (rank + 1) % n, (rank - 1) % n
    # Post the all-gather's receives first, with their own tag: a receive posted before the matching
    # send lets gloo write the data as soon as it is sent, where one posted later costs one more
    # round trip (gloo sends data only to a posted receive). Safe: a finished chunk can only arrive
    # after this rank has added into it and passed it on.
    gathers = [_irecv(chunk(rank - s), left, group, tag=1) for s in range(n - 1)]
    for s in range(n - 1):
        _send_recv_add(chunk(rank - s), right, chunk(rank - s - 1), left, group)
    for s in range(n - 1):
        send = _isend(chunk(rank + 1 - s), right, group, tag=1)
        _wait([gathers[s], send])


# ---------------------------------------------------------------------------------------------
# Plumbing: argument checks, contiguous views, peer-to-peer calls by group rank.


def _check_op(op, tensor):
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(map(repr, OPS))}; got {op!r}")
    if op == "mean" and isinstance(tensor, torch.Tensor) and not (tensor.is_floating_point() or tensor.is_complex()):
        raise TypeError(
            f"op='mean' needs a floating-point tensor, got {tensor.dtype}; "
            "use op='sum' and divide (e.g. floor-divide) yourself"
        )


def _run(tensor, group, root, root_name, body):
    """Check the arguments, run body(flat, rank, n) on a contiguous 1-D view (or copy) of tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    rank, n = dist.get_rank(group), dist.get_world_size(group)
    if rank < 0:  # not a member of group: nothing to do, as in torch.distributed
        return tensor
    if root is not None and not 0 <= root < n:
        raise ValueError(f"{root_name}={root} is not a rank of the group (0..{n - 1})")
    with torch.no_grad():
        flat = tensor.view(-1) if tensor.is_contiguous() else tensor.contiguous().view(-1)
        if n > 1 and flat.numel():  # one rank or no data: nothing to send (a mean divides by 1)
            body(flat, rank, n)
        if not tensor.is_contiguous():
            tensor.copy_(flat.view(tensor.shape))
    return tensor


def _powers_of_two_below(mask):
    """mask/2, mask/4, ..., 1."""
    m = mask >> 1
    while m:
        yield m
        m >>= 1


def _isend(t, peer, group, tag=0):
    return dist.isend(t, group=group, group_dst=peer, tag=tag)


def _irecv(t, peer, group, tag=0):
    return dist.irecv(t, group=group, group_src=peer, tag=tag)


def _send_recv_add(send, dst, acc, src, group):
    """Send `send` to rank dst while receiving a tensor of acc's size from rank src and adding it
    into `acc` (either side may be None). Both travel in segments of at most SEGMENT_BYTES, with
    two received segments in flight: adding one overlaps receiving the next, and the receive
    buffers stay small (a full-size buffer would cost a page fault per 4 KiB on every call)."""
    seg = max(1, SEGMENT_BYTES // (send if acc is None else acc).element_size())
    sends = [_isend(part, dst, group) for part in send.split(seg)] if send is not None else []
    parts = acc.split(seg) if acc is not None else ()
    bufs = [acc.new_empty(parts[0].numel()) for _ in parts[:2]]
    recvs = [_irecv(bufs[i][: part.numel()], src, group) for i, part in enumerate(parts[:2])]
    for i, part in enumerate(parts):
        recvs[i].wait()
        part.add_(bufs[i % 2][: part.numel()])
        if i + 2 < len(parts):
            recvs.append(_irecv(bufs[i % 2][: parts[i + 2].numel()], src, group))
    _wait(sends)


def _wait(works):
    for work in works:
        work.wait()
