"""When Lightning writes step metrics to the loggers, so per-step work can be done only then.

Lightning flushes `on_step` metrics every `trainer.log_every_n_steps` batches; anything computed
and `self.log`-ged on the other steps is thrown away, and on a small network that wasted work
costs as much as the step itself (docs/benchmarks.md). Both helpers read Lightning internals
(pinned lightning<2.7) in one place, so an upgrade has one spot to fix.
"""

from lightning.pytorch import Trainer


def logs_this_step(trainer: Trainer) -> bool:
    """True inside a training batch whose step metrics Lightning will send to the loggers."""
    return trainer.fast_dev_run or trainer._logger_connector.should_update_logs


def logged_step(trainer: Trainer) -> int:
    """The `step` Lightning passes to the loggers with the current training batch's metrics: the
    number of batches that stepped before this one (0 for the first)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def scalar_metrics(metrics) -> dict[str, float]:
    """The one-number entries of `trainer.callback_metrics` (or any name -> tensor/number map), as floats."""
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
