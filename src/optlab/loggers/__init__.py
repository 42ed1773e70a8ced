"""Loggers the template adds on top of Lightning's (the `logger` config group)."""

from optlab.loggers.wandb import OptlabWandbLogger, wandb_logger

__all__ = ["OptlabWandbLogger", "wandb_logger"]
