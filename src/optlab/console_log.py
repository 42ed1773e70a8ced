"""The run's log file (`<run_dir>/train.log`) holds what its console showed.

Hydra's own file handler sees only Python logging records, and Lightning's, W&B's and optlab's
lines mostly do not go through them, so the file stayed empty. Here stdout and stderr are teed
into the file for the length of a run, colors stripped. A live display (Rich's progress bar)
redraws in place: its frames go to the console only, and the bar writes a plain line per epoch
into the file instead (`file_line`). Logging records reach the file through a handler (the console
handlers write to the streams they were made with, not the tee), and warnings shown while a live
display runs directly (on the console they are drawn inside its frames).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
CURSOR_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-ln-~]|\r")  # any CSI but colors (…m), or a carriage return
HYDRA_FILE_HANDLER = "file"  # hydra/job_logging's handler writing <job>.log

_active: _LogFile | None = None


class _LogFile:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed when the run ends
        self.live = False  # a live display is drawing: the console's bytes are frames

    def console(self, text: str) -> None:
        if not self.live and not CURSOR_CONTROL.search(text):
            self.file.write(ANSI.sub("", text))

    def line(self, text: str) -> None:
        self.file.write(ANSI.sub("", text).rstrip("\n") + "\n")
        self.file.flush()


class _Tee:
    """A console stream that also feeds the log file; Rich still sees the terminal it wraps."""

    def __init__(self, stream, log: _LogFile):
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._log.console(text)
        return written

    def flush(self) -> None:
        self._stream.flush()
        self._log.file.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the terminal's
        return getattr(self._stream, name)


class _Records(logging.Handler):
    """Logging records to the file: the console handlers (Lightning's, Hydra's) hold the streams
    of their creation, not the tee."""

    def __init__(self):
        super().__init__()
        self._last = None

    def emit(self, record: logging.LogRecord) -> None:
        if _active is not None and record is not self._last:  # once, when it propagates to several
            self._last = record
            _active.line(self.format(record))


@contextlib.contextmanager
def teed(default: Path) -> Iterator[None]:
    """stdout and stderr also into Hydra's job log (`default` when Hydra set none) for the block;
    a nested call keeps the outer file."""
    global _active
    if _active is not None:
        yield
        return
    root = logging.getLogger()
    hydra_file = [h for h in root.handlers if getattr(h, "name", None) == HYDRA_FILE_HANDLER]
    log = _LogFile(Path(getattr(hydra_file[0], "baseFilename", default)) if hydra_file else default)
    for handler in hydra_file:  # the tee writes what it would (it prints to the console too)
        root.removeHandler(handler)
    records = _Records()
    loggers = [root, logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")]
    for logger in loggers:
        logger.addHandler(records)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    _active = log
    show_warning = warnings.showwarning
    warnings.showwarning = _showing_while_live(show_warning)
    try:
        yield
    finally:
        warnings.showwarning = show_warning
        _active = None
        sys.stdout, sys.stderr = saved
        for logger in loggers:
            logger.removeHandler(records)
        for handler in hydra_file:
            root.addHandler(handler)
        log.file.close()


def _showing_while_live(show):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if _active is not None and _active.live:
            _active.line(warnings.formatwarning(message, category, filename, lineno, line))
        show(message, category, filename, lineno, file, line)

    return showwarning


def set_live(live: bool) -> None:
    """A live display starts (True) or ends (False) drawing on the console."""
    if _active is not None:
        _active.live = live


def file_line(text: str) -> None:
    """A line for the log file only (what a live display showed, in words)."""
    if _active is not None:
        _active.line(text)
