"""What the template costs per training step: its Trainer loop vs a bare PyTorch loop, same work.

Latest (2026-11-23 13:21 UTC, AMD EPYC, 2 logical CPUs): template on a terminal +5.9% per step over
a bare PyTorch loop (95% interval +3.9% .. +7.4%, +2.38 ms/step; target <= 5%), Lightning's floor
+1.8%, control +0.8%; synthetic [1, 16, 16] images, 40 ms bare steps; see docs/benchmarks.md.

Both sides train the same network (optlab.models.ResNet with the config's arguments), with the
same optimizer and param groups, LR schedule, DataLoader and thread count, in one process. The
loops run paired, step by step (benchmarks/_harness.py, PairedSteps): before every step of the
loop under test, one step of a separate bare loop, timed on its own. This machine's speed swings
by 30-80% for seconds at a time, so loops timed in separate runs differ by more than the few
percent measured here; paired steps see the same load and their ratio cancels it. The loops under test:
  - template: optlab.run.train(cfg) with cfg composed like `python train.py data=synthetic
    logger=none test=false ...`, i.e. the template's LightningModule (metrics, self.log), the
    Trainer, and the default callbacks (checkpoint, early stopping, Rich progress bar, gradient
    monitor; the LR monitor drops out without a logger). The progress bar draws to a pseudo-terminal
    (drained by `cat`), as it does for a user at a terminal.
  - the same with stdout not a terminal (a pipe or file: nohup, batch jobs), where the progress
    display is a plain line per epoch (callbacks.progress_bar.style=auto),
  - the template without its progress bar (`~callbacks.progress_bar
    ++trainer.enable_progress_bar=false`), and without any callback (`callbacks=none
    ++trainer.enable_progress_bar=false`), so the cost of each is visible.
  - Lightning floor: the least a Lightning loop can do with the same pieces: a LightningModule whose
    training_step is forward + loss (no self.log, no metrics) and configure_optimizers the same
    optimizer and schedule, in a Trainer with no logger, callback, checkpoint or progress bar.
    template - floor is what the template adds; floor - bare is Lightning's own per-step cost.
  - control: a second bare loop. Its overhead is the method's own bias (cache effects of pairing,
    order) and shows the noise left; it should be 0 within a fraction of a percent.
The bare loop: zero_grad, forward, cross-entropy, backward, step, scheduler step, on a batch from
its own DataLoader. Only steady-state steps are timed: `--steps` steps after `--warmup` steps (the
run is one epoch, timed up to its last batch, so validation, checkpoint saving and setup fall
outside). Variants are interleaved, rotating the order each repeat.
Reported per variant, from windows of `--window` consecutive steps (one logging step each by
default, so periodic costs count): the median over all windows of all repeats of
(tested time / bare time) - 1, with a 95% interval from resampling whole repeats, and each repeat's
pooled ratio. Target for the default template on a terminal: <= 5%.
When that is above --target (or with --profile), one more paired run of the template is profiled
(cProfile of each side's own steps) and the time compared by category (Lightning loop, self.log,
torchmetrics, progress bar, torch, ...).
--variant adds template variants, e.g. a what-if config: 'NAME:OVERRIDE OVERRIDE'.

The default workload is the default model (ResNet blocks [1,1], widths [32,64]) on synthetic
1x8x8 images (the digits shape), batch 64: tens of ms per step on a 2-core CPU. 3x32x32 inputs
take a few hundred ms per step there; pass e.g. `data.shape=[3,16,16] model.net.widths=[16,32]` to change.

To run (about 4 minutes on 2 CPU cores):
    python benchmarks/template_overhead.py
    python benchmarks/template_overhead.py --repeats 7 --steps 200 data.shape=[3,16,16]
    python benchmarks/template_overhead.py --profile
    python benchmarks/template_overhead.py --variant 'refresh 10/s:callbacks.progress_bar.refresh_rate=10'
    python benchmarks/template_overhead.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import contextlib
import cProfile
import fcntl
import io
import os
import pstats
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, only benchmarks/ is on the path
from benchmarks import _harness, _report  # noqa: E402

BASE_OVERRIDES = ["data=synthetic", "data.shape=[1,8,8]", "logger=none", "test=false"]
TEMPLATE = "template (default callbacks, terminal)"
PIPE = "template (default callbacks, stdout not a terminal)"
NOBAR = "template (default callbacks, no progress bar)"
NOCB = "template (callbacks=none, no progress bar)"
FLOOR = "Lightning floor (minimal LightningModule, no callbacks)"
CONTROL = "control: a second bare loop"
VARIANTS = {  # name -> (extra overrides, or "floor" / "control"; progress bar on a terminal)
    TEMPLATE: ([], True),
    PIPE: ([], False),
    NOBAR: (["~callbacks.progress_bar", "++trainer.enable_progress_bar=false"], False),
    NOCB: (["callbacks=none", "++trainer.enable_progress_bar=false"], False),
    FLOOR: ("floor", False),
    CONTROL: ("control", False),
}


@contextlib.contextmanager
def terminal_stdout(columns: int = 120, rows: int = 40):
    """sys.stdout on a pseudo-terminal whose output `cat` throws away, so Rich draws as for a user."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    drain = subprocess.Popen(["cat"], stdin=master, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tty = os.fdopen(slave, "w", buffering=1)
    saved = sys.stdout
    sys.stdout = tty
    try:
        yield
    finally:
        sys.stdout = saved
        tty.close()
        drain.wait()
        os.close(master)


def compose(overrides: list[str], run_dir: str):
    from optlab.run import compose_config

    return compose_config(overrides, run_dir=run_dir)


def _pieces(overrides: list[str]):
    """The run's datamodule, network, optimizer factory (param groups as the template makes them),
    schedule and loss, built from the same config."""
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch import nn

    from optlab.optim import build_optimizer
    from optlab.validate import instantiable

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(overrides, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model.net)
    groups = OmegaConf.to_container(cfg.model.param_groups, resolve=True) or {}
    optimizer_partial = instantiate(instantiable(cfg.optimizer, "optimizer"))

    def make_optimizer(model):
        return build_optimizer(model, optimizer_partial, **groups)

    schedule = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.model.label_smoothing)
    return cfg, datamodule, net, make_optimizer, schedule, criterion


def _train_loader(datamodule):
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def bare_loop(overrides: list[str]):
    """A BareLoop with the run's network, optimizer, schedule and DataLoader."""
    cfg, datamodule, net, make_optimizer, schedule, criterion = _pieces(overrides)
    optimizer = make_optimizer(net)
    # The template's total is trainer.estimated_stepping_batches: max_steps here.
    scheduler = schedule(optimizer, total_steps=cfg.trainer.max_steps) if schedule else None
    return _harness.BareLoop(net, optimizer, scheduler, criterion, _train_loader(datamodule))


def run_template(overrides: list[str], terminal: bool, args, profile: bool = False):
    """One paired run of optlab.run.train; returns its PairedSteps."""
    from benchmarks._timers import PairedTimer
    from optlab.run import train

    PairedTimer.next_bare = bare_loop(overrides)
    timer = [
        "+callbacks.paired._target_=benchmarks._timers.PairedTimer",
        f"+callbacks.paired.warmup={args.warmup}",
        f"+callbacks.paired.steps={args.steps}",
        f"+callbacks.paired.profile={profile}",
    ]
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(overrides + timer, run_dir)
        out = io.StringIO()  # the model summary and the final table; the progress bar goes to stdout
        with terminal_stdout() if terminal else contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            train(cfg)
    return PairedTimer.last.pairs


def run_floor(overrides: list[str], args, profile: bool = False):
    """The same pieces in the smallest LightningModule and a bare Trainer, paired."""
    import lightning as L

    from benchmarks._timers import PairedTimer

    cfg, datamodule, net, make_optimizer, schedule, criterion = _pieces(overrides)

    class Minimal(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            return criterion(self.net(x), y)

        def configure_optimizers(self):
            optimizer = make_optimizer(self)
            if schedule is None:
                return optimizer
            scheduler = schedule(optimizer, total_steps=cfg.trainer.max_steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    PairedTimer.next_bare = bare_loop(overrides)
    timer = PairedTimer(warmup=args.warmup, steps=args.steps, profile=profile)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=cfg.trainer.max_steps,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer.fit(Minimal(), train_dataloaders=_train_loader(datamodule))
    return timer.pairs


def run_control(overrides: list[str], args, profile: bool = False):
    """A bare loop paired with another bare loop: the method's own bias and leftover noise."""
    tested = bare_loop(overrides)
    pairs = _harness.PairedSteps(bare_loop(overrides), args.warmup, args.steps, profile)
    for k in range(args.warmup + args.steps + 1):
        pairs.cycle()
        if k < args.warmup + args.steps:
            tested.step()
    return pairs


def run(name: str, variants: dict, overrides: list[str], args, profile: bool = False):
    extra, terminal = variants[name]
    if extra == "control":
        pairs = run_control(overrides, args, profile)
    elif extra == "floor":
        pairs = run_floor(overrides, args, profile)
    else:
        pairs = run_template(overrides + extra, terminal, args, profile)
    if not pairs.done:
        raise RuntimeError(
            f"{name}: only {len(pairs.tested_s)} of {args.steps} steps ran; raise trainer.max_steps or data.num_samples"
        )
    return pairs


def workload_overrides(args) -> tuple[list[str], dict]:
    """Base + user overrides; the one epoch is exactly max_steps batches, max_steps = warmup + steps + 1.

    Ending on the epoch's last batch lets validation run (after the timed window): a run stopped by
    max_steps in mid-epoch crashes in EarlyStopping (val/acc missing) with the default callbacks.
    """
    keys = {o.lstrip("+~").split("=", 1)[0] for o in args.overrides}
    overrides = [o for o in BASE_OVERRIDES if o.split("=", 1)[0] not in keys] + args.overrides
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(overrides, run_dir)
    batch = int(cfg.data.batch_size)
    max_steps = args.warmup + args.steps + 1
    extra = [f"data.num_samples={batch * max_steps}", f"trainer.max_steps={max_steps}"]
    info = {
        "batch": batch,
        "shape": list(cfg.data.shape),
        "blocks": list(cfg.model.net.blocks),
        "widths": list(cfg.model.net.widths),
        "optimizer": cfg.optimizer._target_,
        "scheduler": (cfg.get("scheduler") or {}).get("_target_", "none"),
    }
    return overrides + extra, info


NET = "network forward + loss (torch)"
BWD = "backward + optimizer + LR scheduler (torch)"
OWNERS = [  # (part of a source path, category); the first match wins; None: charged to the callers
    ("/rich/", "progress bar (Lightning's RichProgressBar, rich)"),
    ("/callbacks/progress/", "progress bar (Lightning's RichProgressBar, rich)"),
    ("optlab/callbacks/progress.py", "progress bar (Lightning's RichProgressBar, rich)"),
    ("/torchmetrics/", "torchmetrics (val/test metrics; none per training step)"),
    ("optlab/callbacks/", "optlab GradientMonitor (on logging steps)"),
    ("optlab/models/classifier.py", "optlab ImageClassifier (training_step's own lines)"),
    ("/lightning/pytorch/core/module.py", "Lightning LightningModule.log (ResultCollection)"),
    ("/logger_connector/", "Lightning LightningModule.log (ResultCollection)"),
    ("/lightning/fabric/utilities/", None),  # apply_to_collection, move_data_to_device: for their callers
    ("/lightning/", "Lightning loop, hooks, other callbacks"),
    ("/lightning_utilities/", None),
    ("torch/utils/data/", "data loading (DataLoader, sampler)"),
    ("optlab/data/", "data loading (DataLoader, sampler)"),
    ("optlab/models/", NET),
    ("torch/nn/parameter.py", None),  # isinstance checks of nn.Module.__setattr__ (torchmetrics states)
    ("torch/nn/", NET),  # nn.Module.__call__, layers, functional: the network (attribute access: see owner)
    ("torch/autograd/", BWD),
    ("torch/optim/", BWD),
    ("/torch/", None),  # nn.Module.__call__, __setattr__, ...: for whoever called them
    ("benchmarks/", "the bare loop's own lines, timer"),
]
UNOWNED = "unattributed (recursion)"


MODULE_ATTRS = ("__setattr__", "__getattr__", "__delattr__")  # used by Lightning and torchmetrics objects too


def owner(func: tuple) -> str | None:
    """The category of a profiled (file, line, name); None for builtins, the standard library and
    generic helpers, which are charged to their callers."""
    f = func[0].replace(os.sep, "/")
    if "torch/nn/modules/module.py" in f and func[2] in MODULE_ATTRS:
        return None
    return next((name for part, name in OWNERS if part in f), None)


def profile_breakdown(profiler: cProfile.Profile) -> dict[str, float]:
    """Own time of every profiled function, by category. A builtin, standard-library or generic
    helper function (a torch op, isinstance, copy.deepcopy, nn.Module.__call__) is charged to the
    categories of its callers, in proportion to the time each caller spent in it: torch ops run
    by torchmetrics count as torchmetrics, deepcopy called from self.log as logging."""
    stats = pstats.Stats(profiler).stats
    shares: dict = {}

    def resolve(func, seen=frozenset()) -> dict[str, float]:
        """Fractions of func's time per category; {} when every caller path loops back (recursion)."""
        if func in shares:
            return shares[func]
        cat = owner(func)
        if cat is not None or func not in stats:
            return {cat or UNOWNED: 1.0}
        resolved = {}
        for caller, v in stats[func][4].items():
            if caller != func and caller not in seen:
                parts = resolve(caller, seen | {func})
                if parts:
                    resolved[caller] = (v[2], parts)
        weight = sum(tt for tt, _ in resolved.values())
        result: dict[str, float] = {}
        for tt, parts in resolved.values():
            w = tt / weight if weight else 1 / len(resolved)
            for name, frac in parts.items():
                result[name] = result.get(name, 0.0) + frac * w
        if not seen:
            shares[func] = result
        return result

    totals: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in stats.items():
        for name, frac in (resolve(func) or {UNOWNED: 1.0}).items():
            totals[name] = totals.get(name, 0.0) + tottime * frac
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="paired runs of each variant (interleaved)")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing starts")
    parser.add_argument("--steps", type=int, default=100, help="steps timed per run")
    parser.add_argument("--window", type=int, default=10, help="steps per window (default: trainer.log_every_n_steps)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads for all")
    parser.add_argument("--target", type=float, default=5.0, help="overhead (%%) above which to profile")
    parser.add_argument("--profile", action="store_true", help="profile the template even under the target")
    _report.add_output_args(parser)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:OVERRIDES",
        help="one more template variant (progress bar on a terminal), e.g. "
        "'refresh 10/s:callbacks.progress_bar.refresh_rate=10'; repeatable",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides (data, model, optimizer)")
    args = parser.parse_args()
    if args.steps < args.window:
        parser.error(f"--steps={args.steps} must be at least --window={args.window}")
    started, load_before = _report.now(), _report.load()

    import torch

    torch.set_num_threads(args.threads)
    overrides, info = workload_overrides(args)
    variants = dict(VARIANTS)
    for spec in args.variant:
        name, _, extra = spec.partition(":")
        variants[f"template ({name})"] = (extra.split(), True)
    runs: dict[str, list] = {name: [] for name in variants}
    threads_seen = set()
    for r, name in _harness.interleaved(list(variants), args.repeats):
        pairs = run(name, variants, overrides, args)
        runs[name].append(pairs)
        threads_seen.add(pairs.threads)
        print(
            f"repeat {r + 1}/{args.repeats} {name:55s} {1000 * statistics.fmean(pairs.tested_s):6.2f} ms/step "
            f"vs bare {1000 * statistics.fmean(pairs.bare_s):6.2f}",
            flush=True,
        )

    stats = {name: _harness.paired_overhead(values, args.window) for name, values in runs.items()}
    headers = [
        "loop under test",
        "ms/step",
        "paired bare ms/step",
        "added ms/step",
        "overhead (median window)",
        "95% interval",
        "each repeat (pooled)",
    ]
    rows = [
        [
            name,
            f"{s['tested_ms']:.2f}",
            f"{s['bare_ms']:.2f}",
            f"{s['added_ms']:+.2f}",
            f"{100 * s['overhead']:+.1f}%",
            f"{100 * s['low']:+.1f}% .. {100 * s['high']:+.1f}%",
            ", ".join(f"{100 * x:+.1f}" for x in s["pooled"]),
        ]
        for name, s in stats.items()
    ]
    text = _report.Table(headers, rows)
    head = stats[TEMPLATE]
    overhead = 100 * head["overhead"]
    workload = (
        f"ResNet blocks {info['blocks']} widths {info['widths']} on synthetic {info['shape']} images, "
        f"batch {info['batch']}, {info['optimizer']} with {info['scheduler']}; {args.steps} paired steps "
        f"timed after {args.warmup} warm-up steps, windows of {args.window} steps, {args.repeats} "
        f"interleaved repeats, torch threads {sorted(threads_seen)}"
    )
    verdict = "within" if overhead <= args.target else "above"
    added = {name: s["added_ms"] for name, s in stats.items()}
    split = (
        f"Of the {added[TEMPLATE]:+.2f} ms/step: Lightning's own loop (floor) {added[FLOOR]:+.2f}; the template's "
        f"LightningModule (callbacks=none - floor) {added[NOCB] - added[FLOOR]:+.2f}; the default callbacks "
        f"other than the progress bar (no progress bar - callbacks=none) {added[NOBAR] - added[NOCB]:+.2f}; "
        f"the Rich progress bar on a terminal (terminal - no progress bar) {added[TEMPLATE] - added[NOBAR]:+.2f}, "
        f"or {added[PIPE] - added[NOBAR]:+.2f} when stdout is not a terminal (epoch lines). What the template "
        f"adds to Lightning's floor: {added[TEMPLATE] - added[FLOOR]:+.2f} ms/step, "
        f"{100 * (added[TEMPLATE] - added[FLOOR]) / head['bare_ms']:+.1f}% of a bare step. The control (a "
        f"bare loop paired with a bare loop) reads {100 * stats[CONTROL]['overhead']:+.1f}%: the method's "
        "own bias."
    )
    print(
        f"\n{workload}\noverrides: {' '.join(overrides)}\n\n{text}\n\n"
        f"template overhead {overhead:+.1f}% ({verdict} the {args.target:g}% target). {split}"
    )

    profile_md = ""
    if args.profile or overhead > args.target:
        print("\nprofiling one more paired run of the template (cProfile of each side's steps) ...", flush=True)
        pairs = run(TEMPLATE, variants, overrides, args, profile=True)
        parts_t, parts_b = profile_breakdown(pairs.tested_profiler), profile_breakdown(pairs.bare_profiler)
        per_step = 1000 / args.steps
        prow = [
            [
                k,
                f"{v * per_step:.2f}",
                f"{parts_b.get(k, 0.0) * per_step:.2f}",
                f"{(v - parts_b.get(k, 0.0)) * per_step:+.2f}",
            ]
            for k, v in parts_t.items()
        ]
        tot_t, tot_b = sum(parts_t.values()), sum(parts_b.values())
        prow.append(
            [
                "**total (main thread)**",
                f"{tot_t * per_step:.2f}",
                f"{tot_b * per_step:.2f}",
                f"{(tot_t - tot_b) * per_step:+.2f}",
            ]
        )
        ptable = _report.Table(["own time by category (ms/step)", "template", "bare", "difference"], prow)
        top = io.StringIO()
        pstats.Stats(pairs.tested_profiler, stream=top).sort_stats("tottime").print_stats(20)
        print(f"\n{ptable}\n\ntemplate, top functions by own time:\n{top.getvalue()}")
        profile_md = (
            f"\nWhere the time goes: cProfile of the main thread over the {args.steps} timed steps of one "
            "more paired run, each side's steps profiled apart (the profiler slows Python code more "
            "than torch kernels, so the template's share is overstated; the progress bar's drawing "
            "thread is not profiled: compare the variants above for it). A builtin or standard-library "
            "function, e.g. a torch op or copy.deepcopy, is charged to the code that called it, and "
            "Lightning's apply_to_collection helpers to their callers.\n\n"
            f"{ptable}\n"
        )

    body = (
        f"Workload: {workload}. All loops run in one process; the template is `optlab.run.train(cfg)` with "
        f"cfg = `python train.py {' '.join(overrides)}` plus the pairing callback and the variant's overrides. "
        "Each step of the loop under test follows one step of a separate bare PyTorch loop (same network, "
        "optimizer, schedule and data), timed apart, so both see the same load (benchmarks/_harness.py). "
        '"terminal": stdout is a pseudo-terminal, so the Rich progress bar draws live as for a user at a '
        f"terminal. Overhead = tested time / bare time - 1 over windows of {args.window} steps, median over "
        "all windows of all repeats; the 95% interval resamples whole repeats; added ms/step = overhead x "
        "bare ms/step."
        f"\n\n{text}\n\n"
        f"Template overhead with the default callbacks on a terminal: **{overhead:+.1f}%** "
        f"({added[TEMPLATE]:+.2f} ms/step; 95% interval {100 * head['low']:+.1f}% .. {100 * head['high']:+.1f}%), "
        f"{verdict} the {args.target:g}% target. {split}\n{profile_md}"
    )
    headline = (
        f"template on a terminal {overhead:+.1f}% per step over a bare PyTorch loop (95% interval "
        f"{100 * head['low']:+.1f}% .. {100 * head['high']:+.1f}%, {added[TEMPLATE]:+.2f} ms/step; target <= "
        f"{args.target:g}%), Lightning's floor {100 * stats[FLOOR]['overhead']:+.1f}%, control "
        f"{100 * stats[CONTROL]['overhead']:+.1f}%; synthetic {info['shape']} images, {head['bare_ms']:.0f} ms bare steps"
    )
    _report.publish(
        args,
        "Template overhead per training step (paired)",
        body,
        started,
        load_before,
        headline=headline,
        table=text,
    )


if __name__ == "__main__":
    main()
