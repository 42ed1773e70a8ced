"""Sweeps: the Optuna study behind sweep.py (the `train.py -m` summary is optlab.multirun).

- space.py: `sweep.space` YAML -> trial.suggest_* -> Hydra overrides (conditional entries too)
- study.py: storages, samplers/pruners, heartbeats, the trial cap shared by all workers
- objective.py: one trial in its own process (pool / subprocess / inline) and its outcome
- pruning.py: the Lightning callback that reports, prunes and stops NaN/inf trials
- report.py: top trials, re-runs with fresh seeds (mean +- std), HTML/PNG plots
- driver.py: what `python sweep.py` does
"""
