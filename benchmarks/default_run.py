"""The default training command, `python train.py`, end to end: wall time, accuracy and peak memory.

Latest (2026-11-23 13:46 UTC, AMD EPYC, 2 logical CPUs): `python train.py` 15.5 s per command (7.3 s
inside train()), test/acc 0.9805, peak RSS 987 MB (mean of 3 runs); see docs/benchmarks.md.

Runs `python train.py [overrides]` from the repository root as a subprocess --runs times (default 3)
and reports per run and as mean / min / max:
  - wall time of the whole command (interpreter start to exit), and `wall_time_s` from the run's
    metrics.json (time inside optlab.run.train(): instantiate, fit, test); the difference is
    startup (imports, config) plus teardown (W&B finish),
  - test/acc and val/acc_best from metrics.json,
  - CPU time (user + system) of the command, from os.wait4: less sensitive than wall time to
    other processes on the machine,
  - peak memory three ways: `peak_rss_mb` from metrics.json (ru_maxrss of the training process
    at the end of train()); ru_maxrss from os.wait4 (the training process over its whole life,
    interpreter exit included; children started with fork/exec inherit their parent's high-water
    mark, so this is the largest single process, not a sum); and the peak of the summed RSS of
    the process tree (train.py plus the wandb-core service and its helper), sampled from /proc
    every 0.1 s (Linux only; short spikes between samples are missed).

To run (15-25 s per run on 2 CPU cores):
    python benchmarks/default_run.py                 # 3 runs of `python train.py`
    python benchmarks/default_run.py --runs 5 optimizer=adamw
    python benchmarks/default_run.py --docs   # also into docs/benchmarks.md and the Latest line above
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, only benchmarks/ is on the path
from benchmarks import _harness, _report  # noqa: E402

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may contain spaces
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss_mb(pid: int) -> float:
    """Summed resident memory of pid and all its descendants, from /proc."""
    tree, todo, total_kb = _children(), [pid], 0
    while todo:
        p = todo.pop()
        todo.extend(tree.get(p, []))
        try:
            total_kb += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE_KB
        except (OSError, IndexError, ValueError):
            pass
    return total_kb / 1024


class TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_mb, self.done = pid, interval, 0.0, threading.Event()

    def run(self) -> None:
        if not Path("/proc").is_dir():
            self.peak_mb = float("nan")
            return
        while not self.done.wait(self.interval):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))


def run_dirs() -> set[Path]:
    base = ROOT / "logs" / "train"
    return {p for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()


def find_run_dir(before: set[Path], output: str) -> Path:
    """The run's folder: new since the start and printed in the output (Rich may wrap the path)."""
    new = [p for p in run_dirs() - before if (p / "metrics.json").is_file()]
    flat = "".join(output.split())
    printed = [p for p in new if "".join(str(p).split()) in flat]
    candidates = printed or new
    if not candidates:
        raise RuntimeError("the run wrote no logs/train/<run_id>/metrics.json")
    return max(candidates, key=lambda p: (p / "metrics.json").stat().st_mtime)


def one_run(overrides: list[str]) -> dict:
    before = run_dirs()
    with tempfile.TemporaryFile(mode="w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "train.py", *overrides], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.done.set()
        sampler.join()
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        print(output[-3000:], file=sys.stderr)
        raise SystemExit(f"train.py exited with {proc.returncode}")
    run_dir = find_run_dir(before, output)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "run_dir": run_dir.relative_to(ROOT),
        "wall_s": wall,
        "train_s": metrics["wall_time_s"],
        "outside_s": wall - metrics["wall_time_s"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "test_acc": metrics.get("test/acc", float("nan")),
        "val_acc_best": metrics.get("val/acc_best", float("nan")),
        "rss_main_mb": metrics.get("peak_rss_mb", float("nan")),
        "rss_child_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "rss_tree_mb": sampler.peak_mb,
    }


COLUMNS = [  # key, header, format
    ("wall_s", "command wall (s)", "{:.1f}"),
    ("train_s", "inside train() (s)", "{:.1f}"),
    ("outside_s", "startup + teardown (s)", "{:.1f}"),
    ("cpu_s", "CPU time (s)", "{:.1f}"),
    ("test_acc", "test/acc", "{:.4f}"),
    ("val_acc_best", "val/acc_best", "{:.4f}"),
    ("rss_main_mb", "peak RSS in train() (MB)", "{:.0f}"),
    ("rss_child_mb", "peak RSS train.py, whole life (MB)", "{:.0f}"),
    ("rss_tree_mb", "peak RSS process tree, sampled (MB)", "{:.0f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    _report.add_output_args(parser)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to train.py")
    args = parser.parse_args()
    started, load_before = _report.now(), _report.load()
    command = " ".join(["python train.py", *args.overrides])

    results = []
    for i in range(args.runs):
        r = one_run(args.overrides)
        results.append(r)
        print(f"run {i + 1}/{args.runs}: {r['wall_s']:.1f} s, test/acc {r['test_acc']:.4f}, {r['run_dir']}", flush=True)

    headers = ["run", *(h for _, h, _ in COLUMNS)]
    rows = [[str(r["run_dir"].name), *(fmt.format(r[k]) for k, _, fmt in COLUMNS)] for r in results]
    summaries = {k: _harness.summary([r[k] for r in results]) for k, _, _ in COLUMNS}
    for stat in ("mean", "min", "max"):
        rows.append([f"**{stat}**", *(fmt.format(summaries[k][stat]) for k, _, fmt in COLUMNS)])
    text = _report.Table(headers, rows)
    print(f"\n`{command}`, {args.runs} runs\n\n{text}")

    same = len({(r["test_acc"], r["val_acc_best"]) for r in results}) == 1
    exit_growth = statistics.median(r["rss_child_mb"] - r["rss_main_mb"] for r in results)
    body = (
        f"`{command}` run {args.runs} times, one after another. Command wall is the whole command; "
        '"inside train()" is `wall_time_s` of the run\'s metrics.json; the rest is interpreter start, imports, '
        "config composition and teardown. CPU time is user + system of train.py and the children it waited "
        'for. "Peak RSS in train()" is `peak_rss_mb` of metrics.json (measured when train() returns); '
        '"whole life" is ru_maxrss from wait4, interpreter exit included; the process tree peak sums '
        "train.py and its children (wandb-core), sampled every 0.1 s.\n\n"
        f"{text}\n\n"
        + (
            "Accuracy was identical in every run (same seed).\n"
            if same
            else "Accuracy differed between runs with the same seed.\n"
        )
        + (
            f"train.py's peak RSS over its whole life exceeds `peak_rss_mb` of metrics.json by {exit_growth:.0f} MB "
            "(median): the peak comes after train() returns.\n"
            if exit_growth > 0.05 * results[0]["rss_main_mb"]
            else ""
        )
    )
    mean = {k: s["mean"] for k, s in summaries.items()}
    headline = (
        f"`{command}` {mean['wall_s']:.1f} s per command ({mean['train_s']:.1f} s inside train()), "
        f"test/acc {mean['test_acc']:.4f}, peak RSS {mean['rss_child_mb']:.0f} MB (mean of {args.runs} runs)"
    )
    _report.publish(args, "Default run (`python train.py`)", body, started, load_before, headline=headline, table=text)


if __name__ == "__main__":
    main()
