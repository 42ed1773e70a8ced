"""Loggers the template adds on top of Lightning's (the `logger` config group)."""

from optlab.loggers.csv import AppendingCSVLogger
from optlab.loggers.wandb import OptlabWandbLogger, wandb_logger

__all__ = ["AppendingCSVLogger", "OptlabWandbLogger", "wandb_logger"]
