"""Which optimizer (schedule, strategy, batch size...) trains this network better, by how much,
and how sure: every candidate tuned with the same budget, its best configuration re-run with fresh
seeds, then intervals, tests at a stated level, time-to-target and plots. Configured like training
(conf/compare.yaml; named comparisons in conf/compare/, tasks in conf/task/).

To run:
    python compare.py candidates=[sgd,adamw,lion,muon]               # on digits, writes a report
    python compare.py compare=optimizers                             # a shipped study
    python compare.py 'candidates=[{optimizer: adamw}, {optimizer: adamw, scheduler: none}]'
    python compare.py report=only name=optimizers                    # redraw from storage
Run the same command again to resume (nothing finished re-runs). See docs/compare.md.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optlab.cli import exit_on_config_error, fail, preflight

TRAINING: list[str] = []  # the command line's training overrides: applied per task, not to compare.yaml


@hydra.main(config_path="conf", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from optlab.compare.protocol import run

    with exit_on_config_error():
        run(cfg, TRAINING)


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        fail("compare.py runs its own protocol and takes no -m; list what to compare in candidates=[...]")
    from optlab.compare.config import split_command_line

    conf = Path(__file__).resolve().parent / "conf"
    args, TRAINING[:] = split_command_line(args, conf)
    sys.argv[1:] = args
    if not any(a.split("=", 1)[0] in ("--config-name", "-cn") for a in args):
        args = ["--config-name", "compare", *args]
    preflight(args, conf)
    main()
