"""Run ids and run directories, exposed to the configs as OmegaConf resolvers.

A run id is `YYYYMMDD-HHMMSS-<6 hex>`: sortable by start time and unique even for runs started in
the same second. Resuming from `<run>/checkpoints/x.ckpt` reuses `<run>` (one run, one folder) and
writes the resumed config to `.hydra/resume-<id>/`, leaving the original config untouched.
"""

import os
import secrets
import time
from pathlib import Path

from omegaconf import OmegaConf

RUN_ID = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"  # one per process


def run_id() -> str:
    return RUN_ID


def resumed_run_dir(ckpt_path: str | None) -> Path | None:
    """The run folder a checkpoint belongs to, if it sits in `<run>/checkpoints/`."""
    if not ckpt_path:
        return None
    ckpt = Path(str(ckpt_path)).expanduser().resolve()
    if ckpt.is_file() and ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent
    return None


def run_dir(base: str, ckpt_path: str | None = None) -> str:
    resumed = resumed_run_dir(ckpt_path)
    return str(resumed) if resumed else f"{base}/{RUN_ID}"


def config_subdir(ckpt_path: str | None = None) -> str:
    return f".hydra/resume-{RUN_ID}" if resumed_run_dir(ckpt_path) else ".hydra"


def register_resolvers() -> None:
    # optlab_cwd, not ${hydra:runtime.cwd}: Hydra resolves hydra.sweep.dir before it sets HydraConfig.
    for name, fn in {"optlab_cwd": os.getcwd, "optlab_run_id": run_id, "optlab_run_dir": run_dir, "optlab_config_subdir": config_subdir}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
