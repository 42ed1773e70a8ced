"""Several compare.py workers on one comparison folder (a SLURM array, two terminals, a shared
filesystem): the tuning is shared through the Optuna storage (sweep.py's machinery); the re-runs
through locks here, and every file more than one worker writes is replaced whole.

A worker runs a re-run only while it holds that seed's lock: an fcntl record lock on
`seed-N.lock` beside the run folder. The kernel (on NFS, its lock manager) drops the lock with
its holder however it ends, SIGKILL included, so a dead worker's seed is free on the next pass;
no heartbeat, no stale guess. Lock files stay: deleting one could let two workers hold "the"
lock on two different files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"


@contextlib.contextmanager
def holding(run_dir: Path) -> Iterator[bool]:
    """True inside while this process holds `run_dir`'s lock; False when another one does."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir.with_name(run_dir.name + LOCK_SUFFIX), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EAGAIN / EACCES: held by another process
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def replace(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` then rename over `path`: a reader (another worker, report.html inlining a
    picture) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    return replace(path, lambda tmp: tmp.write_text(text))
