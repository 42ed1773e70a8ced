"""Small helpers shared by our multi-tensor optimizers (not public API).

Every optimizer here does the same three chores before its math: collect the params of a group
that received a gradient, create the `step` counter, and split the tensor lists by
(device, dtype) because one `torch._foreach_*` call needs all its tensors on one device with
one dtype. DTensors (FSDP2 shards) pass through untouched: they are grouped by their device
like plain tensors and the foreach ops dispatch on them.

On CPU the foreach math then runs block by block (`cache_blocks`): same results bit for bit,
1.2-2.7x faster. The opt-in compiled path (`compiled=True` in the constructors) runs a one-param
"kernel" of the same math through torch.compile instead: see `run_compiled`.
"""

import functools
from collections.abc import Callable, Iterator, Sequence

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


def closure_loss(closure: Callable[[], float] | None):
    """What `step(closure)` returns: the closure's loss, computed with gradients on (steps run under
    no_grad), or None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def grads_of_groups(optimizer: Optimizer) -> list[tuple[dict, list[Tensor], list[Tensor]]]:
    """(group, params with a gradient, their gradients) for every group, all checked before any
    group is updated, so a step that raises (a sparse or complex gradient, a tensor lr of several
    elements set on a group) leaves the parameters and the state as they were."""
    from optlab.optim.hyperparameters import check_tensor_hyperparameters

    name = type(optimizer).__name__
    out = []
    for group in optimizer.param_groups:
        check_tensor_hyperparameters(group.get("lr"), group.get("betas"))
        out.append((group, *params_with_grad(group, name)))
    return out


def cautious_updates(updates: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """Cautious Optimizers (Liang et al. 2024): each update with its coordinates zeroed where their
    sign disagrees with the gradient's, the rest scaled by 1 / (fraction kept, at least 1e-3), per
    tensor. Needs whole tensors (the fraction is the tensor's), not cache blocks."""
    masks = [(u * g > 0).to(u.dtype) for u, g in zip(updates, grads)]
    for mask in masks:
        mask.div_(mask.mean().clamp(min=1e-3))  # not clamp_: a DTensor's mean is a pending all-reduce (FSDP2)
    return torch._foreach_mul(updates, masks)


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


# Elements per block: fastest measured on a 2-core AMD EPYC (1 MiB L2 per core, 32 MiB L3) for
# SGD and Adam on ResNet-18 were 2^17-2^18; a multiple of every SIMD width, see cache_blocks.
BLOCK = 2**18
SMALL = 2**12  # elements: the compiled path steps params smaller than this packed together


def plain(tensors: Sequence[Tensor]) -> bool:
    """Plain tensors or Parameters: not a DTensor shard or another tensor subclass."""
    return all(type(t) in (Tensor, torch.nn.Parameter) for t in tensors)


def effective_grads(g: list[Tensor], p: list[Tensor], maximize: bool, weight_decay: float) -> list[Tensor]:
    """The gradients the update uses: negated when maximizing, plus L2 decay `weight_decay * p`.
    Never writes into p.grad: a modified list is a fresh one."""
    if maximize:
        g = torch._foreach_neg(g)  # a fresh list we may update in place below
    if weight_decay != 0:
        if maximize:
            torch._foreach_add_(g, p, alpha=weight_decay)
        else:
            g = torch._foreach_add(g, p, alpha=weight_decay)
    return g


def cache_blocks(*lists: Sequence) -> Iterator[list[list]]:
    """Yield the aligned lists cut into blocks of about BLOCK elements (on CPU; elsewhere whole).

    Why: a foreach op is one pass over all its tensors, so an update of k ops streams a model's
    params and state from memory k times, and each temporary (e.g. Adam's denominator) is a fresh
    model-sized allocation, which the OS fills page by page. Cut into blocks that fit the cache,
    the k ops run on a block while it is still cached and the temporaries stay small: 1.2-2.7x
    faster on CPU (benchmarks/optim_step.py). The math is elementwise, so the results are the
    same bit for bit (cuts fall on multiples of BLOCK from the start of a tensor, where vectorized
    loops cut it too; tests/test_optim_compiled.py checks). A block holds whole pieces: slices of
    a tensor, or a whole tensor if a tensor of its row is not contiguous or not plain (DTensor).
    Items that are not tensors (per-param scalars) repeat for each piece; empty lists stay empty.
    """
    if not lists[0] or lists[0][0].device.type != "cpu":  # GPU foreach kernels stream well already
        yield [list(items) for items in lists]
        return
    block, filled = [[] for _ in lists], 0
    for i, p in enumerate(lists[0]):
        row = [items[i] if items else None for items in lists]
        tensors = [x for x in row if isinstance(x, Tensor)]
        pieces = [row]  # the whole row, unless it is cut:
        if p.numel() > BLOCK and plain(tensors) and all(x.is_contiguous() for x in tensors):
            n = -(-p.numel() // BLOCK)
            pieces = zip(*[x.view(-1).split(BLOCK) if isinstance(x, Tensor) else [x] * n for x in row])
        for piece in pieces:
            for part, items, x in zip(block, lists, piece):
                if items:
                    part.append(x)
            filled += piece[0].numel()
            if filled >= BLOCK:
                yield block
                block, filled = [[] for _ in lists], 0
    if block[0]:
        yield block


@functools.cache
def compiled(kernel: Callable) -> Callable:
    """`kernel` through torch.compile, built once per kernel and shared by every optimizer.
    Dynamic shapes: one compiled graph serves params of every size."""
    return torch.compile(kernel, dynamic=True)


def run_compiled(
    kernel: Callable, tensor_lists: Sequence[Sequence[Tensor | None]], scalars: list[list[float]], **flags: bool
) -> None:
    """Run the compiled `kernel(p, g, *state, h, **flags)` on each param, in place.

    Why it is faster: the kernel's ops are elementwise, so inductor fuses them into one loop per
    param that reads and writes each tensor once, where the foreach path makes one pass over
    memory per op. It is not bit-exact with the foreach path (inductor rounds some products
    separately where ATen uses fused multiply-adds: ~1e-7 relative per step in float32).
    Lists are aligned (item i belongs to param i; None for a state tensor a param lacks; list 1
    holds the grads, which are only read). `scalars` holds the hyperparameters as Python floats:
    one row per param, or one row for all. They reach the kernel as `h`, a 1-D tensor in the
    param's precision, so a new lr or step count is new data, not a recompile; `flags` pick
    branches and are compiled in. Tensors go in as flat views, so one compiled graph serves every
    param size. Small params (biases, norm gains: two thirds of ResNet-18's tensors, 0.2% of its
    elements) are packed into one flat copy per list and stepped by one call: a call each would
    cost more than their math. A non-contiguous param runs the kernel uncompiled.
    """
    fast = compiled(kernel)
    hs: dict = {}  # h tensors by (device, dtype, row): rows repeat (the same step count)
    packs: dict = {}  # small params by (device, dtype, row, which state is None)

    def h_for(p: Tensor, row: tuple) -> Tensor:
        dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
        if (p.device, dtype, row) not in hs:
            hs[p.device, dtype, row] = torch.tensor(row, dtype=dtype, device=p.device)
        return hs[p.device, dtype, row]

    for i, tensors in enumerate(zip(*tensor_lists)):
        p, row = tensors[0], tuple(scalars[i if len(scalars) > 1 else 0])
        if not all(t is None or t.is_contiguous() for t in tensors):
            kernel(*tensors, h_for(p, row), **flags)
        elif p.numel() < SMALL:
            packs.setdefault((p.device, p.dtype, row, tuple(t is None for t in tensors)), []).append(tensors)
        else:
            fast(*[None if t is None else t.view(-1).detach() for t in tensors], h_for(p, row), **flags)
    for (_, _, row, _), params in packs.items():
        columns = list(zip(*params))  # per list, its tensors of this pack
        packed = [None if c[0] is None else torch.cat([t.view(-1) for t in c]) for c in columns]
        # Sizes 0 and 1 would be compiled apart (the compiler specializes them): run those uncompiled.
        (fast if packed[0].numel() > 1 else kernel)(*packed, h_for(params[0][0], row), **flags)
        for j, (c, flat) in enumerate(zip(columns, packed)):
            if j != 1 and flat is not None:  # write back all but the grads
                torch._foreach_copy_([t.view(-1) for t in c], list(flat.split([t.numel() for t in c])))
