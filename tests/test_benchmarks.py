"""The benchmarks' shared harness (timing, pairing, tables, publishing), the header each script
keeps in step with docs/benchmarks.md, and a smoke run of one script. No timing is asserted."""

import argparse
import ast
import csv
import datetime
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the benchmarks import each other as benchmarks.*, from the repository root
from benchmarks import _harness, _report  # noqa: E402

SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


class FakeClock:
    """Stands in for time.perf_counter and time.process_time: advances only when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_harness.time, "perf_counter", fake)
    monkeypatch.setattr(_harness.time, "process_time", fake)
    return fake


# Interleaving and timing


def test_each_round_runs_every_name_once_starting_one_further():
    assert _harness.rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert _harness.rotated(("a", "b", "c"), 4) == ["b", "c", "a"]
    assert list(_harness.interleaved(["a", "b"], 3)) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]


def test_time_calls_divides_by_the_calls_and_syncs_before_start_and_stop(clock):
    events = []

    def call():
        events.append("call")
        clock.now += 2.0

    def sync():
        events.append("sync")
        clock.now += 100.0  # work queued before the clock started is not charged to the calls

    assert _harness.time_calls(call, calls=3) == (2.0, 2.0)
    events.clear()
    timing = _harness.time_calls(call, calls=2, sync=sync)
    assert events == ["sync", "call", "call", "sync"]
    assert timing.wall_s == pytest.approx((2 * 2.0 + 100.0) / 2)  # the closing sync waits for the calls' work


def test_sample_interleaved_warms_each_up_then_samples_them_in_rotated_rounds(clock):
    order = []

    def step(name, cost):
        def run():
            order.append(name)
            clock.now += cost

        return run

    result = _harness.sample_interleaved({"a": step("a", 1.0), "b": step("b", 3.0)}, warmup=2, repeats=3, calls=2)
    assert order == ["a", "a", "b", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert result["a"] == {"first": 2.0, "samples": [1.0, 1.0, 1.0], "median": 1.0}
    assert result["b"]["first"] == 6.0 and result["b"]["median"] == 3.0


# Pairing


def test_paired_ratios_compare_sums_of_each_window_and_drop_an_incomplete_one():
    tested, reference = [2.0, 4.0, 3.0, 3.0, 9.0], [1.0, 1.0, 2.0, 4.0, 1.0]
    assert _harness.paired_ratios(tested, reference) == [2.0, 4.0, 1.5, 0.75, 9.0]
    assert _harness.paired_ratios(tested, reference, window=2) == [3.0, 1.0]


def test_bootstrap_interval_of_the_median_resamples_whole_groups():
    assert _harness.bootstrap_interval([[1.1, 1.1], [1.1]]) == (1.1, 1.1)
    groups = [[1.0, 1.0, 1.0], [2.0], [3.0, 3.0]]
    low, high = _harness.bootstrap_interval(groups)
    assert 1.0 <= low < high <= 3.0
    assert _harness.bootstrap_interval(groups) == (low, high)  # seeded: the same data, the same interval
    narrow = _harness.bootstrap_interval(groups, level=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


class FakeBare:
    def __init__(self, clock, cost):
        self.clock, self.cost, self.steps = clock, cost, 0

    def step(self):
        self.clock.now += self.cost
        self.steps += 1


def test_paired_steps_split_each_cycle_into_bare_and_tested_time(clock):
    bare = FakeBare(clock, cost=2.0)
    pairs = _harness.PairedSteps(bare, warmup=2, steps=3)
    tested_costs = [9.0, 9.0, 5.0, 6.0, 7.0, 99.0]  # warm-up steps cost 9; the last call only closes step 4
    for cost in tested_costs:
        pairs.cycle()
        clock.now += cost
    assert pairs.done and bare.steps == 5  # warmup + steps bare steps; none after the last tested one
    assert pairs.bare_s == [2.0, 2.0, 2.0]
    assert pairs.tested_s == [5.0, 6.0, 7.0]


def test_bare_step_holds_the_given_lock():
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

    pairs = _harness.PairedSteps(Bare(), warmup=0, steps=2)
    for _ in range(3):
        pairs.cycle(bare_lock=Lock())
    assert seen == [True, True] and not Lock.held


def test_paired_overhead_reads_tested_over_bare_per_window():
    runs = [
        argparse.Namespace(bare_s=[0.010] * 4, tested_s=[0.011] * 4),
        argparse.Namespace(bare_s=[0.020] * 4, tested_s=[0.022, 0.022, 0.026, 0.026]),
    ]
    result = _harness.paired_overhead(runs, window=2)
    assert result["overhead"] == pytest.approx(0.1)  # windows: 1.1, 1.1, 1.1, 1.3
    assert result["pooled"] == pytest.approx([0.1, 0.2])
    assert result["low"] == pytest.approx(0.1) and result["high"] == pytest.approx(0.2)
    assert result["bare_ms"] == pytest.approx(15.0)  # the median window mean of the bare side
    assert result["added_ms"] == pytest.approx(result["overhead"] * result["bare_ms"])


def test_spread_and_summary():
    assert _harness.spread([2.0, 3.0, 2.5]) == pytest.approx(0.5)
    assert _harness.summary([1.0, 2.0, 6.0]) == {"mean": 3.0, "median": 2.0, "min": 1.0, "max": 6.0}


def test_subprocess_env_puts_the_repository_first_on_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = _harness.subprocess_env(WANDB_MODE="offline")
    assert env["PYTHONPATH"].split(":") == [str(ROOT), "/elsewhere"] and env["WANDB_MODE"] == "offline"
    monkeypatch.delenv("PYTHONPATH")
    assert _harness.subprocess_env()["PYTHONPATH"] == str(ROOT)  # no empty entry (that would mean the cwd)


# Output


def test_number_formats():
    assert [_report.fmt_bytes(b) for b in (4096, 256 * 2**10, 2**20, 256 * 2**20)] == [
        "4 KiB",
        "256 KiB",
        "1 MiB",
        "256 MiB",
    ]
    assert [_report.fmt_seconds(s) for s in (0.000755, 0.0018, 0.2557, 2.5)] == [
        "755 µs",
        "1.8 ms",
        "255.7 ms",
        "2.50 s",
    ]
    assert _report.fmt_span([0.88, 0.42, 0.5], _report.fmt_ratio) == "0.42x-0.88x"
    assert _report.fmt_span([3.241, 3.238]) == "3.24"  # one number where both ends print the same
    assert (_report.fmt_ratio(0.9876), _report.fmt_ratio(1.011, digits=3), _report.fmt_ratio(None)) == (
        "0.99x",
        "1.011x",
        "",
    )


def test_a_table_renders_as_markdown_and_writes_the_same_cells_as_csv(tmp_path):
    table = _report.Table(["run", "wall (s)"], [["a", "1.5"], ["**mean**", 12.25]])
    assert str(table) == (
        "| run      | wall (s) |\n| -------- | -------: |\n| a        |      1.5 |\n| **mean** |    12.25 |"
    )
    assert f"{table}" == str(table)
    table.write_csv(tmp_path / "out" / "rows.csv")
    with open(tmp_path / "out" / "rows.csv", newline="") as f:
        assert list(csv.reader(f)) == [["run", "wall (s)"], ["a", "1.5"], ["mean", "12.25"]]
    assert str(_report.Table(["x", "y"], [])) == "| x | y |\n| - | -: |"


def test_a_result_replaces_the_last_of_its_title_and_command_and_nothing_else(tmp_path):
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


def test_the_newest_section_of_each_script_is_found_by_date_not_place():
    text = _report.INTRO + "".join(
        f"## T: {when}\n\n- Command: `python benchmarks/{script}.py{opts}` (from the repository root)\n\n"
        for script, opts, when in [
            ("demo", " --big", "2026-12-02 09:00 UTC"),
            ("demo", "", "2026-11-30 23:59 UTC"),
            ("other", "", "2026-12-01 00:00 UTC"),
        ]
    )
    newest = _report.newest_by_script(text)
    assert {name: _report.section_date(s) for name, s in newest.items()} == {
        "demo": "2026-12-02 09:00 UTC",
        "other": "2026-12-01 00:00 UTC",
    }


HEADER = '''"""What demo measures.

Details.
"""

import sys
'''


def test_the_latest_paragraph_is_replaced_in_place_or_added_after_the_first_paragraph():
    first = _report.latest_paragraph("2026-12-01 10:00 UTC", "Xeon(R) Gold, 2 logical CPUs", "ours 0.98x " * 12)
    added = _report.with_latest(HEADER, first)
    assert added.startswith('"""What demo measures.\n\nLatest (2026-12-01 10:00 UTC, ')
    assert added.endswith('\n\nDetails.\n"""\n\nimport sys\n')
    assert max(len(line) for line in added.splitlines()) <= 100  # wrapped
    assert _report.read_latest(ast.get_docstring(ast.parse(added))) == (
        "2026-12-01 10:00 UTC",
        "Xeon(R) Gold, 2 logical CPUs",
        ("ours 0.98x " * 12).strip() + "; see docs/benchmarks.md.",
    )
    second = _report.with_latest(added, _report.latest_paragraph("2026-12-02 11:00 UTC", "EPYC, 4 logical CPUs", "1x"))
    assert second == HEADER.replace(
        "\n\nDetails", "\n\nLatest (2026-12-02 11:00 UTC, EPYC, 4 logical CPUs): 1x; see docs/benchmarks.md.\n\nDetails"
    )
    assert _report.read_latest("What demo measures.\n\nDetails.") is None


def test_publish_writes_the_csv_and_with_docs_rewrites_the_scripts_latest_line(tmp_path, monkeypatch, capsys):
    script = tmp_path / "benchmarks" / "demo.py"
    script.parent.mkdir()
    script.write_text(HEADER)
    monkeypatch.setattr(_report, "ROOT", tmp_path)
    monkeypatch.setattr(_report, "DOCS", tmp_path / "docs" / "benchmarks.md")
    monkeypatch.setattr(sys, "argv", [str(script), "--docs"])
    table = _report.Table(["variant", "ratio"], [["ours", "0.98x"]])
    args = argparse.Namespace(out=None, docs=False, csv=tmp_path / "rows.csv")
    started = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc)

    _report.publish(args, "Demo", f"{table}", started, "0.1", headline="ours 0.98x", table=table)
    assert (tmp_path / "rows.csv").read_text().splitlines() == ["variant,ratio", "ours,0.98x"]
    assert script.read_text() == HEADER and not _report.DOCS.exists()  # printed only: --docs not given

    args.docs = True
    _report.publish(args, "Demo", f"{table}", started, "0.1", headline="ours 0.98x", table=table)
    header = _report.read_latest(ast.get_docstring(ast.parse(script.read_text())))
    newest = _report.newest_by_script(_report.DOCS.read_text())["demo"]
    assert header[0] == _report.section_date(newest) == "2026-12-01 10:00 UTC"
    assert header[1] in newest and header[2] == "ours 0.98x; see docs/benchmarks.md."
    assert "header updated: benchmarks/demo.py" in capsys.readouterr().out


# Every script's header quotes its newest result in docs/benchmarks.md


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_the_header_states_the_latest_result_that_docs_records(script):
    docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
    latest = _report.read_latest(docstring)
    assert latest, f"{script.name}: its header has no '{_report.LATEST}<date>, <machine>): <headline>' paragraph"
    newest = _report.newest_by_script(_report.DOCS.read_text()).get(script.stem)
    assert newest, f"docs/benchmarks.md has no result of {script.name}: run it with --docs"
    when, machine, _ = latest
    assert when == _report.section_date(newest), (
        f"{script.name}'s header quotes {when}, docs/benchmarks.md's newest section is {_report.section_date(newest)}"
    )
    assert machine in newest.split("- Machine:", 1)[1].split("\n", 1)[0]


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
            "--csv",
            str(tmp_path / "rows.csv"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "control: a second bare loop" in out.stdout and "template overhead" in out.stdout
    with open(tmp_path / "rows.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "loop under test" and len(rows) == 7  # the header and one row per variant
