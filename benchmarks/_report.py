"""Shared by the benchmark scripts: the machine line, tables, and appending results to docs/benchmarks.md.

Every script prints its table and appends one dated section; old sections are never rewritten, so
docs/benchmarks.md is a log of every recorded measurement. Not a benchmark itself.
"""

import datetime
import importlib.metadata
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
INTRO = """# Benchmarks

Measured results of the scripts in `benchmarks/`. Each section below was appended by a script
(`python benchmarks/<name>.py`): the date, the machine, the exact command and the numbers it
measured. Re-running a script appends a new section; older sections are kept as they were.
"""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: OS, CPU, core count, memory, Python and library versions."""
    mem = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {_cpu_model()}, "
        f"{os.cpu_count()} logical CPUs{mem}; Python {platform.python_version()}, "
        f"torch {_version('torch')}, lightning {_version('lightning')}, hydra-core {_version('hydra-core')}, "
        f"wandb {_version('wandb')}"
    )


def load() -> str:
    """The 1/5/15-minute load average: other work on the machine skews timings."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "conf", "train.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {commit}" + (" + uncommitted changes in src/, conf/ or train.py" if dirty else "")


def command() -> str:
    """The command that started this script, as one would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A markdown table, padded so it also reads well on a terminal. align: 'l'/'r' per column."""
    cells = [[str(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]

    def line(values):
        return (
            "| " + " | ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align)) + " |"
        )

    rule = "| " + " | ".join("-" * (w - 1) + ":" if a == "r" else "-" * w for w, a in zip(widths, align)) + " |"
    return "\n".join([line([str(h) for h in headers]), rule, *(line(r) for r in cells)])


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def append_section(title: str, body: str, started: datetime.datetime, load_before: str, path: Path = DOCS) -> None:
    """Append `## title: date` with the machine, command and code version, then body (markdown)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        path.write_text(INTRO)
    stamp = started.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"\n## {title}: {stamp}\n\n"
        f"- Command: `{command()}` (from the repository root)\n"
        f"- Machine: {machine()}\n"
        f"- Code: {code_version()}\n"
        f"- Load average (1 / 5 / 15 min): {load_before} before, {load()} after; other processes on the "
        f"machine skew timings\n\n"
        f"{body.strip()}\n"
    )
    with path.open("a") as f:
        f.write(section)
    print(f"\nappended to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
