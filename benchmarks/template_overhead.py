"""What the template costs per training step: its Trainer loop vs a bare PyTorch loop, same work.

Both sides train the same network (optlab.models.ResNet with the config's arguments), with the
same optimizer and param groups, LR schedule, DataLoader and thread count, in one process:
  - template: optlab.run.train(cfg) with cfg composed like `python train.py data=synthetic
    logger=none test=false ...`, i.e. the template's LightningModule (metrics, self.log), the
    Trainer, and the default callbacks (checkpoint, early stopping, Rich progress bar, gradient
    monitor; the LR monitor drops out without a logger). The progress bar draws to a pseudo-terminal
    (drained by `cat`), as it does for a user at a terminal: Rich redraws nothing into a pipe.
  - the same with stdout not a terminal (a pipe or file: nohup, batch jobs), where Rich draws
    nothing live,
  - the template without its progress bar (`~callbacks.rich_progress_bar
    ++trainer.enable_progress_bar=false`), and without any callback (`callbacks=none
    ++trainer.enable_progress_bar=false`), so the cost of each is visible.
  - Lightning floor: the least a Lightning loop can do with the same pieces: a LightningModule whose
    training_step is forward + loss (no self.log, no metrics) and configure_optimizers the same
    optimizer and schedule, in a Trainer with no logger, callback, checkpoint or progress bar.
    template - floor is what the template adds; floor - bare is Lightning's own per-step cost.
  - bare: for x, y in loader: zero_grad, forward, cross-entropy, backward, step, scheduler step.
Only steady-state steps are timed: `--steps` steps after `--warmup` steps, from the start of one
batch to the start of the batch `--steps` later (data loading included; validation, checkpoint
saving and setup fall outside the window: the run is one epoch, timed up to its last batch). Variants are
interleaved, rotating the order each repeat, to spread drift and other load evenly. Reported per
variant: the fastest window (best steps/s over the repeats, as timeit takes the minimum: load only
ever slows a run down) and the median single step over all repeats; overhead = template ms/step /
bare ms/step - 1 (target: <= 5%).
When the default template's overhead is above --target (or with --profile), one more run of the
template and of the bare loop is profiled (cProfile over the timed steps only) and their time
compared by category (Lightning loop, self.log, torchmetrics, progress bar, torch, ...).
--variant adds template variants, e.g. a what-if config: 'NAME:OVERRIDE OVERRIDE'.

The default workload is the default model (ResNet blocks [1,1], widths [32,64]) on synthetic
1x8x8 images (the digits shape), batch 64: tens of ms per step on a 2-core CPU. 3x32x32 inputs
take a few hundred ms per step there; pass e.g. `data.shape=[3,16,16] model.net.widths=[16,32]` to change.

To run (about 2 minutes on 2 CPU cores):
    python benchmarks/template_overhead.py
    python benchmarks/template_overhead.py --repeats 7 --steps 200 data.shape=[3,16,16]
    python benchmarks/template_overhead.py --profile --no-record
    python benchmarks/template_overhead.py --variant 'refresh 10/s:++callbacks.rich_progress_bar.refresh_rate=10'
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import _report  # noqa: E402

BASE_OVERRIDES = ["data=synthetic", "data.shape=[1,8,8]", "logger=none", "test=false"]
VARIANTS = {  # name -> (extra overrides, progress bar on a terminal)
    "template (default callbacks, terminal)": ([], True),
    "template (default callbacks, stdout not a terminal)": ([], False),
    "template (default callbacks, no progress bar)": (["~callbacks.rich_progress_bar",
                                                       "++trainer.enable_progress_bar=false"], False),
    "template (callbacks=none, no progress bar)": (["callbacks=none", "++trainer.enable_progress_bar=false"], False),
    "Lightning floor (minimal LightningModule, no callbacks)": ("floor", False),
    "bare PyTorch loop": (None, False),
}
FLOOR = "Lightning floor (minimal LightningModule, no callbacks)"
TEMPLATE = "template (default callbacks, terminal)"
BARE = "bare PyTorch loop"


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
    from hydra.core.global_hydra import GlobalHydra

    from optlab.run import compose_config

    GlobalHydra.instance().clear()
    return compose_config(overrides, run_dir=run_dir)


def template_steps_per_s(overrides: list[str], terminal: bool, args, profile: bool = False):
    """One run of optlab.run.train with a StepTimer callback; returns (steps/s, step times, threads, profiler)."""
    from optlab.run import train

    from benchmarks._timers import StepTimer

    timer = ["+callbacks.step_timer._target_=benchmarks._timers.StepTimer",
             f"+callbacks.step_timer.warmup={args.warmup}", f"+callbacks.step_timer.steps={args.steps}",
             f"+callbacks.step_timer.profile={profile}"]
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(overrides + timer, run_dir)
        out = io.StringIO()  # the model summary and the final table; the progress bar goes to stdout
        with terminal_stdout() if terminal else contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            train(cfg)
    t = StepTimer.last
    return t.steps_per_s, (t.step_times, t.cpu_s), t.threads, t.profiler


def _pieces(overrides: list[str]):
    """The run's datamodule, network, optimizer factory (param groups as the template makes them),
    schedule and loss, built from the same config."""
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch import nn

    from optlab.optim import build_optimizer

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(overrides, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model.net)
    groups = OmegaConf.to_container(cfg.model.param_groups, resolve=True) or {}
    optimizer_partial = instantiate(cfg.optimizer)

    def make_optimizer(model):
        return build_optimizer(model, optimizer_partial, **groups)

    schedule = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.model.label_smoothing)
    return cfg, datamodule, net, make_optimizer, schedule, criterion


def floor_steps_per_s(overrides: list[str], args, profile: bool = False):
    """The same pieces in the smallest LightningModule and a bare Trainer."""
    import lightning as L

    from benchmarks._timers import StepTimer

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

    timer = StepTimer(warmup=args.warmup, steps=args.steps, profile=profile)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=cfg.trainer.max_steps, logger=False,
                        callbacks=[timer], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer.fit(Minimal(), train_dataloaders=_train_loader(datamodule))
    return timer.steps_per_s, (timer.step_times, timer.cpu_s), timer.threads, timer.profiler


def _train_loader(datamodule):
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def bare_steps_per_s(overrides: list[str], args, profile: bool = False):
    """The same network, optimizer, schedule and DataLoader in a plain loop."""
    import torch

    cfg, datamodule, net, make_optimizer, schedule, criterion = _pieces(overrides)
    loader = _train_loader(datamodule)
    optimizer = make_optimizer(net)
    # The template's total is trainer.estimated_stepping_batches: max_steps here.
    scheduler = schedule(optimizer, total_steps=cfg.trainer.max_steps) if schedule else None
    net.train()
    profiler = cProfile.Profile() if profile else None
    start = end = None
    stamps, cpu = [], []
    for i, (x, y) in enumerate(loader):
        if args.warmup <= i <= args.warmup + args.steps:
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
        if i == args.warmup:
            threads = torch.get_num_threads()
            if profiler:
                profiler.enable()
            start = time.perf_counter()
        elif i == args.warmup + args.steps:
            end = time.perf_counter()
            if profiler:
                profiler.disable()
            break
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(net(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    if end is None:
        raise RuntimeError("the loader ran out before warmup + steps batches; raise data.num_samples")
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    return args.steps / (end - start), (times, (cpu[-1] - cpu[0]) / args.steps), threads, profiler


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
    info = {"batch": batch, "shape": list(cfg.data.shape), "blocks": list(cfg.model.net.blocks),
            "widths": list(cfg.model.net.widths), "optimizer": cfg.optimizer._target_,
            "scheduler": (cfg.get("scheduler") or {}).get("_target_", "none")}
    return overrides + extra, info


NET = "network forward + loss (torch)"
BWD = "backward + optimizer + LR scheduler (torch)"
OWNERS = [  # (part of a source path, category); the first match wins; None: charged to the callers
    ("/rich/", "progress bar (Lightning's RichProgressBar, rich)"),
    ("/callbacks/progress/", "progress bar (Lightning's RichProgressBar, rich)"),
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
    parser.add_argument("--repeats", type=int, default=5, help="runs of each variant (interleaved)")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing starts")
    parser.add_argument("--steps", type=int, default=100, help="steps timed per run")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads for all")
    parser.add_argument("--target", type=float, default=5.0, help="overhead (%%) above which to profile")
    parser.add_argument("--profile", action="store_true", help="profile the template even under the target")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:OVERRIDES",
                        help="one more template variant (progress bar on a terminal), e.g. "
                             "'refresh 10/s:++callbacks.rich_progress_bar.refresh_rate=10'; repeatable")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides (data, model, optimizer)")
    args = parser.parse_args()
    started, load_before = _report.now(), _report.load()

    import torch

    torch.set_num_threads(args.threads)
    overrides, info = workload_overrides(args)
    variants = dict(VARIANTS)
    for spec in args.variant:
        name, _, extra = spec.partition(":")
        variants[f"template ({name})"] = (extra.split(), True)
    results: dict[str, list[float]] = {name: [] for name in variants}
    step_times: dict[str, list[float]] = {name: [] for name in variants}
    cpu_times: dict[str, list[float]] = {name: [] for name in variants}  # process CPU s/step per run
    threads_seen = set()
    names = list(variants)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            extra, terminal = variants[name]
            if extra is None:
                sps, times, threads, _ = bare_steps_per_s(overrides, args)
            elif extra == "floor":
                sps, times, threads, _ = floor_steps_per_s(overrides, args)
            else:
                sps, times, threads, _ = template_steps_per_s(overrides + extra, terminal, args)
            results[name].append(sps)
            step_times[name] += times[0]
            cpu_times[name].append(times[1])
            threads_seen.add(threads)
            print(f"repeat {r + 1}/{args.repeats} {name:45s} {sps:7.2f} steps/s", flush=True)

    # Two estimates, both robust to this machine's bursts of load (runs of one variant differ by
    # 30% here): the fastest window of `--steps` steps (as timeit takes the minimum; it includes the
    # periodic costs such as logging steps), and the median single step over all repeats (it
    # ignores whole bursts, and also costs paid every N steps only).
    ms = {name: 1000 / max(values) for name, values in results.items()}
    med_ms = {name: 1000 * statistics.median(times) for name, times in step_times.items()}
    # Third: CPU time of the whole process (every thread: torch's, the progress bar's) per step,
    # least CPU run of each variant: time lost waiting for a core that another process holds
    # does not count (with 2 torch threads, idle intra-op threads spin a little and do).
    cpu_ms = {name: 1000 * min(values) for name, values in cpu_times.items()}
    headers = ["variant", "best steps/s", "ms/step (best)", "added ms/step", "overhead vs bare",
               "median step (ms)", "overhead (median step)", "CPU ms/step", "overhead (CPU)", "runs (steps/s)"]
    rows = []
    for name, values in results.items():
        is_bare = name == BARE
        rows.append([name, f"{max(values):.2f}", f"{ms[name]:.1f}", "" if is_bare else f"{ms[name] - ms[BARE]:+.1f}",
                     "" if is_bare else f"{(ms[name] / ms[BARE] - 1) * 100:+.1f}%", f"{med_ms[name]:.1f}",
                     "" if is_bare else f"{(med_ms[name] / med_ms[BARE] - 1) * 100:+.1f}%",
                     f"{cpu_ms[name]:.1f}", "" if is_bare else f"{(cpu_ms[name] / cpu_ms[BARE] - 1) * 100:+.1f}%",
                     ", ".join(f"{v:.1f}" for v in values)])
    text = _report.table(headers, rows)
    overhead = (ms[TEMPLATE] / ms[BARE] - 1) * 100
    workload = (f"ResNet blocks {info['blocks']} widths {info['widths']} on synthetic {info['shape']} images, "
                f"batch {info['batch']}, {info['optimizer']} with {info['scheduler']}; {args.steps} steps timed "
                f"after {args.warmup} warm-up steps, {args.repeats} interleaved repeats, "
                f"torch threads {sorted(threads_seen)}")
    verdict = "within" if overhead <= args.target else "above"
    added = ms[TEMPLATE] - ms[BARE]
    nobar, nocb, pipe = (ms[n] for n in ("template (default callbacks, no progress bar)",
                                         "template (callbacks=none, no progress bar)",
                                         "template (default callbacks, stdout not a terminal)"))
    over_floor = ms[TEMPLATE] - ms[FLOOR]
    split = (f"Of the {added:+.1f} ms/step (fastest windows): Lightning's own loop (floor - bare) "
             f"{ms[FLOOR] - ms[BARE]:+.1f}; the template's LightningModule (callbacks=none - floor) "
             f"{nocb - ms[FLOOR]:+.1f}; the default callbacks other than the progress bar (no progress bar - "
             f"callbacks=none) {nobar - nocb:+.1f}; the Rich progress bar on a terminal (terminal - no progress "
             f"bar) {ms[TEMPLATE] - nobar:+.1f}, or {pipe - nobar:+.1f} when stdout is not a terminal. "
             f"What the template adds to Lightning's floor: {over_floor:+.1f} ms/step, "
             f"{(ms[TEMPLATE] / ms[FLOOR] - 1) * 100:+.1f}%. The added time is per step, not per unit of "
             f"work: the template costs <= {args.target:g}% of a step that takes at least "
             f"{max(added, 0) * 100 / args.target:.0f} ms (vs bare) or {max(over_floor, 0) * 100 / args.target:.0f} ms "
             f"(vs the Lightning floor).")
    spreads = [(max(v) / min(v) - 1) * 100 for v in results.values()]
    noise = (f"Run-to-run spread within a variant (max/min - 1): median {statistics.median(spreads):.0f}%, "
             f"largest {max(spreads):.0f}%; differences smaller than that are not resolved by this run.")
    print(f"\n{workload}\noverrides: {' '.join(overrides)}\n\n{text}\n\n"
          f"template overhead {overhead:+.1f}% ({verdict} the {args.target:g}% target). {split}\n{noise}")

    profile_md = ""
    if args.profile or overhead > args.target:
        print("\nprofiling one more run of the template and of the bare loop (cProfile, timed steps only) ...",
              flush=True)
        _, _, _, prof_t = template_steps_per_s(overrides, VARIANTS[TEMPLATE][1], args, profile=True)
        _, _, _, prof_b = bare_steps_per_s(overrides, args, profile=True)
        parts_t, parts_b = profile_breakdown(prof_t), profile_breakdown(prof_b)
        per_step = 1000 / args.steps
        prow = [[k, f"{v * per_step:.2f}", f"{parts_b.get(k, 0.0) * per_step:.2f}",
                 f"{(v - parts_b.get(k, 0.0)) * per_step:+.2f}"] for k, v in parts_t.items()]
        tot_t, tot_b = sum(parts_t.values()), sum(parts_b.values())
        prow.append(["**total (main thread)**", f"{tot_t * per_step:.2f}", f"{tot_b * per_step:.2f}",
                     f"{(tot_t - tot_b) * per_step:+.2f}"])
        ptable = _report.table(["own time by category (ms/step)", "template", "bare", "difference"], prow)
        top = io.StringIO()
        pstats.Stats(prof_t, stream=top).sort_stats("tottime").print_stats(20)
        print(f"\n{ptable}\n\ntemplate, top functions by own time:\n{top.getvalue()}")
        profile_md = (f"\nWhere the time goes: cProfile of the main thread over the {args.steps} timed steps of one "
                      "more run of each (the profiler slows Python code more than torch kernels, so the template's "
                      "share is overstated; the progress bar's refresh thread is not profiled: compare the variants "
                      "above for it). A builtin or standard-library function, e.g. a torch op or copy.deepcopy, is "
                      "charged to the code that called it, and Lightning's apply_to_collection helpers to their "
                      "callers.\n\n"
                      f"{ptable}\n")

    body = (f"Workload: {workload}. All variants run in one process; the template is `optlab.run.train(cfg)` with "
            f"cfg = `python train.py {' '.join(overrides)}` plus a timing callback and the variant's overrides. "
            "\"terminal\": stdout is a pseudo-terminal, so the Rich progress bar draws live as for a user at a "
            "terminal. Added ms/step = template ms/step - bare ms/step; overhead = template ms/step / bare ms/step - 1, "
            "from the fastest window of each variant (second, from its median single step; third, from the least "
            "process CPU time per step of its runs)."
            f"\n\n{text}\n\n"
            f"Template overhead with the default callbacks on a terminal: **{overhead:+.1f}%** ({added:+.1f} ms/step), "
            f"{verdict} the {args.target:g}% target. {split} {noise}\n{profile_md}")
    if not args.no_record:
        _report.append_section("Template overhead per training step", body, started, load_before)


if __name__ == "__main__":
    main()
