"""Optimizer step time and state memory: ours (optlab.optim) vs torch.optim, on ResNet-18's parameters.

Latest (2026-12-03 19:02 UTC, AMD EPYC, 2 logical CPUs): ours / reference (for-loop/foreach): rprop
0.57x/0.75x, nadamw 0.46x/0.51x, adopt 1.07x/0.90x, adamw_schedulefree 1.01x/0.89x, sgd_schedulefree
1.04x/0.95x; cautious / plain step: 2.24x (adamw), 3.24x (lion) (cpu, 1 thread); see
docs/benchmarks.md.

The parameter set is torchvision's resnet18(weights=None): 62 tensors, 11.7M float32 params, their
real shapes. Every parameter gets a random gradient once (fixed seed); the same values go to every
implementation, each with its own copies of params and grads. For each algorithm, one
`optimizer.step()` is timed for:
  - ours: the default path, multi-tensor torch._foreach_* ops run block by block on CPU
    (optlab.optim._foreach.cache_blocks), bit-exact vs torch,
  - ours compiled: `compiled=True`, a one-param kernel of the same math through torch.compile
    (inductor fuses it into one loop per param); its first steps include the compile,
  - torch for-loop (`foreach=False`, torch's default on CPU), torch foreach (`foreach=True`),
    torch fused (`fused=True`, where torch has it: SGD, Adam, AdamW; not RMSprop),
  - Muon: torch.optim.Muon takes 2-D params only, and ResNet-18's only 2-D param is the classifier
    (fc.weight, 1000x512): ours and torch's are timed on that same matrix (`use_muon=True`), and
    Newton-Schulz alone on it. Ours on the full set (Muon on the hidden convs, AdamW on the rest) is
    timed with --muon-full: over a minute per step on a 2-core CPU (bfloat16 matmuls without
    hardware bf16 support).
Issue 14's optimizers, each against the reference its tests use, for-loop and foreach where it has
both (not in the default run, which took 3m17s without them on a loaded 2-core VM; name them with
--algorithms):
  - rprop (optlab.optim.Rprop) and nadamw (NAdamW) vs torch.optim.Rprop / NAdam(decoupled_weight_decay=True);
    ours is compared with torch's for-loop (torch's foreach NAdam rounds differently),
  - adopt vs pytorch_optimizer.ADOPT, adamw_schedulefree / sgd_schedulefree vs the schedulefree package's
    (train() before the first step): test-only packages, imported when asked for; a missing one is
    left out with a printed note,
  - "adamw cautious" / "lion cautious" (cautious=True) vs ours without: no other implementation, the
    ratio is the cost of the mask.
  Their table gives ours / each implementation, the state per parameter and the final params after
  --exact-steps more steps with the same gradient each (the schedulefree package divides p.grad in
  place, so the timed steps cannot be compared) vs the reference row.
Implementations are interleaved, the order rotated each repeat; after --warmup steps each,
--repeats samples of --steps steps are timed (wall clock; torch.cuda.synchronize() around each
sample with --device cuda) and the median ms/step reported, with the ratio to torch's foreach and
fused steps. "first steps" = time of the warm-up steps minus warmup x the median: the compile cost
of the compiled path (a fresh inductor cache unless --warm-cache). Every implementation runs the
same number of steps, so the final params are compared with torch's foreach ("bit-exact" = bit for
bit). Memory per parameter = bytes of all tensors in optimizer.state / bytes of the params,
measured after the steps (Muon on the full set after one step with ns_steps=1: the state is the
same whatever the number of Newton-Schulz steps).

Targets (issue 3): ours no slower than torch's default (for-loop) and foreach for every algorithm;
AdamW, Adam and SGD within 1.5x of torch's fused step. The verdicts are computed from this run.
On a shared 2-core machine a second thread often waits on the other core (10x slower steps under
load): --threads 1 is steadier.

To run (about 2.5 minutes on a quiet 2-core CPU):
    python benchmarks/optim_step.py
    python benchmarks/optim_step.py --threads 1
    python benchmarks/optim_step.py --algorithms adamw sgd --repeats 7
    python benchmarks/optim_step.py --threads 1 --repeats 15 --algorithms rprop nadamw adopt \\
        adamw_schedulefree sgd_schedulefree 'adamw cautious' 'lion cautious'   # issue 14's (2.5-3.5 min)
    python benchmarks/optim_step.py --device cuda
    python benchmarks/optim_step.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # run as a file, only benchmarks/ is on the path
from benchmarks import _harness, _report  # noqa: E402
from benchmarks._report import fmt_ratio, fmt_span  # noqa: E402

TARGET_FUSED = 1.5
OURS, COMPILED, LOOP, FOREACH, FUSED = "ours", "ours compiled", "torch for-loop", "torch foreach", "torch fused"


def algorithms():
    """name -> (our class, torch class or None, hyperparameters, torch has fused=True)."""
    import torch

    from optlab.optim.adam import Adam
    from optlab.optim.adamw import AdamW
    from optlab.optim.lion import Lion
    from optlab.optim.rmsprop import RMSprop
    from optlab.optim.sgd import SGD

    return {
        "sgd": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4), True),
        "rmsprop": (RMSprop, torch.optim.RMSprop, dict(lr=1e-3), False),
        "rmsprop centered+momentum": (RMSprop, torch.optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.9), False),
        "adam": (Adam, torch.optim.Adam, dict(lr=1e-3), True),
        "adam amsgrad": (Adam, torch.optim.Adam, dict(lr=1e-3, amsgrad=True), True),
        "adamw": (AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2), True),
        "lion": (Lion, None, dict(lr=1e-4, weight_decay=0.1), False),
    }


DEFAULT_ALGORITHMS = ["sgd", "rmsprop", "rmsprop centered+momentum", "adam", "adam amsgrad", "adamw", "lion", "muon"]
# Issue 14's optimizers, each against its reference (run_referenced); not in the default run.
REFERENCED = ["rprop", "nadamw", "adopt", "adamw_schedulefree", "sgd_schedulefree", "adamw cautious", "lion cautious"]
PLAIN = "ours, not cautious"


def _package(module: str):
    """A test-only reference package, imported only when asked for; None when it is not installed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _in_train_mode(make):
    """A schedule-free optimizer, switched to train mode (y in the params) before its first step."""

    def build(params):
        opt = make(params)
        opt.train()
        return opt

    return build


def referenced(name: str) -> tuple[dict, dict, str | None, str]:
    """One of REFERENCED: (hyperparameters, {label: params -> optimizer}, the label whose final params
    the others are compared with (None: no reference), a note). OURS comes first. A reference from a
    test-only package that is not installed is left out and the note says so."""
    import torch

    from optlab import optim

    def missing(package):
        return f"{package} is not installed (a test-only dependency): {name} is timed without its reference"

    if name == "rprop":
        hp = dict(lr=1e-2)
        return (
            hp,
            {
                OURS: lambda ps: optim.Rprop(ps, **hp),
                LOOP: lambda ps: torch.optim.Rprop(ps, foreach=False, **hp),
                FOREACH: lambda ps: torch.optim.Rprop(ps, foreach=True, **hp),
            },
            LOOP,
            "",
        )
    if name == "nadamw":
        hp = dict(lr=2e-3, weight_decay=1e-2)
        torch_hp = dict(hp, decoupled_weight_decay=True)
        return (
            hp,
            {
                OURS: lambda ps: optim.NAdamW(ps, **hp),
                LOOP: lambda ps: torch.optim.NAdam(ps, foreach=False, **torch_hp),
                FOREACH: lambda ps: torch.optim.NAdam(ps, foreach=True, **torch_hp),
            },
            LOOP,  # ours follows torch's for-loop NAdam; its foreach one rounds differently
            "",
        )
    if name == "adopt":
        hp = dict(lr=1e-3, weight_decay=1e-2, weight_decouple=True)
        makers = {OURS: lambda ps: optim.ADOPT(ps, **hp)}
        package = _package("pytorch_optimizer")
        if package is None:
            return hp, makers, None, missing("pytorch_optimizer")
        makers["pytorch_optimizer for-loop"] = lambda ps: package.ADOPT(ps, foreach=False, **hp)
        makers["pytorch_optimizer foreach"] = lambda ps: package.ADOPT(ps, foreach=True, **hp)
        return hp, makers, "pytorch_optimizer for-loop", ""
    if name in ("adamw_schedulefree", "sgd_schedulefree"):
        cls = "AdamWScheduleFree" if name == "adamw_schedulefree" else "SGDScheduleFree"
        hp = dict(lr=2.5e-3, weight_decay=1e-2) if name == "adamw_schedulefree" else dict(lr=0.5, weight_decay=5e-4)
        makers = {OURS: _in_train_mode(lambda ps: getattr(optim, cls)(ps, **hp))}
        package = _package("schedulefree")
        if package is None:
            return hp, makers, None, missing("schedulefree")
        ref = getattr(package, cls)
        makers["schedulefree for-loop"] = _in_train_mode(lambda ps: ref(ps, foreach=False, **hp))
        makers["schedulefree foreach"] = _in_train_mode(lambda ps: ref(ps, foreach=True, **hp))
        return hp, makers, "schedulefree foreach", ""  # the package's default, what the tests use
    if name in ("adamw cautious", "lion cautious"):
        cls, hp = (
            (optim.AdamW, dict(lr=1e-3, weight_decay=1e-2))
            if name == "adamw cautious"
            else (optim.Lion, dict(lr=1e-4, weight_decay=0.1))
        )
        return (
            hp,
            {OURS: lambda ps: cls(ps, cautious=True, **hp), PLAIN: lambda ps: cls(ps, **hp)},
            None,  # no other implementation: the overhead of the mask over the plain step
            "",
        )
    raise ValueError(name)


def resnet18_params(device):
    """(name, param, grad) for torchvision's resnet18, random grads from a fixed seed."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).to(device)
    gen = torch.Generator().manual_seed(1)
    return [(n, p.detach(), torch.randn(p.shape, generator=gen).to(device)) for n, p in model.named_parameters()]


def copies(base):
    """Fresh leaf params with their own .grad, equal to `base`."""
    import torch

    params = []
    for _, p, g in base:
        q = torch.nn.Parameter(p.clone())
        q.grad = g.clone()
        params.append(q)
    return params


def state_ratio(opt, params) -> float:
    """Bytes of the tensors in optimizer.state / bytes of the params (measured, step counters included)."""
    import torch

    seen, state_bytes = set(), 0
    for s in opt.state.values():
        for v in s.values():
            if isinstance(v, torch.Tensor) and v.data_ptr() not in seen:
                seen.add(v.data_ptr())
                state_bytes += v.numel() * v.element_size()
    return state_bytes / sum(p.numel() * p.element_size() for p in params)


def exactness(params, ref) -> str:
    import torch

    if all(torch.equal(a, b) for a, b in zip(params, ref)):
        return "bit-exact"
    err = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item() for a, b in zip(params, ref))
    return f"max rel. diff {err:.1e}"


def time_steps(impls: dict, sync, warmup: int, repeats: int, steps: int) -> dict:
    """Warm-up steps, then interleaved samples of `steps` steps; per implementation: first, samples, median."""
    return _harness.sample_interleaved(
        {name: opt.step for name, (opt, _) in impls.items()}, warmup, repeats, steps, sync
    )


def run_elementwise(name: str, base, args, sync) -> dict:
    """Time ours / ours compiled / torch's variants of one algorithm; results per implementation."""
    ours_cls, torch_cls, hp, has_fused = algorithms()[name]
    impls = {}

    def add(label, make):
        params = copies(base)
        impls[label] = (make(params), params)

    add(OURS, lambda ps: ours_cls(ps, **hp))
    if not args.no_compile:
        add(COMPILED, lambda ps: ours_cls(ps, compiled=True, **hp))
    if torch_cls is not None:
        add(LOOP, lambda ps: torch_cls(ps, foreach=False, **hp))
        add(FOREACH, lambda ps: torch_cls(ps, foreach=True, **hp))
        if has_fused:
            add(FUSED, lambda ps: torch_cls(ps, fused=True, **hp))
    results = time_steps(impls, sync, args.warmup, args.repeats, args.steps)
    ref = impls.get(FOREACH, impls[OURS])[1]
    for label, (opt, params) in impls.items():
        results[label]["memory"] = state_ratio(opt, params)
        results[label]["exact"] = "(reference)" if params is ref else exactness(params, ref)
    return results


def run_referenced(name: str, base, args, sync) -> tuple[dict, dict]:
    """Time ours and the references of one of REFERENCED; memory after the timed steps; exactness
    from a separate run of --exact-steps steps each, p.grad set back to the same gradient before
    every step (the schedulefree package divides p.grad in place, so its timed run drifts)."""
    hp, makers, exact_vs, note = referenced(name)
    if note:
        print(f"note: {note}", flush=True)
    impls = {}
    for label, make in makers.items():
        params = copies(base)
        impls[label] = (make(params), params)
    results = time_steps(impls, sync, args.warmup, args.repeats, args.steps)
    finals = {}
    for label, make in makers.items():
        results[label]["memory"] = state_ratio(*impls[label])
        params = copies(base)
        opt = make(params)
        for _ in range(args.exact_steps):
            for q, (_, _, g) in zip(params, base):
                q.grad.copy_(g)
            opt.step()
        finals[label] = params
    for label in makers:
        if exact_vs is None:
            results[label]["exact"] = "(no reference)"
        else:
            results[label]["exact"] = "(reference)" if label == exact_vs else exactness(finals[label], finals[exact_vs])
    return results, {"hp": hp, "note": note, "reference": exact_vs}


def run_muon(base, args, sync) -> tuple[dict, dict]:
    """Ours vs torch.optim.Muon on ResNet-18's 2-D params; Newton-Schulz alone; memory on the full set."""
    import torch

    from optlab.optim.muon import Muon, zeropower_via_newtonschulz

    matrices = [b for b in base if b[1].ndim == 2]
    hp = dict(lr=0.02, weight_decay=0.1)
    impls = {}
    params = copies(matrices)
    impls[OURS] = (Muon([{"params": params, "use_muon": True}], **hp), params)
    params = copies(matrices)
    impls["torch Muon"] = (torch.optim.Muon(params, **hp), params)
    results = time_steps(impls, sync, warmup=1, repeats=args.muon_repeats, steps=1)
    ours, ref = impls[OURS][1], impls["torch Muon"][1]
    for label, (opt, params) in impls.items():
        results[label]["memory"] = state_ratio(opt, params)
        results[label]["exact"] = "(reference)" if params is ref else exactness(params, ref)

    def newton_schulz_only():  # one per matrix, as in a step (one sample: it is slow)
        for p in ours:
            zeropower_via_newtonschulz(p.grad.reshape(p.shape[0], -1), (3.4445, -4.775, 2.0315), 5, 1e-7)

    info = {
        "matrices": ", ".join(f"{n} {tuple(p.shape)}" for n, p, _ in matrices),
        "ns": _harness.time_calls(newton_schulz_only, 1, sync).wall_s,
    }

    print(
        f"muon: Newton-Schulz alone {info['ns'] * 1e3:.0f} ms; one step on the full set for its state ...", flush=True
    )
    params = copies(base)  # the whole set: Muon on the hidden convs, AdamW on stem, head and 1-D params
    full = Muon([(n, p) for (n, _, _), p in zip(base, params)], **hp)
    if args.muon_full:
        full_results = time_steps({"ours (full set)": (full, params)}, sync, 1, args.muon_repeats, 1)
        info["full"] = full_results["ours (full set)"]
    else:
        for group in full.param_groups:
            group["ns_steps"] = 1  # the state does not depend on it; 5x less of the slow bf16 matmuls
        full.step()
    split = full.split()
    info["full_memory"] = state_ratio(full, params)
    numel = {n: p.numel() for n, p, _ in base}
    info["full_split"] = ", ".join(
        f"{side} on {len(names)} tensors ({sum(numel[n] for n in names) / 1e6:.2f}M params)"
        for side, names in (("Muon", split["muon"]), ("AdamW", split["adamw"]))
    )
    return results, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=DEFAULT_ALGORITHMS,
        help=f"subset of: {', '.join(DEFAULT_ALGORITHMS + REFERENCED)} (quote names with spaces; default: "
        f"{' '.join(DEFAULT_ALGORITHMS)})",
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed samples per implementation (interleaved)")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per timed sample")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the compiled path compiles here)")
    parser.add_argument("--muon-repeats", type=int, default=3, help="timed single steps of Muon per implementation")
    parser.add_argument("--muon-full", action="store_true", help="also time ours on the full set (~1 min/step on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip ours compiled")
    parser.add_argument(
        "--exact-steps", type=int, default=10, help=f"steps of the exactness run of {', '.join(REFERENCED)}"
    )
    parser.add_argument(
        "--warm-cache", action="store_true", help="keep inductor's on-disk cache (compile looks cheaper)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    _report.add_output_args(parser)
    args = parser.parse_args()
    known = set(DEFAULT_ALGORITHMS + REFERENCED)
    if unknown := [a for a in args.algorithms if a not in known]:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {sorted(known)}")
    started, load_before = _report.now(), _report.load()
    cache = None
    if not args.warm_cache:  # before torch is imported: a cold cache, so "first steps" is the real compile cost
        cache = tempfile.TemporaryDirectory(prefix="optim_step_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name

    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    base = resnet18_params(device)
    n_params = sum(p.numel() for _, p, _ in base)
    print(
        f"resnet18: {len(base)} tensors, {n_params / 1e6:.1f}M params, device {device}, "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    results, muon, referenced_results, referenced_info = {}, None, {}, {}
    for name in args.algorithms:
        t0 = time.perf_counter()
        if name == "muon":
            results[name], muon = run_muon(base, args, sync)
        elif name in REFERENCED:
            referenced_results[name], referenced_info[name] = run_referenced(name, base, args, sync)
        else:
            results[name] = run_elementwise(name, base, args, sync)
        for label, r in {**results, **referenced_results}[name].items():
            print(
                f"{name:28s} {label:16s} {r['median'] * 1e3:9.2f} ms/step  (first steps {r['first']:.1f} s)", flush=True
            )
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)

    # The step-time table.
    rows, spreads = [], [_harness.spread(r["samples"]) for res in referenced_results.values() for r in res.values()]
    for name, res in results.items():
        foreach = res.get(FOREACH, {}).get("median")
        fused = res.get(FUSED, {}).get("median")
        for label, r in res.items():
            med = r["median"]
            spreads.append(_harness.spread(r["samples"]))
            extra = max(0.0, r["first"] - args.warmup * med) if name != "muon" else max(0.0, r["first"] - med)
            rows.append(
                [
                    name if label == next(iter(res)) else "",
                    label,
                    f"{med * 1e3:.2f}",
                    f"{min(r['samples']) * 1e3:.2f}",
                    fmt_ratio(med / foreach if foreach else None),
                    fmt_ratio(med / fused if fused else None),
                    f"{extra:.1f}",
                    f"{r['memory']:.2f}",
                    r["exact"],
                ]
            )
    headers = [
        "algorithm",
        "implementation",
        "median ms/step",
        "min ms/step",
        "vs torch foreach",
        "vs torch fused",
        "first steps, extra s",
        "state/param bytes",
        "final params vs torch foreach",
    ]
    step_table = _report.Table(headers, rows, align="llrrrrrrl")
    noise = statistics.median(spreads)

    # Memory per parameter, by algorithm.
    mrows = []
    for name, res in results.items():
        if name == "muon":
            mrows.append(
                [
                    f"muon ({muon['matrices']})",
                    f"{res[OURS]['memory']:.3f}",
                    "",
                    "",
                    "",
                    f"{res['torch Muon']['memory']:.3f} (torch Muon)",
                ]
            )
            mrows.append([f"muon, full resnet18 ({muon['full_split']})", f"{muon['full_memory']:.3f}", "", "", "", ""])
            continue
        get = lambda label, res=res: f"{res[label]['memory']:.3f}" if label in res else ""  # noqa: E731
        mrows.append([name, get(OURS), get(COMPILED), get(LOOP), get(FOREACH), get(FUSED)])
    mem_table = _report.Table(
        ["algorithm", "ours", "ours compiled", "torch for-loop", "torch foreach", "torch fused / other"],
        mrows,
        align="lrrrrr",
    )

    # Issue 14's optimizers: ours / each other implementation of the same rule, and the memory table's rows.
    ref_rows, comparisons, ref_headline, cautious_headline = [], [], [], []
    for name, res in referenced_results.items():
        ours = res[OURS]
        for label, r in res.items():
            ref_rows.append(
                [
                    name if label == OURS else "",
                    label,
                    f"{r['median'] * 1e3:.2f}",
                    f"{min(r['samples']) * 1e3:.2f}",
                    fmt_ratio(ours["median"] / r["median"]),
                    f"{r['memory']:.2f}",
                    r["exact"],
                ]
            )
            if label == OURS:
                continue
            ratio, by_min = ours["median"] / r["median"], min(ours["samples"]) / min(r["samples"])
            what = "the cautious mask's cost" if label == PLAIN else "ours / reference"
            comparisons.append(
                f"- {name}: ours {ours['median'] * 1e3:.2f} ms vs {label} {r['median'] * 1e3:.2f} ms "
                f"= {fmt_ratio(ratio)} ({what}; fastest samples: {fmt_ratio(by_min)})"
            )
        others = [label for label in res if label != OURS]
        ratios = "/".join(fmt_ratio(ours["median"] / res[label]["median"]) for label in others)
        if PLAIN in res:
            cautious_headline.append(f"{ratios} ({name.split()[0]})")
        else:
            ref_headline.append(f"{name} {ratios}" if others else f"{name} (no reference installed)")
        get = lambda label, res=res: f"{res[label]['memory']:.3f}" if label in res else ""  # noqa: E731
        other = ", ".join(f"{res[label]['memory']:.3f} ({label})" for label in others if label not in (LOOP, FOREACH))
        mrows.append([name, get(OURS), "", get(LOOP), get(FOREACH), other])
    mem_table = _report.Table(mem_table.headers, mrows, align=mem_table.align)
    ref_table = _report.Table(
        [
            "algorithm",
            "implementation",
            "median ms/step",
            "min ms/step",
            "ours / this",
            "state/param bytes",
            f"final params after {args.exact_steps} steps vs the reference",
        ],
        ref_rows,
        align="llrrrrl",
    )
    comparison_text = "\n".join(comparisons)

    # Verdicts, from the medians above; the headline quotes the range of each kind of ratio.
    verdicts, vs_torch, vs_fused, muon_ratio = [], [], {OURS: [], COMPILED: []}, None

    def no_slower(ratio: float) -> str:
        return "met" if ratio <= 1.0 else ("NOT met (within this run's noise)" if ratio <= 1 + noise else "NOT met")

    for name, res in results.items():
        if name == "muon" or LOOP not in res:
            continue
        ours = res[OURS]["median"]
        for label in (LOOP, FOREACH):
            ratio = ours / res[label]["median"]
            vs_torch.append(ratio)
            by_min = min(res[OURS]["samples"]) / min(res[label]["samples"])
            verdicts.append(
                f"- {name}: ours {ours * 1e3:.2f} ms vs {label} {res[label]['median'] * 1e3:.2f} ms "
                f"= {fmt_ratio(ratio)}: {no_slower(ratio)} (fastest samples: {fmt_ratio(by_min)})"
            )
    if "muon" in results:  # torch's Muon has one implementation, a for-loop
        ours, theirs = results["muon"][OURS], results["muon"]["torch Muon"]
        muon_ratio, by_min = ours["median"] / theirs["median"], min(ours["samples"]) / min(theirs["samples"])
        verdicts.append(
            f"- muon (fc.weight): ours {ours['median'] * 1e3:.0f} ms vs torch Muon {theirs['median'] * 1e3:.0f} ms "
            f"= {fmt_ratio(muon_ratio)}: {no_slower(muon_ratio)} (fastest samples: {fmt_ratio(by_min)})"
        )
    for name in ("sgd", "adam", "adamw"):
        res = results.get(name)
        if not res or FUSED not in res:
            continue
        fused = res[FUSED]["median"]
        for label in (OURS, COMPILED):
            if label in res:
                ratio = res[label]["median"] / fused
                vs_fused[label].append(ratio)
                by_min = min(res[label]["samples"]) / min(res[FUSED]["samples"])
                verdicts.append(
                    f"- {name}: {label} {res[label]['median'] * 1e3:.2f} ms vs torch fused {fused * 1e3:.2f} ms "
                    f"= {fmt_ratio(ratio)}: {'met' if ratio <= TARGET_FUSED else 'NOT met'} (target <= "
                    f"{TARGET_FUSED}x; fastest samples: {fmt_ratio(by_min)})"
                )
    verdict_text = "\n".join(verdicts)

    threads = torch.get_num_threads()
    setup = f"{device.type}, {threads} thread{'s' if threads > 1 else ''}"
    headline_parts = []
    if vs_torch:
        headline_parts.append(
            f"ours {fmt_span(vs_torch, fmt_ratio)} torch's for-loop and foreach step time (target <= 1x)"
        )
    if any(vs_fused.values()):
        fused_text = ", ".join(f"{label} {fmt_span(ratios, fmt_ratio)}" for label, ratios in vs_fused.items() if ratios)
        headline_parts.append(f"vs torch fused (SGD, Adam, AdamW) {fused_text} (target <= {TARGET_FUSED}x)")
    if muon_ratio is not None:
        headline_parts.append(f"Muon {fmt_ratio(muon_ratio)} torch's")
    if ref_headline:
        headline_parts.append(f"ours / reference (for-loop/foreach): {', '.join(ref_headline)}")
    if cautious_headline:
        headline_parts.append(f"cautious / plain step: {', '.join(cautious_headline)}")
    headline = "; ".join(headline_parts) + f" ({setup})"

    muon_text = ""
    if muon:
        ours = results["muon"][OURS]["median"]
        muon_text = (
            f"Muon: torch.optim.Muon takes 2-D params only, so ours and torch's are timed on ResNet-18's "
            f"2-D params ({muon['matrices']}). Newton-Schulz alone on it: {muon['ns'] * 1e3:.0f} ms, "
            f"{muon['ns'] / ours * 100:.0f}% of our step: the elementwise part does not matter and the "
            "fused target does not apply."
        )
        if "full" in muon:
            muon_text += f" Ours on the full set ({muon['full_split']}): {muon['full']['median']:.1f} s/step."
    compiled = bool(results) and not args.no_compile
    workload = (
        f"torchvision resnet18(weights=None) parameters: {len(base)} tensors, {n_params / 1e6:.2f}M float32 "
        f"params on {device}; fixed random grads; torch threads {torch.get_num_threads()}; {args.warmup} warm-up "
        f"steps, then {args.repeats} interleaved samples of {args.steps} steps per implementation"
        + (f" (Muon: 1 warm-up, {args.muon_repeats} single steps)" if "muon" in results else "")
        + (f"; inductor cache {'warm (kept)' if args.warm_cache else 'cold (fresh directory)'}" if compiled else "")
    )
    noise_text = (
        f"Run-to-run spread within an implementation (max/min sample - 1): median {noise * 100:.0f}%, "
        f"largest {max(spreads) * 100:.0f}%."
    )
    hps = "; ".join(
        [f"{n}: {algorithms()[n][2]}" for n in results if n != "muon"]
        + [f"{n}: {info['hp']}" for n, info in referenced_info.items()]
    )
    if "muon" in results:
        hps += "; Muon lr 0.02, weight_decay 0.1"
    notes = [f"note: {info['note']}" for info in referenced_info.values() if info["note"]]
    references = {n: info["reference"] for n, info in referenced_info.items() if info["reference"]}
    ref_text = ""
    if referenced_results:
        compared = "; ".join(
            f"{n}: {label}"
            + (" (torch's foreach NAdam rounds differently; ours follows its for-loop one)" if n == "nadamw" else "")
            for n, label in references.items()
        )
        ref_text = (
            "Issue 14's optimizers, each against its reference (\"ours / this\": our median / this row's median; "
            "for a cautious one, the cost of the mask over our plain step). Every implementation runs "
            f"{args.exact_steps} more steps from the start, p.grad set back to the same gradient before each (the "
            "schedulefree package divides p.grad in place: its timed steps see drifting gradients, which does "
            "not change their cost), and its params are compared with the reference row"
            + (f": {compared}. " if compared else ". ")
            + "The schedule-free ones are switched to train mode before their first step. "
            "Cautious AdamW and Lion have no other implementation (the tests check the rule written out)."
        )
    print(f"\n{workload}\n")
    if results:
        print(f"{step_table}\n")
    if referenced_results:
        print(f"{ref_table}\n\n" + "".join(f"{note}\n" for note in notes))
    print(f"state bytes / param bytes:\n{mem_table}\n\n{noise_text}\n{muon_text}\n")
    if verdicts:
        print(f"targets:\n{verdict_text}\n")
    if comparisons:
        print(f"issue 14's optimizers vs their references:\n{comparison_text}\n")

    body = f"Workload: {workload}. Hyperparameters: {hps}."
    if results:
        body += (
            ' "first steps, extra s" = time of the warm-up steps minus that many median steps (for ours compiled: '
            f'the compile). "vs" columns: median / median.\n\n{step_table}'
        )
    if referenced_results:
        body += f"\n\n{ref_text}\n\n{ref_table}" + "".join(f"\n\n{note}" for note in notes)
    body += (
        f"\n\n{noise_text}{' ' + muon_text if muon_text else ''}\n\n"
        "Memory each optimizer keeps per parameter (bytes of the tensors in optimizer.state / bytes of the params, "
        f"measured after the timed steps; step counters included):\n\n{mem_table}\n"
    )
    if verdicts:
        body += (
            f"\nTargets (ours <= torch's for-loop and foreach; SGD/Adam/AdamW <= {TARGET_FUSED}x torch fused):\n\n"
            f"{verdict_text}\n"
        )
    if comparisons:
        body += f"\nIssue 14's optimizers, ours vs each other implementation (median / median):\n\n{comparison_text}\n"
    _report.publish(
        args,
        f"Optimizer step on ResNet-18 parameters ({setup})",
        body,
        started,
        load_before,
        headline=headline,
        table=step_table if results else ref_table,
    )
    if cache is not None:
        cache.cleanup()


if __name__ == "__main__":
    main()
