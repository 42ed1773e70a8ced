"""Lightning's CSVLogger, made safe to reopen a metrics.csv that already has rows: one file per run.

Lightning's writer deletes an existing metrics.csv when it opens the folder, and when it must
add columns it rewrites the file with only its own keys, which raises once a second writer (the
test stage of ddp_spawn, a resumed run) meets the rows of the first. This one keeps the rows and
takes the union of both headers. Its folder is named after the run folder (`csv/<run>/metrics.csv`),
so a resumed run continues the same file: rows the interrupted process logged after the checkpoint
(the partial epoch, which the resumed run logs again) are dropped first (`keep_rows_before`, called
by `optlab.loggers.resume.ResumedLogs`), so no step is there twice and none is missing.
"""

import csv
import os
from pathlib import Path

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

    def keep_rows_before(self, step: int) -> int:
        """Drop the file's rows logged at `step` or later (atomically: a temp file renamed over it);
        returns how many were dropped."""
        self.save()
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return 0
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if not r.get("step") or float(r["step"]) < step]
        if len(kept) < len(rows):
            tmp = f"{path}.tmp"
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header)
                writer.writeheader()
                writer.writerows(kept)
            os.replace(tmp, path)
        return len(rows) - len(kept)


class AppendingCSVLogger(CSVLogger):
    """`logger=csv`: Lightning's CSVLogger writing through AppendingExperimentWriter; `version` null (the
    default) is the run folder's name, so a resumed run writes on in the same file."""

    def __init__(self, save_dir, name: str | None = "lightning_logs", version: int | str | None = None, **kwargs):
        super().__init__(save_dir, name=name, version=Path(save_dir).name if version is None else version, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    def keep_rows_before(self, step: int) -> int:
        return self.experiment.keep_rows_before(step) if self.experiment is not None else 0
