"""Lightning's CSVLogger, made safe to reopen a metrics.csv that already has rows.

Lightning's writer deletes an existing metrics.csv when it opens the folder, and when it must
add columns it rewrites the file with only its own keys, which raises once a second writer (the
test stage of ddp_spawn, a resumed run) meets the rows of the first. This one keeps the rows and
takes the union of both headers.
"""

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's writer without the delete on open, and with a new header that is the union of the file's
    and its own."""

    def _check_log_dir_exists(self) -> None:
        pass  # keep what is there: rows are appended, never dropped

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            existing = next(csv.reader(f), [])
        self.metrics_keys = sorted(set(fieldnames) | set(existing))
        super()._rewrite_with_new_header(self.metrics_keys)


class AppendingCSVLogger(CSVLogger):
    """`logger=csv`: Lightning's CSVLogger writing through AppendingExperimentWriter."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
