"""Runs train.py like `python train.py <args>` would, and records when each startup phase ends.

Used by startup.py, not run by hand: `python benchmarks/_startup_probe.py <train.py overrides>`
with $OPTLAB_BENCH_PROBE naming the JSON file to write. It first imports what train.py imports
at its top (timing each), then wraps optlab.cli.preflight and optlab.run's train, validate and
_instantiate_all to mark their ends, and runs train.py as __main__. The marks are written when
Trainer.fit is called; benchmarks._timers.FirstStepTimer (in the overrides) marks the rest.
A wrapped name that no longer exists is skipped: its time then shows in the next phase.
"""

import time

START = time.time()

import json  # noqa: E402
import os  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
marks: list[tuple[str, float, list[str]]] = []
_seen = {name.split(".")[0] for name in sys.modules}


def mark(name: str) -> None:
    """Record that the phase `name` ended now, with the top-level packages it imported."""
    now = time.time()
    new = sorted({m.split(".")[0] for m in sys.modules} - _seen)
    _seen.update(new)
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    marks.append((name, now, [m for m in new if not m.startswith("_") and m not in stdlib]))


def write() -> None:
    path = os.environ.get("OPTLAB_BENCH_PROBE")
    if path:
        Path(path).write_text(json.dumps({"start": START, "marks": marks}))


mark("probe's own imports (json, runpy)")
import torch  # noqa: E402,F401

mark("import torch")
import lightning  # noqa: E402,F401

mark("import lightning")
import hydra  # noqa: E402,F401
import omegaconf  # noqa: E402,F401

mark("import hydra, omegaconf")
import optlab.cli  # noqa: E402
import optlab.run  # noqa: E402

mark("import optlab.cli, optlab.run (train.py's imports)")


def wrap(module, attr: str, after: str, before: str | None = None, on_result=None) -> None:
    fn = getattr(module, attr, None)
    if fn is None:
        print(f"[probe] {module.__name__}.{attr} not found; its phase is merged into the next", file=sys.stderr)
        return

    def wrapper(*args, **kwargs):
        if before:
            mark(before)
        result = fn(*args, **kwargs)
        mark(after)
        if on_result:
            on_result(result)
        return result

    setattr(module, attr, wrapper)


def _wrap_fit(built) -> None:
    trainer = built[2]
    fit = trainer.fit

    def marked_fit(*args, **kwargs):
        mark("logger.log_hyperparams (W&B run start), watch_model")
        write()
        return fit(*args, **kwargs)

    trainer.fit = marked_fit


wrap(optlab.cli, "preflight", after="preflight: compose + validate every job", before="train.py until preflight")
wrap(optlab.run, "train", after="train() returned", before="Hydra main: compose again, run dir, logging, .hydra/")
wrap(optlab.run, "validate", after="train(): validate")
wrap(
    optlab.run,
    "_instantiate_all",
    after="train(): seed, instantiate data, model, callbacks, loggers, trainer",
    on_result=_wrap_fit,
)

os.chdir(ROOT)
sys.argv = [str(ROOT / "train.py"), *sys.argv[1:]]
sys.path[0] = str(ROOT)
runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
