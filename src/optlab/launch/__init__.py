"""The one home for running a job: `python train.py -m` jobs, sweep trials and comparisons all
start their runs here, and all read back the same result file.

- `layout`: what torchrun / srun say about the process layout (and srun `-n N` made to work);
- `job`: a `Job` (overrides + run dir + config source), its `outcome.json`, running it here;
- `process`: running it in a fresh process, a reusable worker process, or through submitit.
"""

from optlab.launch.job import OUTCOME, Job, read_outcome, run_here, write_outcome
from optlab.launch.layout import (
    LaunchError,
    Layout,
    adopt_srun_layout,
    external_layout,
    global_rank,
    is_rank_zero,
)
from optlab.launch.process import MODES, run, shutdown_pool, warm_pool

__all__ = [
    "MODES",
    "OUTCOME",
    "Job",
    "LaunchError",
    "Layout",
    "adopt_srun_layout",
    "external_layout",
    "global_rank",
    "is_rank_zero",
    "read_outcome",
    "run",
    "run_here",
    "shutdown_pool",
    "warm_pool",
    "write_outcome",
]
