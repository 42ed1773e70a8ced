"""Does pruning pay? A fixed budget of trials on digits, median pruner vs none; and trials/minute
with 1 vs 2 workers sharing one study.

Latest (2026-11-23 09:48 UTC, AMD EPYC, 2 logical CPUs): pruning, mean over seeds [3, 4, 5]: ASHA
(successive halving) -0.25 points below the unpruned best with 48% of its epochs (target met),
median pruner (default) +0.00 points below the unpruned best with 78% of its epochs (target missed);
see docs/benchmarks.md.

Pruning: `python sweep.py` with the default space (lr, batch size, conditional weight decay), for
each TPE seed (--seeds) the same seed and number of trials (--trials, each up to --epochs epochs), with
`sweep/pruner=median` (the default), `hyperband`, `asha` (--pruners) and `none`. Reported: the best
val/acc_best, the epochs all trials trained in total (the compute spent), wall time and trial
states, per seed and over the seeds (one seed's best is a noisy number). Target: pruning within 0.5 points of the unpruned best with <= 50% of its epochs.
Note the validation split has ~270 images: one image is 0.37 points.

Workers: a study of --worker-trials trials (no pruning, --worker-epochs epochs each) run by one
worker, then by two workers started at once on the same storage; trials/minute = trials / wall
time from the first worker's start to the last one's end (process start-up included). Every
trial uses one torch thread (sweep.threads=1), so two workers use the two cores.

To run (about 20 minutes on 2 CPU cores):
    python benchmarks/sweep_pruning.py
    python benchmarks/sweep_pruning.py --only pruning --pruners asha,median --seeds 3,4,5
    python benchmarks/sweep_pruning.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, only benchmarks/ is on the path
from benchmarks import _report  # noqa: E402
from benchmarks._report import fmt_ratio  # noqa: E402

# One torch thread per trial everywhere: the digits net gains nothing from two, and two threads
# slow it ~4x when other work shares the cores (measured while writing this).
QUIET = [
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "report=false",
    "sweep.threads=1",
]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "sweep.py"), *QUIET, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "WANDB_SILENT": "true"},
    )


def finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"sweep failed ({p.args}):\n{out[-4000:]}")


def study_args(logs: Path, name: str, trials: int, epochs: int) -> tuple[str, list[str]]:
    """(storage URL, sweep.py overrides) of one study in its own sqlite file under `logs`."""
    storage = f"sqlite:///{logs}/{name}.db"
    return storage, [
        f"paths.log_dir={logs}",
        f"study_name={name}",
        f"storage={storage}",
        f"n_trials={trials}",
        f"trainer.max_epochs={epochs}",
    ]


def study_stats(storage: str, name: str) -> dict:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "best": study.best_value,
        "epochs": sum(t.user_attrs.get("epochs") or 0 for t in trials),
        "trials": len(trials),
        "states": ", ".join(f"{n} {k.lower()}" for k, n in sorted(states.items())),
        "best_params": study.best_trial.params,
    }


LABELS = {
    "median": "median pruner (default)",
    "hyperband": "Hyperband",
    "asha": "ASHA (successive halving)",
    "none": "no pruning",
}


def pruning_arms(
    logs: Path, trials: int, epochs: int, seeds: list[int], pruners: list[str], parallel: int
) -> list[dict]:
    """Every (pruner, seed) study, `parallel` at a time (epochs and accuracies do not depend on
    timing: one worker per study, deterministic training; wall times do)."""
    jobs = [(pruner, seed) for seed in seeds for pruner in [*pruners, "none"]]
    rows, running = [], []
    while jobs or running:
        while jobs and len(running) < parallel:
            pruner, seed = jobs.pop(0)
            name = f"bench-{pruner}-seed{seed}"
            storage, args = study_args(logs, name, trials, epochs)
            proc = start([*args, f"sweep/pruner={pruner}", f"sweep.sampler.seed={seed}"])
            running.append((proc, pruner, seed, name, storage, time.perf_counter()))
        time.sleep(1)
        for job in [j for j in running if j[0].poll() is not None]:
            running.remove(job)
            proc, pruner, seed, name, storage, t0 = job
            finish([proc])
            row = {
                "pruner": pruner,
                "label": LABELS.get(pruner, pruner),
                "seed": seed,
                "wall": time.perf_counter() - t0,
                **study_stats(storage, name),
            }
            rows.append(row)
            print(
                f"{row['label']} seed {seed}: best {row['best']:.4f}, {row['epochs']} epochs, {row['wall']:.0f} s",
                flush=True,
            )
    return rows


def worker_arms(logs: Path, trials: int, epochs: int) -> list[dict]:
    rows = []
    for n_workers in (1, 2):
        name = f"bench-workers{n_workers}"
        storage, args = study_args(logs, name, trials, epochs)
        t0 = time.perf_counter()
        finish([start([*args, "sweep/pruner=none"]) for _ in range(n_workers)])
        wall = time.perf_counter() - t0
        stats = study_stats(storage, name)
        rows.append({"workers": n_workers, "wall": wall, "per_min": stats["trials"] / wall * 60, **stats})
        print(f"{n_workers} worker(s): {stats['trials']} trials in {wall:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2", help="TPE seeds; every arm runs once per seed")
    parser.add_argument("--parallel", type=int, default=2, help="pruning studies run at the same time")
    parser.add_argument("--pruners", default="median,hyperband,asha", help="conf/sweep/pruner/ options, vs none")
    parser.add_argument("--only", choices=["pruning", "workers"], help="run one of the two measurements")
    parser.add_argument("--worker-trials", type=int, default=8)
    parser.add_argument("--worker-epochs", type=int, default=10)
    _report.add_output_args(parser)
    args = parser.parse_args()
    started, load_before = _report.now(), _report.load()
    with tempfile.TemporaryDirectory(prefix="optlab-sweep-bench-") as tmp:
        logs = Path(tmp)
        arms, workers = [], []
        if args.only != "workers":
            arms = pruning_arms(
                logs,
                args.trials,
                args.epochs,
                [int(x) for x in args.seeds.split(",")],
                [p for p in args.pruners.split(",") if p],
                args.parallel,
            )
        if args.only != "pruning":
            workers = worker_arms(logs, args.worker_trials, args.worker_epochs)
    sections = []  # (markdown, main table, headline) of each measurement run
    if arms:
        sections.append(pruning_section(args, arms))
    if workers:
        sections.append(workers_section(args, workers))
    _report.publish(
        args,
        "Sweeps: pruning vs none, 1 vs 2 workers (`sweep.py`)",
        "\n\n".join(text for text, _, _ in sections),
        started,
        load_before,
        headline="; ".join(headline for _, _, headline in sections),
        table=sections[0][1],  # the pruning table when it ran
    )


def pruning_section(args, rows: list[dict]) -> tuple[str, _report.Table, str]:
    import statistics

    seeds = sorted({r["seed"] for r in rows})
    full = {r["seed"]: r for r in rows if r["pruner"] == "none"}
    table, lines, headlines = [], [], []
    order = [*args.pruners.split(","), "none"]
    for pruner in sorted(dict.fromkeys(r["pruner"] for r in rows), key=lambda p: order.index(p) if p in order else 99):
        arm = sorted((r for r in rows if r["pruner"] == pruner), key=lambda r: r["seed"])
        gaps = [(full[r["seed"]]["best"] - r["best"]) * 100 for r in arm]
        shares = [r["epochs"] / full[r["seed"]]["epochs"] for r in arm]
        gap, share = statistics.fmean(gaps), sum(r["epochs"] for r in arm) / sum(full[r["seed"]]["epochs"] for r in arm)
        table.append(
            [
                arm[0]["label"],
                ", ".join(f"{r['best']:.4f}" for r in arm),
                f"{statistics.fmean(r['best'] for r in arm):.4f}",
                "" if pruner == "none" else f"{gap:+.2f}",
                ", ".join(str(r["epochs"]) for r in arm),
                f"{share:.0%}",
                f"{sum(r['wall'] for r in arm):.0f}",
                "; ".join(r["states"] for r in arm),
            ]
        )
        if pruner != "none":
            verdict = "target met" if gap <= 0.5 and share <= 0.5 else "target missed"
            headlines.append(
                f"{arm[0]['label']} {gap:+.2f} points below the unpruned best with {share:.0%} of its epochs ({verdict})"
            )
            lines.append(
                f"- {arm[0]['label']}: **{verdict}**: {gap:.2f} points "
                f"below the unpruned best on average (per seed: {', '.join(f'{g:+.2f}' for g in gaps)}; "
                f"target <= 0.5) with {share:.0%} of its epochs (per seed: "
                f"{', '.join(f'{x:.0%}' for x in shares)}; target <= 50%)."
            )
    t1 = _report.Table(
        [
            "pruner",
            "best val/acc_best per seed",
            "mean best",
            "points below unpruned",
            "epochs per seed",
            "epochs vs unpruned",
            "wall (s, sum)",
            "trial states per seed",
        ],
        table,
    )
    return (
        f"Pruning: {args.trials} trials of up to {args.epochs} epochs each per study, default space "
        f"(`sweep=default`), TPE seeds {seeds} (each pruner and the unpruned arm use the same seed); "
        f"`sweep/pruner=<arm>` with the settings of conf/sweep/pruner/ (median: n_startup_trials 5, "
        f"n_warmup_steps 2; hyperband and asha: min_resource 1, reduction_factor 3) vs `sweep/pruner=none`; "
        f"digits, default model and optimizer, `logger=none`, one worker per study, one torch thread per "
        f"trial (`sweep.threads=1`), {args.parallel} studies at a time (wall times overlap). One validation "
        f"image is 0.37 points.\n\n{t1}\n\n" + "\n".join(lines),
        t1,
        f"pruning, mean over seeds {seeds}: " + ", ".join(headlines),
    )


def workers_section(args, workers: list[dict]) -> tuple[str, _report.Table, str]:
    t2 = _report.Table(
        ["workers", "trials", "wall (s)", "trials / minute", "speed-up"],
        [
            [
                w["workers"],
                w["trials"],
                f"{w['wall']:.0f}",
                f"{w['per_min']:.2f}",
                fmt_ratio(w["per_min"] / workers[0]["per_min"]),
            ]
            for w in workers
        ],
    )
    return (
        f"Workers: {args.worker_trials} trials of {args.worker_epochs} epochs, `sweep/pruner=none`, one worker "
        f"vs two started together on one sqlite storage (`sweep.threads=1` in both); wall time from start to "
        f"the last worker's exit, start-up and trial processes included. Two workers can only be faster "
        f"when the second core is idle: compare with the load average above.\n\n{t2}",
        t2,
        f"2 workers {fmt_ratio(workers[-1]['per_min'] / workers[0]['per_min'])} the trials/minute of 1",
    )


if __name__ == "__main__":
    main()
