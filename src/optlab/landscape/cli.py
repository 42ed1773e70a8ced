"""`python -m optlab.landscape`: optimizer paths on the 2-D test functions, as PNG and HTML.

To run:  python -m optlab.landscape                       # every function, sgd rmsprop adam adamw
         python -m optlab.landscape --functions rosenbrock --optimizers adam torch_adam --iters 300
         python -m optlab.landscape --lr adam=0.05 rosenbrock:sgd=0.002 --out figs/banana

Writes `<function>.png` (surface + contour), `<function>.html` (the same, interactive, plotly.js
embedded) and `run.json` (what ran, and where each path ended) into a new folder
`logs/landscape/<run id>/`, or into `--out` if that folder is new or empty; an existing run's
files are never overwritten. Prints the final point, final value and distance to the nearest
minimum per optimizer. Every argument is checked before anything is written: a bad one is
reported in one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from optlab import strict_json
from optlab.landscape.functions import FUNCTIONS, TestFunction
from optlab.landscape.trajectory import DEFAULT_OPTIMIZERS, OPTIMIZERS, family, resolve_optimizer, trajectory

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class UsageError(Exception):
    """A bad argument; reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line too, not usage + message
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments, with the module docstring's "To run:" lines as examples; its errors raise
    UsageError (one line, exit 2) instead of argparse's usage block."""
    p = _Parser(
        prog="python -m optlab.landscape",
        description="Optimizer paths on the 2-D test functions, as PNG (matplotlib) and HTML (plotly).",
        epilog="examples:\n" + __doc__.split("\n\n")[1].replace("To run:", "       "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--functions",
        nargs="+",
        metavar="NAME",
        default=list(FUNCTIONS),
        help=f"functions to draw (default: all of {', '.join(FUNCTIONS)})",
    )
    p.add_argument(
        "--optimizers",
        nargs="+",
        metavar="NAME",
        default=list(DEFAULT_OPTIMIZERS),
        help=f"optimizer names ({', '.join(OPTIMIZERS)}) or dotted paths to an Optimizer class "
        f"(default: {' '.join(DEFAULT_OPTIMIZERS)})",
    )
    p.add_argument("--iters", type=int, default=None, help="steps per path (default: each function's own)")
    p.add_argument(
        "--lr",
        nargs="+",
        action="extend",
        default=[],
        metavar="[FUNCTION:]OPTIMIZER=LR",
        help="learning-rate overrides, e.g. adam=0.05 or rosenbrock:sgd=0.002",
    )
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help="dtype of the parameter (default float32)")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder, new or empty (default: logs/landscape/<run id>/)"
    )
    p.add_argument("--no-png", action="store_true", help="skip the matplotlib PNGs")
    p.add_argument("--no-html", action="store_true", help="skip the plotly HTML pages")
    p.add_argument("--list", action="store_true", help="list functions and optimizers, then exit")
    return p


@dataclass
class Job:
    """One optimizer on one function, as `plan` checked it: `hparams` hold the lr chosen (--lr for this
    function, else --lr, else the function's own for the optimizer's family, else none: the optimizer's
    default); `run` fills `path`."""

    fn: TestFunction
    optimizer: str
    cls: type
    hparams: dict
    iters: int
    path: torch.Tensor | None = field(default=None, repr=False)


def _parse_lrs(items: list[str], functions: list[str], optimizers: list[str]) -> dict[tuple[str | None, str], float]:
    lrs = {}
    for item in items:
        key, sep, value = item.partition("=")
        fn_name, _, opt = key.rpartition(":") if ":" in key else (None, "", key)
        if not sep or not opt:
            raise UsageError(f"--lr {item!r}: expected [FUNCTION:]OPTIMIZER=LR, e.g. adam=0.05 or rosenbrock:sgd=0.002")
        if fn_name is not None and fn_name not in functions:
            raise UsageError(
                f"--lr {item!r}: function {fn_name!r} is not being drawn; choose one of: {', '.join(functions)}"
            )
        if opt not in optimizers:
            raise UsageError(
                f"--lr {item!r}: optimizer {opt!r} is not being run; choose one of: {', '.join(optimizers)}"
            )
        try:
            lr = float(value)
        except ValueError:
            raise UsageError(f"--lr {item!r}: {value!r} is not a number") from None
        if not lr > 0 or lr == float("inf"):
            raise UsageError(f"--lr {item!r}: the learning rate must be a positive finite number")
        lrs[(fn_name, opt)] = lr
    return lrs


def plan(args: argparse.Namespace) -> list[Job]:
    """Every (function, optimizer) job, validated: names, lrs, imports, constructor arguments."""
    for name in args.functions:
        if name not in FUNCTIONS:
            raise UsageError(f"unknown function {name!r}; choose from: {', '.join(FUNCTIONS)}")
    for name in args.optimizers:
        if name not in OPTIMIZERS and "." not in name:
            raise UsageError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)} (or a dotted path)")
    if len(set(args.functions)) < len(args.functions) or len(set(args.optimizers)) < len(args.optimizers):
        raise UsageError("--functions and --optimizers must not repeat a name")
    if args.iters is not None and args.iters < 1:
        raise UsageError(f"--iters {args.iters}: must be at least 1")
    lrs = _parse_lrs(args.lr, args.functions, args.optimizers)
    classes = {}
    for name in args.optimizers:
        try:
            classes[name] = resolve_optimizer(name)
        except (ImportError, AttributeError, TypeError) as e:
            target = OPTIMIZERS.get(name, (name,))[0]
            raise UsageError(f"optimizer {name!r}: cannot use {target} ({type(e).__name__}: {e})") from None
    jobs = []
    dtype = DTYPES[args.dtype]
    for fn_name in args.functions:
        fn = FUNCTIONS[fn_name]
        for name in args.optimizers:
            cls, hparams = classes[name]
            lr = lrs.get((fn_name, name), lrs.get((None, name), fn.lrs.get(family(name))))
            if lr is not None:
                hparams = {**hparams, "lr": lr}
            try:  # a constructor that rejects its arguments should stop the run before anything is written
                cls([torch.nn.Parameter(torch.zeros(2, dtype=dtype))], **hparams)
            except Exception as e:  # noqa: BLE001 - any constructor error is a usage error here
                raise UsageError(f"optimizer {name!r} rejects {hparams} on {fn_name}: {e}") from None
            jobs.append(Job(fn, name, cls, hparams, args.iters or fn.iters))
    return jobs


def new_run_dir(out: Path | None) -> Path:
    """`out` if it is new or empty, else a usage error; by default a fresh logs/landscape/<run id>/."""
    if out is not None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UsageError(f"--out {out}: exists and is not an empty folder; refusing to overwrite, pick a new one")
        out.mkdir(parents=True, exist_ok=True)
        return out
    while True:
        run = Path("logs/landscape") / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            run.mkdir(parents=True, exist_ok=False)
            return run
        except FileExistsError:
            continue


def summary(job: Job) -> dict:
    p = job.path.to(torch.float64)
    end = p[-1]
    with torch.no_grad():
        value = job.fn(end).item()
    minima = torch.tensor(job.fn.minima, dtype=torch.float64).reshape(-1, 2)
    dist = (end - minima).norm(dim=1).min().item() if len(minima) else None
    (x0, x1), (y0, y1) = job.fn.bounds
    inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
    note = "diverged" if not torch.isfinite(p).all() else ("" if inside.all() else "left the plot")
    return {
        "function": job.fn.name,
        "optimizer": job.optimizer,
        "class": f"{job.cls.__module__}.{job.cls.__qualname__}",
        "hparams": job.hparams,
        "iters": job.iters,
        "start": p[0].tolist(),
        "final": end.tolist(),
        "final_value": value,
        "distance_to_nearest_minimum": dist,
        "note": note,
    }


def print_table(rows: list[dict], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"landscape run -> {out}")
    for col in ("function", "optimizer", "lr", "iters", "final (x, y)", "f(final)", "to nearest min", "note"):
        table.add_column(col, justify="right" if col in ("lr", "iters", "f(final)", "to nearest min") else "left")
    for r in rows:
        lr = r["hparams"].get("lr")
        dist = r["distance_to_nearest_minimum"]
        table.add_row(
            r["function"],
            r["optimizer"],
            "default" if lr is None else f"{lr:g}",
            str(r["iters"]),
            "({:.4g}, {:.4g})".format(*r["final"]),
            f"{r['final_value']:.6g}",
            "n/a" if dist is None else f"{dist:.3g}",
            r["note"],
        )
    Console(width=max(120, Console().width)).print(table)


def run(args: argparse.Namespace) -> Path:
    jobs = plan(args)
    out = new_run_dir(args.out)
    dtype = DTYPES[args.dtype]
    for job in jobs:
        job.path = trajectory(job.fn, job.fn.start, job.cls, job.iters, dtype=dtype, **job.hparams)
    rows = [summary(job) for job in jobs]
    if not (args.no_png and args.no_html):
        from optlab.landscape.plots import write_html, write_png

        for fn_name in args.functions:
            fn_jobs = [j for j in jobs if j.fn.name == fn_name]
            paths = {j.optimizer: j.path for j in fn_jobs}
            labels = {
                j.optimizer: j.optimizer + (f" (lr={j.hparams['lr']:g})" if "lr" in j.hparams else "") for j in fn_jobs
            }
            fn = FUNCTIONS[fn_name]
            if not args.no_png:
                write_png(fn, paths, out / f"{fn_name}.png", labels=labels)
            if not args.no_html:
                write_html(fn, paths, out / f"{fn_name}.html", labels=labels)
    record = {"argv": args.argv, "dtype": args.dtype, "runs": rows}
    (out / "run.json").write_text(strict_json.dumps(record, indent=2) + "\n")
    print_table(rows, out)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        if args.list:
            print("functions:")
            for n, f in FUNCTIONS.items():
                print(f"  {n:12s} {f.title}")
            print("optimizers (or any dotted path to an Optimizer subclass):")
            for n, (dotted, hparams) in OPTIMIZERS.items():
                print(f"  {n:16s} {dotted}" + (f" {hparams}" if hparams else ""))
            return 0
        run(args)
    except UsageError as e:
        print(f"python -m optlab.landscape: error: {e}", file=sys.stderr)
        return 2
    return 0
