"""Shared by the benchmark scripts: the machine line, number formats, tables, and where a result goes.
How they time and pair things is in _harness.py.

Every script prints its dated section (command, machine, code version, load, numbers). It writes
it to a file only when asked: `--out FILE`, or `--docs` for docs/benchmarks.md. Either replaces the
file's section of the same title and command, so docs/benchmarks.md holds the latest result of
each benchmark and command; the earlier ones stay in git's history. `--csv FILE` writes the rows
of the script's main table. With `--docs` the script's own header line `Latest (<date>, <machine>):
<headline>` is rewritten too, so the header quotes what docs/benchmarks.md records (a test checks
that they agree). Not a benchmark itself.
"""

import ast
import csv
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"  # a section's time, as stamp() writes it
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


def machine_brief() -> str:
    """CPU and core count, e.g. 'AMD EPYC, 2 logical CPUs': the part of machine() a header quotes."""
    return f"{_cpu_model()}, {os.cpu_count()} logical CPUs"


def machine() -> str:
    """One line: OS, CPU, core count, memory, Python and library versions."""
    mem = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {machine_brief()}{mem}; "
        f"Python {platform.python_version()}, "
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


def fmt_bytes(b: int) -> str:
    """A power-of-two size: '4 KiB', '16 MiB' (whole units: the sizes benchmarks sweep)."""
    return f"{b // 2**20} MiB" if b >= 2**20 else f"{b // 2**10} KiB"


def fmt_seconds(s: float) -> str:
    """A duration in the unit that keeps it short: '755 µs', '1.8 ms', '2.50 s'."""
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def fmt_ratio(x: float | None, digits: int = 2) -> str:
    """'0.98x'; '' for None (a cell with nothing to compare against)."""
    return "" if x is None else f"{x:.{digits}f}x"


def fmt_span(values, fmt=lambda x: f"{x:.2f}") -> str:
    """'0.42x-0.88x': the smallest and the largest value, or one where both print the same."""
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}-{high}"


class Table:
    """A result table, given its rows once: str() (and f-strings) render it as markdown, padded so it
    also reads well on a terminal; write_csv writes the same cells. align: 'l'/'r' per column
    (default: the first column left, the others right)."""

    def __init__(self, headers: list[str], rows: list[list], align: str | None = None):
        self.headers = [str(h) for h in headers]
        self.rows = [[str(c) for c in row] for row in rows]
        self.align = align or "l" + "r" * (len(headers) - 1)

    def __str__(self) -> str:
        widths = [max([len(h), *(len(r[i]) for r in self.rows)]) for i, h in enumerate(self.headers)]

        def line(values):
            cells = (v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, self.align))
            return "| " + " | ".join(cells) + " |"

        # "-:" at the least: a markdown rule cell needs a dash (a 1-character column's rule is one wider)
        rules = ("-" * max(w - 1, 1) + ":" if a == "r" else "-" * w for w, a in zip(widths, self.align))
        rule = "| " + " | ".join(rules) + " |"
        return "\n".join([line(self.headers), rule, *(line(r) for r in self.rows)])

    def write_csv(self, path: Path) -> None:
        """The headers and rows as CSV; markdown bold (`**mean**`) is dropped, the text kept."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(self.headers)
            out.writerows([cell.replace("**", "") for cell in row] for row in self.rows)


def add_output_args(parser) -> None:
    parser.add_argument("--out", type=Path, help="also write the result to this markdown file (replacing its last)")
    parser.add_argument(
        "--docs",
        action="store_true",
        help=f"also write it to {DOCS.relative_to(ROOT)} (replaced) and the script's `Latest (` header line",
    )
    parser.add_argument("--csv", type=Path, help="also write the rows of the main table to this CSV file")


def stamp(started: datetime.datetime) -> str:
    """A section's time: '2026-11-23 13:21 UTC' (titles, headers and tests match on it)."""
    return started.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def publish(
    args,
    title: str,
    body: str,
    started: datetime.datetime,
    load_before: str,
    *,
    headline: str,
    table: Table | None = None,
) -> str:
    """Print `## title: date` with the machine, command and code version, then body (markdown);
    write it where `args` say (--out, --docs), replacing a section of the same title there; write
    `table` (the main one) to --csv. With --docs, `headline` (the result in a line: the numbers
    a reader looks for first) becomes the script's `Latest (` header line."""
    when = stamp(started)
    latest = latest_paragraph(when, machine_brief(), headline)
    section = (
        f"## {title}: {when}\n\n"
        f"- Command: `{command()}` (from the repository root)\n"
        f"- Machine: {machine()}\n"
        f"- Code: {code_version()}\n"
        f"- Load average (1 / 5 / 15 min): {load_before} before, {load()} after; other processes on the "
        f"machine skew timings\n\n"
        f"{body.strip()}\n"
    )
    print(f"\n{section}\n{latest}\n")
    for path in [p for p in (getattr(args, "out", None), DOCS if getattr(args, "docs", False) else None) if p]:
        replace_section(Path(path), title, section)
        print(f"written to {_shown(Path(path))}")
    if getattr(args, "csv", None) and table is not None:
        table.write_csv(args.csv)
        print(f"written to {_shown(Path(args.csv))}")
    script = Path(sys.argv[0]).resolve()
    if getattr(args, "docs", False) and script.parent == ROOT / "benchmarks" and not script.name.startswith("_"):
        script.write_text(with_latest(script.read_text(), latest))
        print(f"header updated: {_shown(script)}")
    return section


def _shown(path: Path) -> Path:
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _key(section: str) -> tuple[str, str]:
    """A result's identity: its title and its command (another workload or option is another result)."""
    title = re.match(rf"## (.*): {DATE}", section)
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


# A script's header quotes its latest result in one paragraph, rewritten by publish(--docs):
#   Latest (2026-11-23 13:21 UTC, AMD EPYC, 2 logical CPUs): <headline>; see docs/benchmarks.md.
LATEST = "Latest ("
_LATEST = re.compile(rf"Latest \(({DATE}), (.+?)\): (.*)", re.S)
_SCRIPT = re.compile(r"python benchmarks/([A-Za-z0-9]\w*)\.py\b")


def latest_paragraph(when: str, machine_line: str, headline: str, width: int = 100) -> str:
    text = f"{LATEST}{when}, {machine_line}): {headline.strip().rstrip('.')}; see docs/benchmarks.md."
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def read_latest(docstring: str) -> tuple[str, str, str] | None:
    """(date, machine, headline) of a header's `Latest (` paragraph, None without one."""
    paragraph = next((p for p in docstring.split("\n\n") if p.startswith(LATEST)), "")
    match = _LATEST.fullmatch(" ".join(paragraph.split()))  # unwrapped: the machine may span two lines
    return (match[1], match[2], match[3]) if match else None


def with_latest(source: str, paragraph: str) -> str:
    """A script's source with its module docstring's `Latest (` paragraph replaced by `paragraph`
    (inserted after the docstring's first paragraph where it has none)."""
    node = ast.parse(source).body[0]
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
        raise ValueError("the script has no header docstring")
    lines = source.splitlines(keepends=True)
    opening, closing = node.lineno - 1, node.end_lineno - 1
    inner = range(opening + 1, closing)  # whole lines of the docstring, quotes on neither
    new = [line + "\n" for line in paragraph.splitlines()]
    start = next((i for i in inner if lines[i].startswith(LATEST)), None)
    if start is None:
        blank = next((i for i in inner if not lines[i].strip()), None)
        if blank is None:
            raise ValueError("the header docstring needs a first paragraph and a blank line after it")
        return "".join([*lines[: blank + 1], *new, "\n", *lines[blank + 1 :]])
    end = start + 1
    while end < closing and lines[end].strip():
        end += 1
    return "".join([*lines[:start], *new, *lines[end:]])


def newest_by_script(text: str) -> dict[str, str]:
    """The newest section of each script in a results file (docs/benchmarks.md), keyed by the
    script's name from the section's command (`python benchmarks/<name>.py ...`)."""
    newest: dict[str, str] = {}
    for section in re.split(r"(?m)^(?=## )", text):
        script = _SCRIPT.match(_key(section)[1])
        if section_date(section) and script and section_date(section) > section_date(newest.get(script[1], "")):
            newest[script[1]] = section
    return newest


def section_date(section: str) -> str:
    """'2026-11-23 13:21 UTC' from a section's title line ('' when it has none); sorts as time does."""
    match = re.match(rf"## .*: ({DATE})\n", section)
    return match[1] if match else ""
