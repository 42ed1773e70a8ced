"""Third-party lines that say nothing about the run, dropped by how their text starts (never by
level or logger, so anything new still shows).

- Lightning: its cloud adverts ("Tip: ..."), the GPU and TPU lines on machines without one, the
  note that it loads the train loader to count steps, that it adds no summary of its own, that
  fit stopped at max_epochs (the last epoch line says "Epoch 11/11"; other stops still show), the
  restore lines of the test pass (the run's summary names the checkpoint it tested), and the srun
  hint on machines where SLURM is installed (optlab launches on SLURM itself: docs/cluster.md).
- torch 2.14 warns about lightning<2.7's use of pytree LeafSpec (a FutureWarning per run).
"""

from __future__ import annotations

import logging
import warnings

DROPPED_PREFIXES = (
    "💡 Tip",
    "GPU available: False, used: False",
    "TPU available: False, using: 0 TPU cores",
    "`Trainer.fit` stopped: `max_epochs=",
    "Loading `train_dataloader` to estimate number of stepping batches.",
    "Restoring states from the checkpoint path at ",
    "Loaded model weights from the checkpoint at ",
    "Trainer already configured with model summary callbacks",  # optlab's LayerSummary, on purpose
)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class DropKnownNoise(logging.Filter):
    """The filter `quiet_known_noise` puts on Lightning's rank-zero loggers: drops a record whose message
    starts with one of DROPPED_PREFIXES."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(DROPPED_PREFIXES)


def quiet_known_noise() -> None:
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropKnownNoise) for f in logger.filters):
            logger.addFilter(DropKnownNoise())
