"""The paired timing behind benchmarks/template_overhead.py, and a smoke run of the script."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _paired  # noqa: E402


class FakeBare:
    def __init__(self, clock, cost):
        self.clock, self.cost, self.steps = clock, cost, 0

    def step(self):
        self.clock[0] += self.cost
        self.steps += 1


def test_paired_steps_split_each_cycle_into_bare_and_tested_time(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(_paired.time, "perf_counter", lambda: clock[0])
    bare = FakeBare(clock, cost=2.0)
    pairs = _paired.PairedSteps(bare, warmup=2, steps=3)
    tested_costs = [9.0, 9.0, 5.0, 6.0, 7.0, 99.0]  # warm-up steps cost 9; the last call only closes step 4
    for cost in tested_costs:
        pairs.cycle()
        clock[0] += cost
    assert pairs.done and bare.steps == 5  # warmup + steps bare steps; none after the last tested one
    assert pairs.bare_s == [2.0, 2.0, 2.0]
    assert pairs.tested_s == [5.0, 6.0, 7.0]


def test_bare_step_holds_the_given_lock(monkeypatch):
    class Lock:
        held = False

        def __enter__(self):
            Lock.held = True

        def __exit__(self, *exc):
            Lock.held = False

    seen = []

    class Bare:
        def step(self):
            seen.append(Lock.held)

    pairs = _paired.PairedSteps(Bare(), warmup=0, steps=2)
    for _ in range(3):
        pairs.cycle(bare_lock=Lock())
    assert seen == [True, True] and not Lock.held


def test_template_overhead_script_runs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "template_overhead.py"),
            "--repeats",
            "1",
            "--warmup",
            "2",
            "--steps",
            "10",
            "--target",
            "1000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "control: a second bare loop" in out.stdout and "template overhead" in out.stdout


def test_a_result_replaces_the_last_of_its_title_and_command_and_nothing_else(tmp_path):
    import _report

    def section(title, command, number):
        return f"## {title}: 2026-12-03 10:0{number} UTC\n\n- Command: `{command}` (from the repository root)\n\n{number}\n"

    path = tmp_path / "results.md"
    _report.replace_section(path, "A", section("A", "python a.py", 1))
    _report.replace_section(path, "A", section("A", "python a.py --big", 2))
    _report.replace_section(path, "B", section("B", "python b.py", 3))
    _report.replace_section(path, "A", section("A", "python a.py", 4))  # the same result, measured again
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## A: 2026-12-03 10:04 UTC",
        "## A: 2026-12-03 10:02 UTC",
        "## B: 2026-12-03 10:03 UTC",
    ]
