"""Shared by the benchmark scripts: the machine line, tables, and where a result goes.

Every script prints its dated section (command, machine, code version, load, numbers). It writes
it to a file only when asked: `--out FILE`, or `--docs` for docs/benchmarks.md. Either replaces the
file's section of the same title and command, so docs/benchmarks.md holds the latest result of
each benchmark and command; the earlier ones stay in git's history. Not a benchmark itself.
"""

import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
INTRO = """# Benchmarks

The latest result of each script in `benchmarks/`, written by `python benchmarks/<name>.py --docs`:
the date, the machine, the exact command and the numbers it measured. Re-running a script with
`--docs` replaces its section; earlier results are in git's history of this file.
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


def add_output_args(parser) -> None:
    parser.add_argument("--out", type=Path, help="also write the result to this markdown file (replacing its last)")
    parser.add_argument("--docs", action="store_true", help=f"also write it to {DOCS.relative_to(ROOT)} (replaced)")


def publish(args, title: str, body: str, started: datetime.datetime, load_before: str) -> str:
    """Print `## title: date` with the machine, command and code version, then body (markdown);
    write it where `args` say (--out, --docs), replacing a section of the same title there."""
    stamp = started.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {title}: {stamp}\n\n"
        f"- Command: `{command()}` (from the repository root)\n"
        f"- Machine: {machine()}\n"
        f"- Code: {code_version()}\n"
        f"- Load average (1 / 5 / 15 min): {load_before} before, {load()} after; other processes on the "
        f"machine skew timings\n\n"
        f"{body.strip()}\n"
    )
    print("\n" + section)
    for path in [p for p in (getattr(args, "out", None), DOCS if getattr(args, "docs", False) else None) if p]:
        replace_section(Path(path), title, section)
        print(f"written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return section


def _key(section: str) -> tuple[str, str]:
    """A result's identity: its title and its command (another workload or option is another result)."""
    title = re.match(r"## (.*): \d{4}-\d\d-\d\d \d\d:\d\d UTC", section)
    command_line = re.search(r"^- Command: `([^`]*)`", section, re.M)
    return (title.group(1) if title else section.split("\n", 1)[0], command_line.group(1) if command_line else "")


def replace_section(path: Path, title: str, section: str) -> None:
    """The file with the section of the same title and command replaced by `section` (appended
    when it has none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() and path.read_text().strip() else INTRO
    parts = re.split(r"(?m)^(?=## )", text)
    same = [i for i, part in enumerate(parts) if part.startswith("## ") and _key(part) == _key(section)]
    if same:
        parts[same[0]] = section + "\n"
        parts = [part for i, part in enumerate(parts) if i not in same[1:]]
    else:
        parts.append(("" if parts[-1].endswith("\n\n") else "\n") + section)
    path.write_text("".join(parts))


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
