"""Callbacks the template adds to Lightning's (the `callbacks` config group)."""

from optlab.callbacks.curves import Curves
from optlab.callbacks.grad_monitor import GradientMonitor
from optlab.callbacks.progress import EpochLines, RichBar, progress_bar
from optlab.callbacks.schedulefree import ScheduleFreeModes
from optlab.callbacks.summary import LayerSummary

__all__ = ["Curves", "EpochLines", "GradientMonitor", "LayerSummary", "RichBar", "ScheduleFreeModes", "progress_bar"]
