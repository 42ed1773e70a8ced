"""Sweeps: the Optuna study behind sweep.py, and Hydra multirun summaries.

- space.py: `sweep.space` YAML -> trial.suggest_* -> Hydra overrides (conditional entries too)
- study.py: storages, samplers/pruners, heartbeats, the trial cap shared by all workers
- objective.py: one trial in its own process (pool / subprocess / inline) and its outcome
- pruning.py: the Lightning callback that reports, prunes and stops NaN/inf trials
- report.py: top trials, re-runs with fresh seeds (mean +- std), HTML/PNG plots
- driver.py: what `python sweep.py` does; multirun.py: `train.py -m` summary tables
Imported lazily: train.py loads this package for MultirunSummary and must not pay for optuna.
"""

from optlab.sweep.multirun import MultirunSummary

__all__ = ["MultirunSummary"]
