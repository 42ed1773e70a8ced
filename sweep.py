"""Hyperparameter search with Optuna: a study that resumes, prunes, survives failed trials and
scales out over workers sharing its storage. Configured like training (conf/sweep.yaml).

To run:
    python sweep.py                                    # default space (lr, batch size, weight decay), 20 trials
    python sweep.py sweep=lr_wd n_trials=30 optimizer=lion
    python sweep.py sweep/sampler=random sweep/pruner=hyperband
    python sweep.py report=only                        # top trials, re-runs with fresh seeds, plots
Run the same command again to resume; run it on N machines (shared storage) to scale out.
See docs/sweeps.md.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from optlab.cli import exit_on_config_error, fail, preflight


@hydra.main(config_path="conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from optlab.sweep.driver import run

    with exit_on_config_error():
        return run(cfg)


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        fail("sweep.py runs its own study and takes no -m; a grid is `sweep/sampler=grid` (or use train.py -m)")
    if not any(a.split("=", 1)[0] in ("--config-name", "-cn") for a in args):
        args = ["--config-name", "sweep", *args]
    preflight(args, Path(__file__).resolve().parent / "conf")
    main()
