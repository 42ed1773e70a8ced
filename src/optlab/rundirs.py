"""Run ids and run directories, exposed to the configs as OmegaConf resolvers.

One run = one id = one directory (and one W&B run, whose id is the folder name), whoever starts
its ranks. A run id is `YYYYMMDD-HHMMSS-<6 hex>`: sortable by start time and unique even for
runs started in the same second. Where it comes from:
- `OPTLAB_RUN_ID` in the environment: that id (a launcher of your own can set it).
- torchrun, one node or many: the ranks agree through torchrun's own TCP store (the first rank to
  ask proposes its fresh id, every rank reads the same one back).
- srun with several tasks in a step: `<job start>-slurm<job id>.<step id>`, the same in every task
  (the start time from SLURM_JOB_START_TIME or scontrol).
- Lightning's own launchers (ddp, ddp_spawn, fsdp): the child ranks get the parent's run dir on
  their command line, so they never ask.
- anything else (`python train.py`, every `compose_config` call in a notebook or a sweep worker):
  a fresh id, made again by each `new_run()`.
Resuming from `<run>/checkpoints/x.ckpt` reuses `<run>` and writes the resumed config to
`.hydra/resume-<id>/`, leaving the original config untouched. Only rank 0 writes `.hydra/`; the
other ranks log to `<job>-rank<k>.log` in the same folder.
"""

import os
import re
import secrets
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from omegaconf import OmegaConf

from optlab.launch import external_layout, global_rank

_current: str | None = None


def _fresh_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _torchrun_id() -> str:
    """One id for every rank torchrun started: rank order does not matter, first proposal wins."""
    from torch.distributed import TCPStore

    store = TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(seconds=120)
    )
    key = f"optlab/run_id/{os.environ['TORCHELASTIC_RUN_ID']}"
    return store.compare_set(key, "", _fresh_id()).decode()


def _slurm_start() -> str | None:
    """The job's start time as YYYYMMDD-HHMMSS, the same in every task (None if SLURM cannot say)."""
    start = os.environ.get("SLURM_JOB_START_TIME")  # Slurm >= 23.02 exports it; older ones: ask scontrol
    if start:
        return time.strftime("%Y%m%d-%H%M%S", time.localtime(int(start)))
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", os.environ["SLURM_JOB_ID"]], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"\bStartTime=(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", out)
    return "{}{}{}-{}{}{}".format(*found.groups()) if found else None


def _slurm_id() -> str:
    stamp = _slurm_start()
    job = f"slurm{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    return f"{stamp}-{job}" if stamp else job


def _launched_id() -> str | None:
    """The id the launcher's environment implies for all ranks of this run, if it started several."""
    if os.environ.get("OPTLAB_RUN_ID"):
        return os.environ["OPTLAB_RUN_ID"]
    layout = external_layout()
    if layout is None:
        return None
    return _torchrun_id() if layout.launcher == "torchrun" else _slurm_id()


def new_run() -> str:
    """Start a new run id for the next config composed in this process."""
    global _current
    _current = _launched_id() or _fresh_id()
    return _current


def run_id() -> str:
    return _current or new_run()


def pin_sweep_id() -> None:
    """`-m`: every job writes into one multirun folder, in whatever process a launcher runs it
    (a joblib worker, a SLURM job), since they inherit this environment variable."""
    os.environ.setdefault("OPTLAB_SWEEP_ID", run_id())


def sweep_id() -> str:
    return os.environ.get("OPTLAB_SWEEP_ID") or run_id()


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
    return str(resumed) if resumed else f"{base}/{run_id()}"


def config_subdir(ckpt_path: str | None = None) -> str | None:
    if global_rank() != 0:  # rank 0 writes the config; the others would race it for the same files
        return None
    return f".hydra/resume-{run_id()}" if resumed_run_dir(ckpt_path) else ".hydra"


def log_suffix() -> str:
    rank = global_rank()
    return f"-rank{rank}" if rank else ""


def register_resolvers() -> None:
    # optlab_cwd, not ${hydra:runtime.cwd}: Hydra resolves hydra.sweep.dir before it sets HydraConfig.
    resolvers = {
        "optlab_cwd": os.getcwd,
        "optlab_run_id": run_id,
        "optlab_sweep_id": sweep_id,
        "optlab_run_dir": run_dir,
        "optlab_config_subdir": config_subdir,
        "optlab_log_suffix": log_suffix,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
