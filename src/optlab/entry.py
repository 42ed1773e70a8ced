"""The commands: `python train.py` / `optlab-train`, `python sweep.py` / `optlab-sweep`,
`python compare.py` / `optlab-compare`. The scripts at the repository root and the entry points a
pip install creates run these same functions, on the configs of `optlab.run.CONFIG_DIR` (the
repository's conf/, or the copy inside an installed package); `--config-dir` / a search path
layers a fork's own configs on top.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from optlab.cli import exit_on_config_error, fail, preflight
from optlab.run import CONFIG_DIR

_TRAINING: list[str] = []  # compare: the command line's training overrides (applied per task)


def _hydra_main(task, config_name: str) -> None:
    import hydra

    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task)()


def _with_config_name(args: list[str], name: str) -> list[str]:
    return args if any(a.split("=", 1)[0] in ("--config-name", "-cn") for a in args) else ["--config-name", name, *args]


def _train_task(cfg: DictConfig) -> float | None:
    from optlab.run import optimized_metric, run_job

    with exit_on_config_error():
        return optimized_metric(cfg, run_job(cfg))


def train() -> None:
    """Train a model as configured (one run, or one job per value with -m)."""
    from optlab.rundirs import pin_sweep_id

    preflight(sys.argv[1:], CONFIG_DIR)
    if "-m" in sys.argv or "--multirun" in sys.argv:
        pin_sweep_id()
    _hydra_main(_train_task, "train")


def _sweep_task(cfg: DictConfig) -> float | None:
    from optlab.sweep.driver import run

    with exit_on_config_error():
        return run(cfg)


def sweep() -> None:
    """An Optuna study over training configs (resumable, pruning, many workers on one storage)."""
    args = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        fail("sweep.py runs its own study and takes no -m; a grid is `sweep/sampler=grid` (or use train.py -m)")
    preflight(_with_config_name(args, "sweep"), CONFIG_DIR)
    _hydra_main(_sweep_task, "sweep")


def _compare_task(cfg: DictConfig) -> None:
    from optlab.compare.protocol import run

    with exit_on_config_error():
        run(cfg, _TRAINING)


def compare() -> None:
    """The comparison protocol: equal tuning, fresh-seed re-runs, statistics, a report."""
    from optlab.compare.config import split_command_line

    args = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        fail("compare.py runs its own protocol and takes no -m; list what to compare in candidates=[...]")
    args, _TRAINING[:] = split_command_line(args, CONFIG_DIR)
    sys.argv[1:] = args
    preflight(_with_config_name(args, "compare"), CONFIG_DIR)
    _hydra_main(_compare_task, "compare")
