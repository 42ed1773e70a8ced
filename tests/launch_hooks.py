"""A `Job.configure` hook for tests/test_launch.py: importable in the processes a job runs in
(the tests put this folder on PYTHONPATH), it records which process ran the job, then ends it."""

import os
import signal
from pathlib import Path

from optlab.validate import ConfigError


def record_then(cfg, marker: str, then: str) -> None:
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    if then == "config":
        raise ConfigError("stopped by the test hook")
    if then == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if then == "sleep":
        import time

        time.sleep(600)
    Path(marker).with_suffix(".trained").touch()  # then == "train": go on and train
