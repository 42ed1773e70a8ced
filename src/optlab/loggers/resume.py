"""A resumed run continues its logs where its checkpoint was taken.

The interrupted process went on logging after its last checkpoint (the rest of that epoch, a
test stage); the resumed run logs those steps again. `ResumedLogs`, which `optlab.run` adds to
every Trainer, tells each logger that can drop rows (`keep_rows_before(step)`: the CSV logger)
the first step the resumed run will log, so each step is in the file once.
"""

from lightning.pytorch import Callback

from optlab.loggers.steps import logged_step


class ResumedLogs(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.ckpt_path or not trainer.is_global_zero:
            return
        step = logged_step(trainer)  # the checkpoint's count of batches that stepped: the next row's step
        for logger in trainer.loggers:
            if hasattr(logger, "keep_rows_before"):
                logger.keep_rows_before(step)
