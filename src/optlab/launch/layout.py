"""What a launcher that starts every rank itself (torchrun, srun, sbatch) says about the layout.

They describe the process layout in the environment, and Lightning reads it there. This module
is the one place that interprets those variables for the template:
- `external_layout()`: (launcher, nodes, processes per node) when torchrun or srun started this
  process, so that pre-flight can check trainer.devices / trainer.num_nodes against it;
- `global_rank()` / `is_rank_zero()`: this process's rank, e.g. for "only rank 0 writes";
- `adopt_srun_layout()`: `srun -n N` (no --ntasks-per-node) works when the tasks sit evenly on
  the nodes; Lightning alone refuses it.
"""

import os
import re
from dataclasses import dataclass


class LaunchError(ValueError):
    """The launcher's layout cannot run this job; reported in one line, exit 2."""


@dataclass(frozen=True)
class Layout:
    """The layout torchrun or srun gave the processes (`external_layout`), which pre-flight checks
    trainer.num_nodes and trainer.devices against."""

    launcher: str  # "torchrun" | "srun"
    nodes: int
    per_node: int


def _srun_tasks() -> bool:
    """srun started several tasks of one step (not a single-task sbatch/array job)."""
    return "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 and not _torchrun()


def _torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_WORLD_SIZE" in os.environ


def _tasks_per_node() -> list[int]:
    """SLURM_TASKS_PER_NODE ("2", "2(x3)", "3,1") expanded to one count per node."""
    counts = []
    for part in os.environ.get("SLURM_TASKS_PER_NODE", "").split(","):
        found = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if found:
            counts += [int(found.group(1))] * int(found.group(2) or 1)
    return counts


def external_layout() -> Layout | None:
    env = os.environ
    if _torchrun():
        per_node = int(env["LOCAL_WORLD_SIZE"])
        return Layout("torchrun", int(env.get("WORLD_SIZE", per_node)) // per_node, per_node)
    if _srun_tasks():
        counts = _tasks_per_node() or [int(env["SLURM_NTASKS"])]
        return Layout("srun", len(counts), counts[0])
    return None


def global_rank() -> int:
    if _torchrun() or "RANK" in os.environ:
        return int(os.environ.get("RANK", "0"))
    if _srun_tasks():
        return int(os.environ.get("SLURM_PROCID", "0"))
    return 0


def is_rank_zero() -> bool:
    """Also true of the ranks Lightning starts itself (it sets LOCAL_RANK and NODE_RANK, not RANK)."""
    env = os.environ
    return global_rank() == 0 and env.get("LOCAL_RANK", "0") == "0" and env.get("NODE_RANK", "0") == "0"


def adopt_srun_layout() -> None:
    """Give Lightning the SLURM_NTASKS_PER_NODE it needs when srun was asked for `-n N` only."""
    if not _srun_tasks() or "SLURM_NTASKS_PER_NODE" in os.environ:
        return
    counts = _tasks_per_node()
    if counts and len(set(counts)) == 1:
        os.environ["SLURM_NTASKS_PER_NODE"] = str(counts[0])
        return
    layout = os.environ.get("SLURM_TASKS_PER_NODE")
    raise LaunchError(
        f"srun placed the tasks unevenly (SLURM_TASKS_PER_NODE={layout}); Lightning needs as many on "
        "every node: use srun -N<nodes> --ntasks-per-node=<n>"
    )
