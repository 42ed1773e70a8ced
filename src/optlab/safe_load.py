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
A torch file is also checked for damage before its contents are used (`DamagedFileError`, exit 2):
every member of its zip archive against its CRC (`zipfile.testzip`: random bytes written into a
tensor's data pass torch's loader, which reads no CRC), then the weights and optimizer state for
nan/inf. A file already verified unchanged (same size and mtime) is not read again in this process.
See docs/reliability.md for the review of every other place that could run code from input.
"""

import os
import pickle
import re
import zipfile
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


class DamagedFileError(ConfigError):
    """A torch file whose bytes are not what was saved (a CRC mismatch, a cut-off archive) or whose
    weights hold nan/inf: refused before anything trains on it."""


def first_bad_member(path: str | Path) -> str | None:
    """The first member of a zip archive whose bytes fail their CRC (or that cannot be read), else None.
    Reads the whole file once (milliseconds for a small checkpoint, ~0.3 s per 100 MB)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        return f"the archive itself ({type(e).__name__})"


def _tensors(node, name: str):
    import torch

    if isinstance(node, torch.Tensor):
        yield name, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _tensors(value, f"{name}.{key}" if name else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _tensors(value, f"{name}[{i}]")


def first_nonfinite(blob) -> str | None:
    """Where the first nan/inf is in the weights and optimizer state of a loaded torch file, else None.
    A Lightning checkpoint: its `state_dict` and `optimizer_states` (callback states may hold inf by
    design, e.g. EarlyStopping's starting best score); anything else (a state_dict): every tensor."""
    import torch

    if isinstance(blob, dict) and "state_dict" in blob:
        parts = {"state_dict": blob["state_dict"], "optimizer_states": blob.get("optimizer_states")}
    else:
        parts = {"": blob}
    for part, node in parts.items():
        for name, tensor in _tensors(node, part):
            if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
                return f"{'nan' if bool(torch.isnan(tensor).any()) else 'inf'} in {name}"
    return None


_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) of files found whole in this process


def _identity(path: str | Path) -> tuple[str, int, int]:
    stat = os.stat(path)
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def archive_damage(path: str | Path) -> str | None:
    """Why the bytes of the torch file at `path` are not those saved, or None (also for a file already
    found whole, unchanged, in this process; and for a legacy non-zip file, which has no CRCs)."""
    if _identity(path) in _verified or not zipfile.is_zipfile(path):
        return None
    bad = first_bad_member(path)
    if bad is None:
        return None
    return f"{bad} is unreadable" if bad.startswith("the archive") else f"the CRC check fails for {bad}"


def content_damage(path: str | Path, blob) -> str | None:
    """Why the loaded `blob` of `path` is unusable (nan/inf weights), or None; a whole file is remembered."""
    identity = _identity(path)
    if identity in _verified:
        return None
    bad = first_nonfinite(blob)
    if bad is not None:
        return f"non-finite values: {bad}"
    _verified.add(identity)
    return None


def weights_only_refusal(e: BaseException, key: str, path, value=None) -> UnsafeFileError | None:
    """The one-line refusal when torch's weights_only loader stopped `e` at a global it does not
    allow (a function or class the file asks to import); None for any other error (a damaged file)."""
    asked = re.search(r"GLOBAL ([\w.]+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
    return _refusal(key, path, asked.group(1), value) if asked else None


def torch_file(path: str | Path, key: str, mmap: bool = False, value=None, verify: bool = True):
    """`torch.load(path, weights_only=True)` on the CPU. A file that names a global torch does not
    allow is an `UnsafeFileError` naming `key` (and `value`, when the path came from another name).
    With `verify`, a file that fails its CRCs or holds nan/inf weights is a `DamagedFileError`
    (`archive_damage`, `content_damage`), checked before it is unpickled and after.

    Other failures, a cut-off file or one torch's loader cannot parse, propagate as torch raises
    them (never retried unsafely), for the caller to word: only it knows what the file should be."""
    import torch

    named = f"{key}={path}" if value is None else f"{key}={value} ({path})"
    if verify and (why := archive_damage(path)) is not None:
        raise DamagedFileError(f"{named} is damaged ({why}) and was not loaded")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        refusal = weights_only_refusal(e, key, path, value)
        if refusal is None:
            raise
        raise refusal from None
    if verify and (why := content_damage(path, blob)) is not None:
        raise DamagedFileError(f"{named} is damaged ({why}) and was not loaded")
    return blob


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
