"""Where each sweep storage stops scaling: trials finished per second by 1, 4 and 16 workers.

Latest (2026-12-02 18:59 UTC, AMD EPYC, 2 logical CPUs): trials/s with an instant objective, 1-16
workers: sqlite 8.68-11.12, journal 28.93-84.25, postgresql 6.35-8.98; 1 s trials, 16 workers:
sqlite 47%, journal 87%, postgresql 33% of the ideal; see docs/benchmarks.md.

Every worker runs the sweep's own loop (`optlab.sweep.driver.work`: the lost-trial check, the
exact trial cap, the trial's attributes, heartbeats, tell) on one shared study, with training
replaced by an objective that returns at once ("instant": the storage's own ceiling) or after 1 s
("1 s": how close N workers get to N trials/s). Storages: sqlite, a journal file, PostgreSQL (a
throwaway server from scripts/postgres/local-server.sh, or --postgres URL). Workers are separate
processes started before the clock starts; the clock runs from "go" to the last trial's end.

To run:
    python benchmarks/sweep_storage.py                      # the full grid
    python benchmarks/sweep_storage.py --workers 1 4 --storages sqlite journal
    python benchmarks/sweep_storage.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, only benchmarks/ is on the path
from benchmarks import _report  # noqa: E402
from benchmarks._report import fmt_span  # noqa: E402

HEADERS = ["storage", "workers", "objective", "trials", "wall (s)", "trials/s", "vs ideal"]
PG_SCRIPT = ROOT / "scripts" / "postgres" / "local-server.sh"


def _settings(url: str, study: str, n_trials: int, study_dir: Path):
    from optlab.run import compose_config
    from optlab.sweep.driver import settings

    overrides = [
        f"storage={url}",
        f"study_name={study}",
        f"n_trials={n_trials}",
        "report=false",
        "sweep.heartbeat.interval=1",
        "sweep.heartbeat.grace=60",
        f"paths.log_dir={study_dir}",
    ]
    return settings(compose_config(overrides, run_dir=str(study_dir), config_name="sweep"), overrides)


def _fake_launch(seconds: float):
    """Stands in for training a trial (Settings.launch): wait `seconds` under the real heartbeat,
    report a metric."""
    import contextlib
    import random

    def launch(s, job, while_running=contextlib.nullcontext):
        with while_running():
            if seconds:
                time.sleep(seconds)
        return {"status": "ok", "metrics": {s.metric: random.random()}, "wall_s": seconds}

    return launch


def _worker(url, study, n_trials, seconds, study_dir, ready, go, done):
    sys.stdout = open(os.devnull, "w")  # the per-trial lines of work()
    import optlab.sweep.driver as driver

    s = _settings(url, study, n_trials, Path(study_dir))
    s.worker = f"bench-{os.getpid()}"
    driver.Settings.launch = _fake_launch(seconds)
    handle = driver.open_study(s)
    ready.release()
    go.wait()
    ran = driver.work(handle, s)
    done.put(ran)


def measure(url: str, workers: int, seconds: float, n_trials: int, tag: str) -> dict:
    """Trials per second of `workers` processes finishing `n_trials` on one fresh study."""
    ctx = mp.get_context("spawn")
    study = f"bench-{tag}-{workers}w-{int(seconds * 1000)}ms-{os.getpid()}-{time.time_ns() % 10**9}"
    study_dir = Path(tempfile.mkdtemp(prefix="sweep-storage-"))
    import optlab.sweep.driver as driver

    driver.open_study(_settings(url, study, n_trials, study_dir))  # created once, before the race
    ready, go, done = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, study, n_trials, seconds, str(study_dir), ready, go, done))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    start = time.time()
    go.set()
    for _ in procs:
        done.get(timeout=1800)
    for p in procs:
        p.join()
    import optuna

    from optlab.sweep.study import make_storage

    trials = [
        t
        for t in optuna.load_study(study_name=study, storage=make_storage(url)).get_trials()
        if t.state.name == "COMPLETE"
    ]
    complete = len(trials)
    # To the last trial's end: a worker that finds the cap reached idles until the others finish.
    wall = max(t.datetime_complete.timestamp() for t in trials) - start
    return {
        "complete": complete,
        "wall_s": wall,
        "per_s": complete / wall,
        "ideal": workers / seconds if seconds else None,
    }


def start_postgres() -> tuple[str, dict] | None:
    env = {**os.environ, "OPTLAB_PG_DIR": f"/tmp/optlab-pg-bench-{os.getpid()}"}
    started = subprocess.run([str(PG_SCRIPT), "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        print(f"PostgreSQL skipped: {started.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return started.stdout.strip(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storages", nargs="+", default=["sqlite", "journal", "postgresql"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--trials-instant", type=int, default=60, help="trials of the instant objective")
    parser.add_argument("--rounds", type=int, default=3, help="1 s objective: trials = rounds x workers")
    parser.add_argument("--seconds", type=float, default=1.0, help="the slow objective's duration")
    parser.add_argument("--postgres", help="a postgresql:// URL to use instead of a throwaway local server")
    _report.add_output_args(parser)
    args = parser.parse_args()
    started, load_before = _report.now(), _report.load()
    scratch = Path(tempfile.mkdtemp(prefix="sweep-storage-"))
    urls, server = {}, None
    for name in args.storages:
        if name == "sqlite":
            urls[name] = f"sqlite:///{scratch}/study.db"
        elif name == "journal":
            urls[name] = f"journal:{scratch}/study.log"
        elif name == "postgresql":
            if args.postgres:
                urls[name] = args.postgres
            else:
                server = start_postgres()
                if server:
                    urls[name] = server[0]
    most = max(args.workers)
    rows, instant, slow = [], {}, {}  # per storage: instant trials/s at each worker count; slow at the most
    try:
        for name, url in urls.items():
            for workers in args.workers:
                for seconds, n_trials in ((0.0, args.trials_instant), (args.seconds, args.rounds * workers)):
                    r = measure(url, workers, seconds, n_trials, name)
                    label = "instant" if not seconds else f"{seconds:g} s"
                    ideal = f"{r['per_s'] / r['ideal']:.0%} of {r['ideal']:g}/s" if r["ideal"] else "-"
                    rows.append([name, workers, label, r["complete"], f"{r['wall_s']:.1f}", f"{r['per_s']:.2f}", ideal])
                    print(_report.Table(HEADERS, rows[-1:]), flush=True)
                    if not r["ideal"]:
                        instant.setdefault(name, []).append(r["per_s"])
                    elif workers == most:
                        slow[name] = r["per_s"] / r["ideal"]
    finally:
        if server:
            subprocess.run([str(PG_SCRIPT), "stop"], env=server[1], capture_output=True)
    table = _report.Table(HEADERS, rows)
    print(table)
    headline = (
        f"trials/s with an instant objective, {fmt_span(args.workers, str)} workers: "
        + ", ".join(f"{name} {fmt_span(v)}" for name, v in instant.items())
        + f"; {args.seconds:g} s trials, {most} workers: "
        + ", ".join(f"{name} {share:.0%}" for name, share in slow.items())
        + " of the ideal"
    )
    _report.publish(
        args,
        "Sweep storage scaling (`sweep.py` workers on sqlite, journal, PostgreSQL)",
        str(table),
        started,
        load_before,
        headline=headline,
        table=table,
    )


if __name__ == "__main__":
    main()
