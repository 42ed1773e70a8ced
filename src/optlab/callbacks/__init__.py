"""Callbacks the template adds to Lightning's (the `callbacks` config group)."""

from optlab.callbacks.grad_monitor import GradientMonitor
from optlab.callbacks.progress import EpochLines, RichBar, progress_bar

__all__ = ["EpochLines", "GradientMonitor", "RichBar", "progress_bar"]
