"""Sweeps: Hydra multirun summaries (and the Optuna driver behind sweep.py)."""

from optlab.sweep.multirun import MultirunSummary

__all__ = ["MultirunSummary"]
