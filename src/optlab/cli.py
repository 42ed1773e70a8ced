"""Command-line front: every job of a command is composed and validated before Hydra starts one.

Hydra reports a bad override in a multi-line block, and only when it reaches the job; a sweep
would fail at job 20 after 19 trained. `preflight` composes all jobs first (a `-m` grid is
expanded like Hydra's basic sweeper does) and stops on the first problem with one line, exit 2.
"""

import contextlib
import sys
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

from optlab.validate import ConfigError

SKIP_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--shell-completion",
    "-sc",
    "--resolve",
    "--package",
    "-p",
    "--version",
}
VALUE_FLAGS = {
    "--config-name": "name",
    "-cn": "name",
    "--config-dir": "dir",
    "-cd": "dir",
    "--config-path": "path",
    "-cp": "path",
    "--experimental-rerun": None,
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


@contextlib.contextmanager
def exit_on_config_error():
    try:
        yield
    except ConfigError as e:
        fail(str(e))


def _split_argv(argv: list[str]):
    options, overrides, multirun, i = {}, [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in VALUE_FLAGS:
            options[VALUE_FLAGS[arg]] = argv[i + 1] if i + 1 < len(argv) else None
            i += 1
        elif "=" in arg and arg.split("=", 1)[0] in VALUE_FLAGS:
            key, value = arg.split("=", 1)
            options[VALUE_FLAGS[key]] = value
        else:
            overrides.append(arg)
        i += 1
    return options, overrides, multirun


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return BasicSweeper.split_arguments(parsed, None)[0]


def _explain(e: Exception, job: list[str]) -> str:
    if isinstance(e, MissingConfigException) and e.options is not None:
        group = Path(e.missing_cfg_file or "").parent.as_posix() or "config"
        asked = next((o.split("=", 1)[1] for o in job if o.split("=", 1)[0].lstrip("+~") == group), e.missing_cfg_file)
        return f"{group}={asked} is not an option; choose one of: {', '.join(sorted(e.options))}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if lines and lines[0].startswith("Error merging override") and e.__cause__ is not None:
        override = lines[0].removeprefix("Error merging override ").strip()
        reason = str(e.__cause__).strip().splitlines()[0]
        return f"{override} is invalid: {reason}"
    if lines and lines[0].startswith("Could not override") or any("not in struct" in line for line in lines):
        key = lines[0].split("'")[1] if "'" in lines[0] else "?"
        return f"unknown key '{key}'; check the spelling (python train.py --cfg job lists all keys) or add it with +{key}=..."
    return " ".join(lines[:2])


def preflight(argv: list[str], config_dir: Path) -> None:
    """Compose and validate each job of a command line (as Hydra will get it) before Hydra starts any;
    exit 2 with one line at the first problem. Also gives Lightning srun's task layout
    (`adopt_srun_layout`), and leaves Hydra reset for the real `@hydra.main`."""
    if any(a.split("=", 1)[0] in SKIP_FLAGS for a in argv):
        return  # Hydra's own informational modes
    from optlab.launch import LaunchError, adopt_srun_layout

    try:
        adopt_srun_layout()
    except LaunchError as e:
        fail(str(e))
    options, overrides, multirun = _split_argv(argv)
    if options.get("path"):
        config_dir = (config_dir.parent / options["path"]).resolve()
    if options.get("dir"):
        overrides = overrides + [f"hydra.searchpath=[file://{Path(options['dir']).resolve()}]"]
    from optlab.run import compose_config, hydra_node, reset_hydra
    from optlab.validate import check_launcher, validate

    try:
        jobs = _jobs(overrides, multirun)
    except OverrideParseException as e:
        fail(_explain(e, overrides))
    for number, job in enumerate(jobs):
        try:
            cfg = compose_config(
                job, run_dir="<preflight>", config_dir=config_dir, config_name=options.get("name") or "train"
            )
            validate(cfg)
            if multirun and number == 0:  # the launcher is one for all jobs
                check_launcher(hydra_node())
        except (ConfigCompositionException, OverrideParseException) as e:
            fail(_explain(e, job))
        except ConfigError as e:
            fail(str(e))
    reset_hydra()
