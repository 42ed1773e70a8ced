"""Seconds per training step: strategy=allreduce (ours: send/recv collectives) vs strategy=ddp.

Latest (2026-11-23 07:53 UTC, AMD EPYC, 2 logical CPUs): strategy=allreduce (algorithm=ring) 1.019x
DDP's median s/step (target <= 1.15x); paired, round by round: ours (ring) 1.011x; see
docs/benchmarks.md.

Both run `python train.py` with 2 processes on CPU (gloo), the same network, data, batch and
optimizer; only `strategy=` differs. DDP averages gradients with gloo's C++ all-reduce, launched
per bucket from autograd hooks while backward still runs; ours averages after backward with
optlab's Python send/recv all_reduce (ring, tree or naive), in flat buckets. Each run times
`--steps` training steps after `--warmup` (each from the start of its batch to the start of the
next, on every rank); a run's time is the median step of its slower rank (robust to bursts of
other load on a shared machine). Runs have no callbacks, logger or progress bar, so the strategy
is what differs. Variants are interleaved, rotating the order each repeat; the median of the
repeats is reported, and ratio = median s/step / DDP's (target <= 1.15). Also shown: the best
(least disturbed) repeat, and CPU time per step of both ranks together (process time, all
threads): the work each strategy does, which other jobs on a shared machine disturb far less than
wall-clock time (though time spent blocked waiting for a peer does not count in it).

The default workload is a ResNet with widths [64,128,256,512] (one block per stage, 4.9 M
parameters, 18.7 MB of float32 gradients: one 25 MiB bucket) on synthetic 3x8x8 images, batch 32
per rank: little compute for a lot of gradient, so the exchange is a large share of the step
(~0.1-0.2 s on a 2-core CPU). `--model tiny` is the template's default ResNet ([32,64], 0.3 MB).

Then, unless --paired-steps 0, a paired measurement that other load disturbs much less: DDP's
step and ours (GradientBuckets as the strategy uses it) alternating in the same 2 processes,
without Lightning, same network and batch; ratios taken step by step.

To run (about 6 minutes on 2 CPU cores):
    python benchmarks/strategy_step.py
    python benchmarks/strategy_step.py --variants ddp,ring,ring-4mb,ring-4mb-overlap   # the overlap
    python benchmarks/strategy_step.py --model tiny
    python benchmarks/strategy_step.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
# Run as a file, only benchmarks/ is on the path; train.py imports this module (StepTimes) as benchmarks.strategy_step.
sys.path.insert(0, str(ROOT))
from benchmarks import _harness, _report  # noqa: E402

MODELS = {
    "resnet10w": ["data.shape=[3,8,8]", "model.net.blocks=[1,1,1,1]", "model.net.widths=[64,128,256,512]"],
    "tiny": ["data.shape=[1,8,8]"],
}
VARIANTS = {  # name -> strategy overrides
    "ddp": ["strategy=ddp"],
    "ring": ["strategy=allreduce", "strategy.algorithm=ring"],
    "tree": ["strategy=allreduce", "strategy.algorithm=tree"],
    "naive": ["strategy=allreduce", "strategy.algorithm=naive"],
    "ring-copy": ["strategy=allreduce", "strategy.algorithm=ring", "++strategy.gradient_as_bucket_view=false"],
    "ring-4mb": ["strategy=allreduce", "strategy.algorithm=ring", "strategy.bucket_mb=4"],
    "ring-4mb-overlap": [
        "strategy=allreduce",
        "strategy.algorithm=ring",
        "strategy.bucket_mb=4",
        "++strategy.overlap=true",
    ],
}
LABELS = {
    "ddp": "strategy=ddp (gloo all-reduce, overlapped with backward)",
    "ring": "strategy=allreduce algorithm=ring",
    "tree": "strategy=allreduce algorithm=tree",
    "naive": "strategy=allreduce algorithm=naive",
    "ring-copy": "allreduce ring, gradient_as_bucket_view=false (copy back)",
    "ring-4mb": "allreduce ring, bucket_mb=4",
    "ring-4mb-overlap": "allreduce ring, bucket_mb=4, overlap=true (sends during backward)",
}


class StepTimes(Callback):
    """Each rank writes the duration of each of `steps` training steps after `warmup` (start of one
    batch to the start of the next) to <out>.rank<k>.json."""

    def __init__(self, out: str, warmup: int = 5, steps: int = 30):
        self.out, self.warmup, self.steps, self.calls, self.last, self.times = out, warmup, steps, 0, None, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.calls == self.warmup:
            self.cpu = time.process_time()  # this process, all its threads (gloo's, ours)
        if self.calls > self.warmup:
            self.times.append(now - self.last)
        self.last = now
        self.calls += 1
        if self.calls == self.warmup + self.steps + 1:
            import torch

            info = {
                "times": self.times,
                "cpu": (time.process_time() - self.cpu) / self.steps,
                "threads": torch.get_num_threads(),
                "params": sum(p.numel() for p in pl_module.parameters()),
                "grad_mb": sum(p.numel() * p.element_size() for p in pl_module.parameters()) / 2**20,
                "buckets_mb": getattr(trainer.strategy, "bucket_sizes_mb", None),
                "early": getattr(trainer.strategy, "early_sends", None),
                "step": trainer.global_step,
            }
            Path(f"{self.out}.rank{trainer.global_rank}.json").write_text(json.dumps(info))


def one_run(variant: str, args, workdir: Path, tag: str) -> dict:
    steps = args.warmup + args.steps + 1
    out = workdir / tag
    overrides = [
        *MODELS[args.model],
        "data=synthetic",
        f"data.batch_size={args.batch}",
        f"data.num_samples={args.batch * 2 * steps}",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        f"optimizer={args.optimizer}",
        "logger=none",
        "callbacks=none",
        "test=false",
        "++trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
        f"paths.log_dir={workdir / 'logs'}",
        "+callbacks.step_times._target_=benchmarks.strategy_step.StepTimes",
        f"+callbacks.step_times.out={out}",
        f"+callbacks.step_times.warmup={args.warmup}",
        f"+callbacks.step_times.steps={args.steps}",
        *VARIANTS[variant],
        *args.overrides,
    ]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=ROOT,
        env=_harness.subprocess_env(WANDB_MODE="offline"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    ranks = [out.with_name(f"{out.name}.rank{r}.json") for r in (0, 1)]
    if result.returncode != 0 or not all(p.exists() for p in ranks):
        raise RuntimeError(f"{variant} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    infos = [json.loads(p.read_text()) for p in ranks]
    # the median step of each rank (robust to bursts of other load), the slower rank's
    return {
        **infos[0],
        "s_per_step": max(statistics.median(i["times"]) for i in infos),
        "cpu_per_step": sum(i["cpu"] for i in infos),
        "overrides": overrides,
    }


def _paired_worker(rank: int, port: int, args, out: str) -> None:
    """One of 2 processes: the same network and batch, DDP steps and ours alternating."""
    import torch
    import torch.distributed as dist
    from hydra.utils import instantiate
    from torch.nn.parallel import DistributedDataParallel

    from optlab.distributed.buckets import GradientBuckets, _BufferBroadcaster
    from optlab.run import compose_config

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        cfg = compose_config([*MODELS[args.model], "data=synthetic"], run_dir=tempfile.gettempdir())
        torch.manual_seed(0)
        net = instantiate(cfg.model.net)
        shape = tuple(cfg.data.shape)
        ddp = DistributedDataParallel(net, gradient_as_bucket_view=True)  # as conf/strategy/ddp.yaml
        params = list(net.parameters())[::-1]  # the order AllReduceStrategy buckets them in
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        torch.manual_seed(rank)
        x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
        ours = {f"ours {a}": GradientBuckets(params, 25, algorithm=a) for a in ("ring", "tree")}
        buffers = _BufferBroadcaster(net)  # rank 0's BatchNorm statistics before each forward, as DDP

        def step(name):
            optimizer.zero_grad(set_to_none=True)
            if name == "ddp":
                torch.nn.functional.cross_entropy(ddp(x), y).backward()
            else:
                buffers(rank)
                ours[name].prepare()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                ours[name].sync()
            optimizer.step()

        names = ["ddp", *ours]
        times = {n: [] for n in names}
        for i, name in _harness.interleaved(names, args.warmup + args.paired_steps):
            dist.barrier()
            seconds = _harness.time_calls(functools.partial(step, name)).wall_s
            if i >= args.warmup:
                times[name].append(seconds)
        Path(out, f"paired{rank}.json").write_text(json.dumps(times))
    finally:
        dist.destroy_process_group()


def paired(args) -> tuple[_report.Table, str, float]:
    """DDP's and our step timed alternately in the same two processes: load on the machine hits both
    alike. Returns (table, summary, ours (ring) / DDP's step time round by round)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_paired_worker, args=(port, args, tmp), nprocs=2, start_method="spawn")
        ranks = [json.loads(Path(tmp, f"paired{r}.json").read_text()) for r in (0, 1)]
    # a step's time: the slower rank's; ratios taken within each round (neighbouring steps)
    times = {n: [max(a, b) for a, b in zip(ranks[0][n], ranks[1][n])] for n in ranks[0]}
    ddp = statistics.median(times["ddp"])
    rows = []
    for name, values in times.items():
        within = statistics.median(_harness.paired_ratios(values, times["ddp"]))
        rows.append(
            [
                name,
                f"{statistics.median(values) * 1000:.1f}",
                f"{min(values) * 1000:.1f}",
                f"{statistics.median(values) / ddp:.3f}",
                f"{within:.3f}",
            ]
        )
    table = _report.Table(
        [
            "step (forward, backward, gradient average, SGD update)",
            "median ms",
            "best ms",
            "median / ddp's",
            "median of per-round ratios",
        ],
        rows,
    )
    ring = statistics.median(_harness.paired_ratios(times["ours ring"], times["ddp"]))
    summary = (
        f"Paired: ours (ring) {ring:.3f}x DDP's step time, round by round "
        f"({'within' if ring <= args.target else 'above'} the {args.target:g}x target)."
    )
    return table, summary, ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (interleaved)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts")
    parser.add_argument("--steps", type=int, default=20, help="steps timed per run")
    parser.add_argument("--batch", type=int, default=32, help="batch per rank")
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet10w")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument(
        "--variants", default="ddp,ring,tree,naive", help=f"comma-separated, from: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--target", type=float, default=1.15, help="allowed s/step ratio to ddp")
    parser.add_argument(
        "--paired-steps", type=int, default=30, help="steps of each in the paired measurement (0: skip it)"
    )
    _report.add_output_args(parser)
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every run")
    args = parser.parse_args()

    started, load_before = _report.now(), _report.load()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or "ddp" not in names:
        parser.error(f"--variants must include ddp and name only {', '.join(VARIANTS)}; got {args.variants}")
    results: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    info, buckets = None, {}
    with tempfile.TemporaryDirectory() as tmp:
        for r, name in _harness.interleaved(names, args.repeats):
            run = one_run(name, args, Path(tmp), f"{name}-{r}")
            info = info or run
            buckets[name] = run.get("buckets_mb")
            results[name].append(run["s_per_step"])
            cpu[name].append(run["cpu_per_step"])
            early = f" ({run['early']} buckets sent during backward in {run['step']} steps)" if run.get("early") else ""
            print(
                f"repeat {r + 1}/{args.repeats} {name:10s} {run['s_per_step'] * 1000:8.1f} ms/step{early}",
                flush=True,
            )

    ddp, ddp_best = statistics.median(results["ddp"]), min(results["ddp"])
    rows = []
    for name in names:
        med, best = statistics.median(results[name]), min(results[name])
        verdict = "" if name == "ddp" else ("within" if med / ddp <= args.target else "above")
        sizes = buckets.get(name)
        bucket_col = f"{len(sizes)} ({min(sizes):.1f}-{max(sizes):.1f} MB)" if sizes else "gloo's"
        cpu_med = statistics.median(cpu[name])
        rows.append(
            [
                LABELS[name],
                bucket_col,
                f"{med * 1000:.1f}",
                f"{med / ddp:.3f}",
                verdict,
                f"{best * 1000:.1f}",
                f"{best / ddp_best:.3f}",
                f"{cpu_med * 1000:.0f}",
                f"{cpu_med / statistics.median(cpu['ddp']):.3f}",
                ", ".join(f"{v * 1000:.0f}" for v in results[name]),
            ]
        )
    text = _report.Table(
        [
            "variant",
            "buckets",
            "median ms/step",
            "ratio to ddp",
            f"<= {args.target:g}x",
            "best ms/step",
            "best / ddp best",
            "CPU ms/step",
            "CPU / ddp",
            "runs (ms/step)",
        ],
        rows,
    )
    ours = {n: statistics.median(results[n]) / ddp for n in names if n != "ddp"}
    spreads = [_harness.spread(v) * 100 for v in results.values()]
    workload = (
        f"`--model {args.model}` ({' '.join(MODELS[args.model])}): {info['params'] / 1e6:.2f} M parameters, "
        f"{info['grad_mb']:.1f} MB of gradients; synthetic data, batch {args.batch} per rank x 2 processes "
        f"(CPU, gloo, {info['threads']} torch thread(s) per process), optimizer={args.optimizer}; "
        f"{args.steps} steps timed after {args.warmup}, median step of the slower rank; {args.repeats} "
        f"interleaved repeats"
    )
    default = "ring" if "ring" in ours else min(ours, key=ours.get)
    summary = (
        f"strategy=allreduce ({LABELS[default].split('allreduce ')[-1]}): {ours[default]:.3f}x DDP's median "
        f"seconds per step ({'within' if ours[default] <= args.target else 'above'} the {args.target:g}x "
        f"target); best of the repeats {min(results[default]) / ddp_best:.3f}x; CPU time per step "
        f"{statistics.median(cpu[default]) / statistics.median(cpu['ddp']):.3f}x. Run-to-run spread within a "
        f"variant (max/min - 1): median {statistics.median(spreads):.0f}%, largest {max(spreads):.0f}%: "
        "differences smaller than that are not resolved by this run."
    )
    print(f"\n{workload}\n\n{text}\n\n{summary}")
    paired_md = ""
    headline = (
        f"strategy=allreduce ({LABELS[default].split('allreduce ')[-1]}) {ours[default]:.3f}x DDP's median s/step "
        f"(target <= {args.target:g}x)"
    )
    if args.paired_steps:
        print("\npaired: DDP's and our step alternating in the same 2 processes ...", flush=True)
        ptable, psummary, paired_ring = paired(args)
        headline += f"; paired, round by round: ours (ring) {paired_ring:.3f}x"
        print(f"\n{ptable}\n\n{psummary}")
        paired_md = (
            f"\nPaired, less exposed to other load: the same network and batch in 2 processes "
            f"(torch.multiprocessing, gloo, 1 thread each) without Lightning, {args.paired_steps} steps of "
            "each after warm-up, DDP's step and ours (buffer broadcast + GradientBuckets, 25 MiB, as the "
            "strategy does it) "
            "alternating, so a burst of other load hits neighbouring steps of both; a step's time is the "
            f"slower rank's.\n\n{ptable}\n\n{psummary}\n"
        )
    body = (
        f"Workload: {workload}. Every run is `python train.py <workload> <variant>` with callbacks=none, "
        f"logger=none, no progress bar, plus a timing callback.\n\n{text}\n\n{summary}\n{paired_md}"
    )
    _report.publish(
        args,
        "strategy=allreduce vs strategy=ddp, seconds per training step",
        body,
        started,
        load_before,
        headline=headline,
        table=text,
    )


if __name__ == "__main__":
    main()
