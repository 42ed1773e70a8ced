"""Load files a user names without running code from them.

A checkpoint is a pickle, and unpickling can call any function the file names (`os.system`, ...).
So every file that comes from the command line or a config (`ckpt_path=`, `model.net.weights=`,
torchvision's weight cache, CIFAR-10 batches) is read by one of two loaders:
- `torch_file`: `torch.load(weights_only=True)`. Tensors, containers and plain Python values only;
  a file that needs any other class is refused in one line (`UnsafeFileError`, exit 2), never
  retried with `weights_only=False`. Checkpoints of this template need nothing allow-listed
  (tests/test_safe_load.py loads one of every optimizer, schedule and strategy). A fork that saves
  a class of its own in a checkpoint allow-lists exactly that class with
  `torch.serialization.add_safe_globals([MyClass])`.
- `restricted_pickle`: plain `pickle` (CIFAR-10's python batches) with an explicit allow-list of
  the globals the format needs.
See docs/reliability.md for the review of every other place that could run code from input.
"""

import pickle
import re
from pathlib import Path

from optlab.validate import ConfigError


class UnsafeFileError(ConfigError):
    """A file that asks to run code when loaded: refused, nothing in it was executed."""


def _refusal(key: str, path, asked: str, value=None) -> UnsafeFileError:
    named = f"{key}={path}" if value is None else f"{key}={value} ({path})"
    return UnsafeFileError(
        f"{named} was not loaded: unpickling it would call {asked}, which may run code; "
        "use a checkpoint of this template or a plain state_dict from a source you trust"
    )


def weights_only_refusal(e: BaseException, key: str, path, value=None) -> UnsafeFileError | None:
    """The one-line refusal when torch's weights_only loader stopped `e` at a global it does not
    allow (a function or class the file asks to import); None for any other error (a damaged file)."""
    asked = re.search(r"GLOBAL ([\w.]+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
    return _refusal(key, path, asked.group(1), value) if asked else None


def torch_file(path: str | Path, key: str, mmap: bool = False, value=None):
    """`torch.load(path, weights_only=True)` on the CPU. A file that names a global torch does not
    allow is an `UnsafeFileError` naming `key` (and `value`, when the path came from another name).

    Other failures, a cut-off file or one torch's loader cannot parse, propagate as torch raises
    them (never retried unsafely), for the caller to word: only it knows what the file should be."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        refusal = weights_only_refusal(e, key, path, value)
        if refusal is None:
            raise
        raise refusal from None


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: dict[tuple[str, str], object], key: str, path, **kwargs):
        super().__init__(file, **kwargs)
        self.allowed, self.key, self.path = allowed, key, path

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise _refusal(self.key, self.path, f"{module}.{name}") from None


def restricted_pickle(path: str | Path, allowed: dict[tuple[str, str], object], key: str, **kwargs):
    """Unpickle `path`, resolving only the (module, name) globals in `allowed` (to those objects)."""
    with open(path, "rb") as f:
        return _AllowListUnpickler(f, allowed, key, path, **kwargs).load()
