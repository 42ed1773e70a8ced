"""Time from `python train.py` to the first training step, and what that time goes to.

Latest (2026-11-23 05:13 UTC, AMD EPYC, 2 logical CPUs): first training step 7.81 s after `python
train.py` with logger=wandb (5.89 s with logger=none); of the probed run's 7.52 s, train.py's
imports 67%, the W&B run start 22%; see docs/benchmarks.md.

Three measurements, each in fresh processes started from the repository root:
  1. Time to the first training batch of `python train.py <run> logger=X` for X in wandb (the
     default), csv and none, where <run> = `trainer.max_epochs=1 ++trainer.limit_train_batches=2
     test=false` plus a callback (benchmarks._timers.FirstStepTimer, added with a
     `+callbacks.first_step._target_=...` override) that writes the wall-clock time of the first
     on_train_batch_start. The clock starts right before the process is started. Also the whole
     command's wall time (teardown included: W&B finishing its run shows here).
  2. The phases of that time, for the default logger: benchmarks/_startup_probe.py runs train.py
     the same way after importing train.py's imports one by one, and marks the end of preflight
     (compose + validate), Hydra's main, validate, instantiate and the W&B run start; the callback
     marks the Lightning setup steps. Each phase lists the top-level packages it imported first.
  3. Which packages the imports' time goes to: `python -X importtime train.py <run>` once,
     summed by top-level package (self time; -X importtime itself slows imports a little).
Medians over --repeats (default 2) runs; runs of different loggers are interleaved.

To run (about 2 minutes on 2 CPU cores):
    python benchmarks/startup.py
    python benchmarks/startup.py --repeats 3 --loggers wandb none
    python benchmarks/startup.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, only benchmarks/ is on the path
from benchmarks import _harness, _report  # noqa: E402

RUN = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "test=false",
    "+callbacks.first_step._target_=benchmarks._timers.FirstStepTimer",
]


def launch(argv: list[str], **env: str) -> tuple[float, float, str]:
    """Start argv; returns (wall-clock start time, seconds to exit, combined output)."""
    with tempfile.TemporaryFile(mode="w+") as log:
        t0 = time.time()
        proc = subprocess.run(argv, cwd=ROOT, env=_harness.subprocess_env(**env), stdout=log, stderr=subprocess.STDOUT)
        wall = time.time() - t0
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        print(output[-3000:], file=sys.stderr)
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}")
    return t0, wall, output


def first_step(logger: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp, "times.json")
        t0, wall, _ = launch([sys.executable, "train.py", *RUN, f"logger={logger}"], OPTLAB_BENCH_TIMES=str(times))
        marks = json.loads(times.read_text())
    return {"first_step_s": max(marks.values()) - t0, "wall_s": wall}  # the first batch is the last mark


def probe() -> list[tuple[str, float, list[str]]]:
    """(phase, seconds, packages first imported in it) from launch to the first training batch."""
    with tempfile.TemporaryDirectory() as tmp:
        probe_file, times_file = Path(tmp, "probe.json"), Path(tmp, "times.json")
        t0, _, _ = launch(
            [sys.executable, str(ROOT / "benchmarks" / "_startup_probe.py"), *RUN],
            OPTLAB_BENCH_PROBE=str(probe_file),
            OPTLAB_BENCH_TIMES=str(times_file),
        )
        p, fit = json.loads(probe_file.read_text()), json.loads(times_file.read_text())
    marks = [("interpreter start (python -> first line of the probe)", p["start"], [])]
    marks += [(name, t, new) for name, t, new in p["marks"]]
    marks += [(name, t, []) for name, t in fit.items() if name.startswith("fit:")]
    marks.sort(key=lambda m: m[1])
    phases, previous = [], t0
    for name, t, new in marks:
        phases.append((name, t - previous, new))
        previous = t
    return phases


def import_times() -> tuple[dict[str, float], float]:
    """Self time of every import of one `python -X importtime train.py` run, by top-level package."""
    with tempfile.TemporaryDirectory() as tmp:
        _, _, output = launch(
            [sys.executable, "-X", "importtime", "train.py", *RUN], OPTLAB_BENCH_TIMES=str(Path(tmp, "times.json"))
        )
    by_package: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            _, self_us, _, name = (part.strip() for part in line.replace("import time:", "|", 1).split("|"))
            seconds = int(self_us) / 1e6
        except ValueError:  # a line cut by other output
            continue
        top = name.split(".")[0]
        by_package[top] = by_package.get(top, 0.0) + seconds
    return dict(sorted(by_package.items(), key=lambda kv: -kv[1])), sum(by_package.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--loggers", nargs="+", default=["wandb", "csv", "none"])
    parser.add_argument("--top", type=int, default=10, help="packages listed in the import table")
    _report.add_output_args(parser)
    args = parser.parse_args()
    started, load_before = _report.now(), _report.load()

    _, python_s, _ = launch([sys.executable, "-c", "pass"])  # warm the interpreter's files
    python_s = statistics.median(launch([sys.executable, "-c", "pass"])[1] for _ in range(3))

    runs: dict[str, list[dict[str, float]]] = {lg: [] for lg in args.loggers}
    phase_runs: list[list[tuple[str, float, list[str]]]] = []
    for r in range(args.repeats):
        for logger in _harness.rotated(args.loggers, r):
            runs[logger].append(first_step(logger))
            print(
                f"repeat {r + 1}/{args.repeats} logger={logger:6s} first step after "
                f"{runs[logger][-1]['first_step_s']:.2f} s, command {runs[logger][-1]['wall_s']:.2f} s",
                flush=True,
            )
        phase_runs.append(probe())
        print(
            f"repeat {r + 1}/{args.repeats} probe: first step after {sum(s for _, s, _ in phase_runs[-1]):.2f} s",
            flush=True,
        )
    packages, import_total = import_times()

    # 1. loggers
    base = "none" if "none" in runs else None
    first_step_s = {logger: statistics.median(v["first_step_s"] for v in values) for logger, values in runs.items()}
    rows = []
    for logger, values in runs.items():
        fs = first_step_s[logger]
        wall = statistics.median(v["wall_s"] for v in values)
        extra = ""
        if base and logger != base:
            extra = f"{fs - first_step_s[base]:+.2f}"
        rows.append(
            [
                f"logger={logger}",
                f"{fs:.2f}",
                extra,
                f"{wall:.2f}",
                ", ".join(f"{v['first_step_s']:.2f}" for v in values),
            ]
        )
    loggers_table = _report.Table(
        ["command", "to first step (s)", "vs logger=none (s)", "whole command (s)", "runs: to first step (s)"], rows
    )

    # 2. phases (median per phase, in the order of the first run)
    names = [name for name, _, _ in phase_runs[0]]
    medians = {
        name: statistics.median(dict((n, s) for n, s, _ in run).get(name, 0.0) for run in phase_runs) for name in names
    }
    imported = {name: new for name, _, new in phase_runs[0]}
    total = sum(medians.values())
    phase_rows = [
        [
            name,
            f"{medians[name]:.2f}",
            f"{medians[name] / total * 100:.0f}%",
            ", ".join(imported[name][:8]) + (" ..." if len(imported[name]) > 8 else ""),
        ]
        for name in names
    ]
    phase_rows.append(["**to the first training batch**", f"{total:.2f}", "100%", ""])
    phases_table = _report.Table(
        ["phase (in order)", "median (s)", "share", "packages first imported there"], phase_rows, align="lrrl"
    )

    # 3. imports by package
    top = list(packages.items())[: args.top]
    rest = import_total - sum(s for _, s in top)
    pkg_rows = [[name, f"{s:.2f}", f"{s / import_total * 100:.0f}%"] for name, s in top]
    pkg_rows += [
        [f"{len(packages) - len(top)} other packages", f"{rest:.2f}", f"{rest / import_total * 100:.0f}%"],
        ["**all imports**", f"{import_total:.2f}", "100%"],
    ]
    packages_table = _report.Table(["top-level package", "import self time (s)", "share"], pkg_rows)

    imports = sum(v for k, v in medians.items() if k.startswith("import "))
    wandb_start = sum(v for k, v in medians.items() if "W&B" in k)
    fit = sum(v for k, v in medians.items() if k.startswith("fit:"))
    summary = (
        f"Of {total:.2f} s to the first batch: train.py's top-level imports (torch, lightning, hydra, "
        f"optlab) {imports:.2f} s ({imports / total * 100:.0f}%), the W&B run start {wandb_start:.2f} s "
        f"({wandb_start / total * 100:.0f}%), Lightning's fit up to the first batch {fit:.2f} s, the rest "
        "(interpreter, config, instantiation) "
        f"{total - imports - wandb_start - fit:.2f} s."
    )
    run = " ".join(RUN)
    print(f"\n`python -c pass`: {python_s:.3f} s\n\n{loggers_table}\n\n{phases_table}\n\n{summary}\n\n{packages_table}")
    body = (
        f"`<run>` = `{run}`: one epoch of 2 batches, no test, and a callback that records the wall-clock "
        "time of the first training batch. Clock from right before the process starts. Medians of "
        f"{args.repeats} runs (loggers interleaved); `python -c pass` takes {python_s:.3f} s.\n\n"
        "Time to the first training step of `python train.py <run> logger=X`:\n\n"
        f"{loggers_table}\n\n"
        "Where the time goes with the default logger (W&B, offline): benchmarks/_startup_probe.py "
        "runs train.py in-process after importing train.py's imports one by one, and marks the end of each "
        "phase:\n\n"
        f"{phases_table}\n\n{summary}\n\n"
        "Import time by top-level package (`python -X importtime train.py <run>`, one run, self time "
        "summed per package; a package's time includes nothing it imports from other packages):\n\n"
        f"{packages_table}\n"
    )
    first = args.loggers[0]
    headline = f"first training step {first_step_s[first]:.2f} s after `python train.py` with logger={first}"
    if base and first != base:
        headline += f" ({first_step_s[base]:.2f} s with logger={base})"
    headline += (
        f"; of the probed run's {total:.2f} s, train.py's imports {imports / total * 100:.0f}%, "
        f"the W&B run start {wandb_start / total * 100:.0f}%"
    )
    _report.publish(
        args,
        "Startup: `python train.py` to the first training step",
        body,
        started,
        load_before,
        headline=headline,
        table=loggers_table,
    )


if __name__ == "__main__":
    main()
