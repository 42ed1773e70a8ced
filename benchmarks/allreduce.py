"""Bus bandwidth of our all_reduce (naive, tree, ring) next to torch.distributed.all_reduce on gloo.

Latest (2026-11-23 06:46 UTC, AMD EPYC, 2 logical CPUs): ring / gloo bus bandwidth 1.00x, 1.29x,
1.19x at 16 MiB, 64 MiB, 256 MiB with 2 processes (target >= 0.8x: met); see docs/benchmarks.md.

For each world size (default 2 and 4 processes on this machine, gloo over TCP loopback) and each
tensor size (float32, 4 KiB to --max-mb MiB in powers of 4), the four implementations are timed
side by side in the same process group: after one warm-up call of each, --repeats rounds, each
timing every implementation once (the order rotates every round, to spread drift and other load
evenly). One timing = `iters` back-to-back calls after a barrier, with iters chosen so a timing
lasts about --min-time seconds (at least one call); a call's time is the slowest rank's. The table
gives the median over the rounds as bus bandwidth, as nccl-tests defines it for all-reduce:
    algbw = S / t,   busbw = algbw * 2(N-1)/N,
S the tensor's bytes, t the time per call, N the world size; 2(N-1)/N*S is what each rank of a
bandwidth-optimal all-reduce must send (and receive), so busbw is comparable across N and reads as
the per-rank link speed achieved. GB/s = 1e9 bytes/s. The ring / gloo column is the median over
the rounds of the ratio within a round (both timed in the same round, seconds apart), which cancels
slow changes of the machine's load better than a ratio of medians. Also the CPU time per call (all
threads of all ranks), the work done: on a shared machine the wall-clock time also counts waiting
for a core, the CPU time much less so. Every process uses one torch thread (gloo adds in a single
thread too). With more processes than CPU cores (4 on a 2-core machine), processes wait for a core
as well as for data: the 4-process numbers measure an oversubscribed machine.

Target (issue 4): ring >= 0.8x gloo's busbw for tensors from 16 MiB up with 2 processes.

To run (about 3-4 minutes on 2 CPU cores; peak memory about 1.5 x max-mb per process):
    python benchmarks/allreduce.py
    python benchmarks/allreduce.py --world-sizes 2 3 4 --max-mb 64 --repeats 7
    python benchmarks/allreduce.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import datetime
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # `python benchmarks/x.py` puts only benchmarks/ on the path
from benchmarks import _harness, _report  # noqa: E402
from benchmarks._report import fmt_bytes, fmt_ratio, fmt_seconds  # noqa: E402

IMPLS = ("naive", "tree", "ring", "gloo")
TARGET_RATIO, TARGET_FROM = 0.8, 16 * 2**20


def worker(rank: int, world: int, store: str, sizes: list[int], repeats: int, min_time: float, out: str):
    import torch
    import torch.distributed as dist

    from optlab.distributed.collectives import all_reduce

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=datetime.timedelta(minutes=10)
    )
    calls = {"gloo": dist.all_reduce, **{a: (lambda t, a=a: all_reduce(t, algorithm=a)) for a in IMPLS[:3]}}

    def timed(fn, x, iters):
        """(seconds per call of the slowest rank, CPU seconds per call summed over ranks)."""
        dist.barrier()
        own = _harness.time_calls(lambda: fn(x), iters)
        wall = torch.tensor([own.wall_s], dtype=torch.float64)
        cpu = torch.tensor([own.cpu_s], dtype=torch.float64)
        dist.all_reduce(wall, op=dist.ReduceOp.MAX)
        dist.all_reduce(cpu)
        return wall.item(), cpu.item()

    results = []
    for size in sizes:
        x = torch.zeros(size // 4)  # values do not change the speed: no compression; zeros stay finite
        first = {name: timed(fn, x, 1)[0] for name, fn in calls.items()}  # warm-up, and a guess of the time
        iters = max(1, min(2000, round(min_time / max(first.values()))))
        times, cpus = {name: [] for name in IMPLS}, {name: [] for name in IMPLS}
        for _, name in _harness.interleaved(IMPLS, repeats):
            wall, cpu = timed(calls[name], x, iters)
            times[name].append(wall)
            cpus[name].append(cpu)
        results.append({"bytes": size, "iters": iters, "times": times, "cpus": cpus})
        if rank == 0:
            print(
                f"  N={world} {fmt_bytes(size):>8}: "
                + "  ".join(f"{n} {fmt_seconds(statistics.median(t))}" for n, t in times.items()),
                flush=True,
            )
        del x
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def run_world(world: int, sizes: list[int], args) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/results.json"
        procs = [
            ctx.Process(target=worker, args=(r, world, f"{tmp}/store", sizes, args.repeats, args.min_time, out))
            for r in range(world)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise SystemExit(f"a worker of the {world}-process run failed: exit codes {[p.exitcode for p in procs]}")
        return json.loads(Path(out).read_text())


def busbw(size: int, seconds: float, world: int) -> float:
    return size / seconds * 2 * (world - 1) / world / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--min-kb", type=int, default=4, help="smallest tensor, KiB")
    parser.add_argument("--max-mb", type=int, default=256, help="largest tensor, MiB")
    parser.add_argument("--step", type=int, default=4, choices=[2, 4], help="size ratio between rows")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per size (median reported)")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per timing (more calls for small sizes)")
    _report.add_output_args(parser)
    args = parser.parse_args()
    if any(w < 2 for w in args.world_sizes):
        parser.error("--world-sizes must be 2 or more")
    started, load_before = _report.now(), _report.load()

    sizes, s = [], args.min_kb * 2**10
    while s <= args.max_mb * 2**20:
        sizes.append(s)
        s *= args.step
    headers = [
        "N",
        "size",
        "naive GB/s",
        "tree GB/s",
        "ring GB/s",
        "gloo GB/s",
        "ring / gloo",
        "fastest",
        "gloo time/call",
        "spread",
        "CPU/call gloo",
        "CPU ring / gloo",
    ]
    # ring / gloo: median over rounds of the within-round busbw ratio; CPU: medians of CPU time per call
    rows, ratios, fastest = [], {}, {}
    for world in args.world_sizes:
        print(f"{world} processes ...", flush=True)
        t0 = time.time()
        for res in run_world(world, sizes, args):
            size, times = res["bytes"], res["times"]
            med = {n: statistics.median(t) for n, t in times.items()}
            bw = {n: busbw(size, med[n], world) for n in IMPLS}
            # ring / gloo within each round (timed back to back, so slow drifts of the load cancel)
            ratios[world, size] = statistics.median(_harness.paired_ratios(times["gloo"], times["ring"]))
            fastest[world, size] = max(IMPLS, key=bw.get)
            spread = max(_harness.spread(t) for t in times.values())
            cpu = {n: statistics.median(c) for n, c in res["cpus"].items()}
            rows.append(
                [
                    world,
                    fmt_bytes(size),
                    *(f"{bw[n]:.3f}" if bw[n] < 1 else f"{bw[n]:.2f}" for n in IMPLS),
                    fmt_ratio(ratios[world, size]),
                    fastest[world, size],
                    fmt_seconds(med["gloo"]),
                    f"{spread * 100:.0f}%",
                    fmt_seconds(cpu["gloo"]),
                    fmt_ratio(cpu["ring"] / cpu["gloo"]),
                ]
            )
        print(f"{world} processes: {time.time() - t0:.0f} s", flush=True)
    text = _report.Table(headers, rows)

    checked = [(size, ratios[2, size]) for size in sizes if size >= TARGET_FROM and (2, size) in ratios]
    if checked:
        worst_size, worst = min(checked, key=lambda c: c[1])
        met = "met" if worst >= TARGET_RATIO else "not met"
        ratios_text = ", ".join(fmt_ratio(r) for _, r in checked)
        sizes_text = ", ".join(fmt_bytes(s) for s, _ in checked)
        verdict = (
            f"Target ring >= {TARGET_RATIO}x gloo's busbw from 16 MiB up with 2 processes: "
            f"**{met}** (ring / gloo {ratios_text} for {sizes_text}; lowest {fmt_ratio(worst)} at {fmt_bytes(worst_size)})."
        )
        headline = f"ring / gloo bus bandwidth {ratios_text} at {sizes_text} with 2 processes (target >= {TARGET_RATIO}x: {met})"
    else:
        verdict = "Target not checked: the run had no 2-process sizes of 16 MiB or more."
        headline = (
            f"ring / gloo bus bandwidth {fmt_ratio(min(ratios.values()))} to {fmt_ratio(max(ratios.values()))} "
            "(target not checked: no 2-process size of 16 MiB or more)"
        )
    wins = "; ".join(f"N={w}: " + ", ".join(f"{fmt_bytes(s)} {fastest[w, s]}" for s in sizes) for w in args.world_sizes)
    setup = (
        f"float32 tensors, sizes {fmt_bytes(sizes[0])} to {fmt_bytes(sizes[-1])}; world sizes "
        f"{', '.join(map(str, args.world_sizes))} (processes on one machine, gloo over TCP loopback, one torch "
        f"thread each; more processes than CPU cores means oversubscribed); {args.repeats} rounds per size, each "
        f"timing naive, tree, ring and gloo once in rotating order after a warm-up call of each; a timing is "
        f"`iters` back-to-back calls lasting about {args.min_time:g} s (at least one), a call's time the slowest "
        f"rank's; the median round is reported; ring / gloo is the median of the within-round ratios. "
        f"busbw = S / t * 2(N-1)/N (nccl-tests' all-reduce bus bandwidth), "
        f"GB/s = 1e9 B/s. Spread = largest (max/min - 1) over the rounds of any of the four at that size. "
        f"CPU/call = CPU time (user + system, all threads) per call summed over the ranks, median round: "
        f"the work done, which other load on the machine disturbs less than the wall-clock time."
    )
    print(f"\n{setup}\n\n{text}\n\n{verdict}\nFastest per size: {wins}")
    body = (
        f"Our `optlab.distributed.all_reduce(algorithm=naive|tree|ring)` (send/recv only) vs "
        f"`torch.distributed.all_reduce` on gloo, same process group, side by side. {setup}\n\n{text}\n\n"
        f"{verdict}\n\nFastest per size: {wins}.\n"
    )
    _report.publish(
        args,
        "All-reduce bus bandwidth: naive / tree / ring vs gloo",
        body,
        started,
        load_before,
        headline=headline,
        table=text,
    )


if __name__ == "__main__":
    main()
