"""Run a shipped comparison at its full budget (or take the one already run) and publish its report
under docs/studies/: `<name>.md` (the report, with the date, machine, commit and command on top)
and `<name>/*.png`.

To run:
    python scripts/publish_study.py optimizers            # runs `python compare.py compare=optimizers`
    python scripts/publish_study.py optimizers --no-run   # publish logs/compare/optimizers/ as it is
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    import os

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    """Run the comparison (unless --no-run), then copy its report and PNGs from logs/compare/<name>/ under a
    header line saying when, on what machine and at which commit its runs were made; a resumed run says
    what it kept, and a --no-run redraw keeps the published run line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a comparison of conf/compare/")
    parser.add_argument("--no-run", action="store_true", help="publish the existing logs/compare/<name>/")
    parser.add_argument("overrides", nargs="*", help="extra compare.py overrides (recorded in the header)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from optlab.compare.protocol import cost_line as describe

    command = [sys.executable, "compare.py", f"compare={args.name}", *args.overrides]
    start = time.perf_counter()
    source = ROOT / "logs" / "compare" / args.name
    resumed = (source / "protocol.json").is_file()
    if not args.no_run:
        subprocess.run(command, cwd=ROOT, check=True)
    report = (source / "report.md").read_text()
    out = ROOT / "docs" / "studies"
    (out / args.name).mkdir(parents=True, exist_ok=True)
    for png in source.glob("*.png"):
        shutil.copy2(png, out / args.name / png.name)
    report = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", rf"![\1]({args.name}/\2)", report)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    shown = " ".join(["python", *command[1:]])
    cost = json.loads((source / "cost.json").read_text()) if (source / "cost.json").is_file() else None
    cost_line = (
        ""
        if cost is None
        else f"Protocol cost of the last invocation that ran runs, report included: {describe(cost)}.\n"
    )
    run_line = f"Run {time.strftime('%Y-%m-%d')} at commit {commit} on {machine()}, {time.perf_counter() - start:.0f} s in all."
    published = out / f"{args.name}.md"
    old = re.search(r"^(Run|Resumed) .* at commit .*$", published.read_text(), re.M) if published.is_file() else None
    earlier = old.group(0).split(" Report redrawn")[0] if old else "Run: see logs/compare/"
    if args.no_run:  # the runs are the published ones: keep their line, say when the report was redrawn
        run_line = f"{earlier} Report redrawn at commit {commit}."
    elif resumed:  # e.g. more seeds (eval.seeds grew): the runs already there were kept
        run_line = (
            f"Resumed {time.strftime('%Y-%m-%d')} at commit {commit} on {machine()}, "
            f"{time.perf_counter() - start:.0f} s, keeping the runs of logs/compare/{args.name}/ "
            f'(before: "{earlier}").'
        )
    header = (
        "<!-- written by scripts/publish_study.py; do not edit by hand -->\n"
        f"{run_line}\nCommand: `{shown}` (then `python scripts/publish_study.py {args.name} --no-run`).\n"
        + cost_line
        + "\n"
    )
    title, _, body = report.partition("\n")
    published.write_text(f"{title}\n\n{header}{body.lstrip()}")
    print(f"published {out / (args.name + '.md')}")


if __name__ == "__main__":
    main()
