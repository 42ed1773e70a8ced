"""Callbacks the template adds to Lightning's (the `callbacks` config group)."""

from optlab.callbacks.grad_monitor import GradientMonitor

__all__ = ["GradientMonitor"]
