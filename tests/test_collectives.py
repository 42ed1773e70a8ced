"""optlab.distributed.collectives against torch.distributed (gloo), with 1, 2, 3 and 4 CPU processes.

Each multi-process test starts one process group (forked workers, FileStore rendezvous in tmp_path)
and runs every case in it: all_reduce for every algorithm x op x dtype x size, broadcast from every
src, reduce to every dst, shaped and non-contiguous tensors, and (4 processes) two subgroups. Inputs
are seeded per (case, rank), so every rank can rebuild every rank's input and compute the exact
sum in float64. A case passes when
  - integers equal torch.distributed's result exactly (int64 sums even wrap around identically),
  - floats are within N * eps * sum_r |x_r| of the exact sum, elementwise (the worst-case error of
    N-1 pairwise roundings, plus one for the mean's division), and within twice that of gloo's,
  - broadcast copies bit for bit, and every rank ends with bit-identical all_reduce results.
Workers are forked rather than spawned (0.2 s instead of ~10 s of torch imports on 2 cores) and run
with one torch thread, so no OpenMP pool is used after the fork.
"""

import datetime
import json
import multiprocessing
import time

import pytest
import torch
import torch.distributed as dist

from optlab.distributed import collectives
from optlab.distributed.collectives import ALGORITHMS, all_reduce, broadcast, reduce

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.int64)
SIZES = (0, 1, 2, 3, 5, 1000, 1001, 12345)


def _input(shape, dtype, seed, rank):
    """The input of `rank` for the case `seed`: same on every rank that rebuilds it."""
    g = torch.Generator().manual_seed(seed * 1009 + rank)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return torch.randint(-(2**62), 2**62, shape, generator=g, dtype=dtype)


class Checker:
    """Runs cases in one worker and records mismatches (a raised error fails the whole worker)."""

    def __init__(self, group=None, members=None):
        self.group, self.failures, self.checked, self.seed = group, [], 0, 0
        self.rank, self.n = dist.get_rank(group), dist.get_world_size(group)
        self.members = members or list(range(self.n))  # global rank of each group rank

    def inputs(self, shape, dtype):
        self.seed += 1
        return [_input(shape, dtype, self.seed, r) for r in self.members]

    def fail(self, what, detail):
        self.failures.append(f"rank {self.rank} of {self.n}: {what}: {detail}")

    def close_to(self, what, got, xs, op, gloo):
        """got vs the exact sum (or mean) of xs, and vs gloo's result."""
        self.checked += 1
        if not got.is_floating_point():
            if not torch.equal(got, gloo):
                self.fail(what, f"differs from dist (max diff {(got - gloo).abs().max()})")
            return
        exact = torch.stack([x.double() for x in xs]).sum(0)
        scale = torch.stack([x.double().abs() for x in xs]).sum(0)
        if op == "mean":
            exact, scale = exact / self.n, scale / self.n
        tol = self.n * torch.finfo(got.dtype).eps * scale
        err_exact = (got.double() - exact).abs()
        err_gloo = (got.double() - gloo.double()).abs()
        if (err_exact > tol).any() or (err_gloo > 2 * tol).any():
            self.fail(
                what,
                f"max error {err_exact.max():.3g} vs exact, {err_gloo.max():.3g} vs gloo "
                f"(tolerance up to {tol.max():.3g})",
            )

    def same_on_all_ranks(self, what, got):
        """Bit-identical results on every rank: compare with rank 0's bytes."""
        bits = got.contiguous().view(-1).view(torch.uint8).clone()
        first = bits.clone()
        dist.broadcast(first, group_src=0, group=self.group)
        if not torch.equal(bits, first):
            self.fail(what, "not bit-identical to group rank 0's result")

    def all_reduce_case(self, shape, dtype, algorithm, op, make=lambda t: t):
        xs = self.inputs(shape, dtype)
        mine = make(xs[self.rank].clone())
        gloo = xs[self.rank].clone()
        dist.all_reduce(gloo, group=self.group)
        if op == "mean":
            gloo.div_(self.n)
        what = f"all_reduce {algorithm} {op} {dtype} {tuple(shape)}"
        out = all_reduce(mine, op=op, algorithm=algorithm, group=self.group)
        if out is not mine:
            self.fail(what, "did not return its input tensor")
        self.close_to(what, mine, [make(x) for x in xs], op, make(gloo))
        self.same_on_all_ranks(what, mine)

    def broadcast_case(self, shape, dtype, src):
        xs = self.inputs(shape, dtype)
        mine, ref = xs[self.rank].clone(), xs[self.rank].clone()
        dist.broadcast(ref, group_src=src, group=self.group)
        out = broadcast(mine, src=src, group=self.group)
        self.checked += 1
        if (
            out is not mine
            or not torch.equal(mine.view(torch.uint8), xs[src].view(torch.uint8))
            or not torch.equal(mine, ref)
        ):
            self.fail(f"broadcast src={src} {dtype} {tuple(shape)}", "not a bit-exact copy of src's tensor")

    def reduce_case(self, shape, dtype, dst, op):
        xs = self.inputs(shape, dtype)
        mine, gloo = xs[self.rank].clone(), xs[self.rank].clone()
        dist.reduce(gloo, group_dst=dst, group=self.group)
        if op == "mean":
            gloo.div_(self.n)
        out = reduce(mine, dst=dst, op=op, group=self.group)
        if out is not mine:
            self.fail(f"reduce dst={dst}", "did not return its input tensor")
        if self.rank == dst:  # other ranks hold partial sums, as with torch.distributed.reduce
            self.close_to(f"reduce dst={dst} {op} {dtype} {tuple(shape)}", mine, xs, op, gloo)

    def run_all(self, sizes=SIZES, dtypes=DTYPES, broadcasts=True):
        sizes = sorted({*sizes, self.n - 1})
        for dtype in dtypes:
            ops = ("sum", "mean") if dtype.is_floating_point else ("sum",)
            for size in sizes:
                for algorithm in ALGORITHMS:
                    for op in ops:
                        self.all_reduce_case((size,), dtype, algorithm, op)
                for root in range(self.n):
                    if broadcasts:
                        self.broadcast_case((size,), dtype, root)
                    for op in ops:
                        self.reduce_case((size,), dtype, root, op)

    def run_shapes(self):
        """0-d, n-d and non-contiguous tensors (a transposed matrix, every other column)."""
        transpose, strided = (lambda t: t.t()), (lambda t: t[:, ::2])
        for algorithm in ALGORITHMS:
            self.all_reduce_case((), torch.float32, algorithm, "sum")
            self.all_reduce_case((3, 4, 5), torch.int64, algorithm, "sum")
            self.all_reduce_case((7, 6), torch.float64, algorithm, "mean", make=transpose)
            self.all_reduce_case((5, 9), torch.int64, algorithm, "sum", make=strided)
        xs = self.inputs((6, 7), torch.float32)
        mine = xs[self.rank].clone().t()
        broadcast(mine, src=self.n - 1, group=self.group)
        self.checked += 1
        if not torch.equal(mine, xs[-1].t()):
            self.fail("broadcast of a transposed tensor", "wrong values")


def _worker(rank, world, store, out_dir, full):
    torch.set_num_threads(1)  # forked: keep OpenMP out of it
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    default_segment = collectives.SEGMENT_BYTES
    try:
        checks = [Checker()]
        if full:
            checks[0].run_all()
        else:
            checks[0].run_all(sizes=(0, 1, 3, 1001), dtypes=(torch.float32, torch.bfloat16, torch.int64))
        checks[0].run_shapes()
        # Tensors above SEGMENT_BYTES travel in several messages: shrink it so the tests' sizes do.
        collectives.SEGMENT_BYTES = 1004  # 125 int64/float64, 251 float32, 502 bfloat16 elements
        checks[0].run_all(sizes=(1001, 12345), broadcasts=False)
        collectives.SEGMENT_BYTES = default_segment
        if world == 4:  # subgroups: group ranks differ from global ranks
            for members in ([0, 2], [1, 2, 3]):
                group = dist.new_group(members)  # every rank calls new_group, members or not
                if rank in members:
                    sub = Checker(group, members)
                    sub.run_all(sizes=(0, 1, 2, 1001), dtypes=(torch.float32, torch.int64))
                    checks.append(sub)
                else:  # a non-member's call returns its tensor untouched, as torch's does
                    t = torch.arange(5.0)
                    checks[0].checked += 1
                    if all_reduce(t, group=group) is not t or not torch.equal(t, torch.arange(5.0)):
                        checks[0].fail(f"non-member of {members}", "tensor changed")
        report = {"checked": sum(c.checked for c in checks), "failures": sum((c.failures for c in checks), [])}
        (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def _run_group(world, tmp_path, full, timeout=240):
    """Fork `world` workers; fail on a mismatch, a worker error, or a hang past `timeout` seconds."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(r, world, tmp_path / "store", tmp_path, full)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for r in hung:
        procs[r].kill()
        procs[r].join()
    assert not hung, f"ranks {hung} of {world} still running after {timeout} s (deadlock?)"
    assert all(p.exitcode == 0 for p in procs), f"worker exit codes {[p.exitcode for p in procs]}"
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    failures = sum((rep["failures"] for rep in reports), [])
    assert not failures, f"{len(failures)} mismatches, e.g.\n" + "\n".join(failures[:20])
    return reports


def test_two_processes_smoke(tmp_path):
    """Every algorithm, op and root on float32, bfloat16, int64 and sizes 0, 1, 3, 1001; shapes."""
    reports = _run_group(2, tmp_path, full=False)
    assert min(r["checked"] for r in reports) > 100


@pytest.mark.parametrize("world", [2, 3, 4])
def test_matches_torch_distributed(world, tmp_path):
    """The full matrix: 3 algorithms x sum/mean x 4 dtypes x 9 sizes, broadcast/reduce from every
    rank; with 4 processes also the subgroups [0, 2] and [1, 2, 3]."""
    reports = _run_group(world, tmp_path, full=True)
    assert min(r["checked"] for r in reports) > 250


@pytest.fixture
def world_of_one(tmp_path):
    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_world_size_one(world_of_one):
    for algorithm in ALGORITHMS:
        for op in ("sum", "mean"):
            x = torch.randn(4, 3).t()
            expected = x.clone()
            assert all_reduce(x, op=op, algorithm=algorithm) is x and torch.equal(x, expected)
    x = torch.arange(7)
    assert torch.equal(reduce(x, dst=0), torch.arange(7)) and torch.equal(broadcast(x, src=0), torch.arange(7))
    assert torch.equal(all_reduce(torch.empty(0)), torch.empty(0))
    with pytest.raises(ValueError, match=r"src=1 is not a rank of the group \(0\.\.0\)"):
        broadcast(x, src=1)
    with pytest.raises(ValueError, match=r"dst=-1 is not a rank"):
        reduce(x, dst=-1)


def test_bad_arguments_are_named():
    """Checked before any communication, so no process group is needed."""
    x = torch.ones(3)
    with pytest.raises(ValueError, match=r"op must be one of 'sum', 'mean'; got 'max'"):
        all_reduce(x, op="max")
    with pytest.raises(ValueError, match=r"op must be one of 'sum', 'mean'; got 'avg'"):
        reduce(x, op="avg")
    with pytest.raises(ValueError, match=r"algorithm must be one of 'naive', 'tree', 'ring'; got 'bcube'"):
        all_reduce(x, algorithm="bcube")
    with pytest.raises(TypeError, match=r"op='mean' needs a floating-point tensor, got torch.int64"):
        all_reduce(torch.ones(3, dtype=torch.int64), op="mean")
    with pytest.raises(TypeError, match=r"op='mean' needs a floating-point tensor, got torch.int32"):
        reduce(torch.ones(3, dtype=torch.int32), op="mean")
    with pytest.raises(TypeError, match=r"tensor must be a torch.Tensor, got list"):
        all_reduce([1.0, 2.0])
