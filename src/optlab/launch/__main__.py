"""`python -m optlab.launch <run_dir>/job.json`: run one job in this fresh process (how=subprocess).

Lightning's subprocess DDP re-runs this same command line for every other rank (with extra
`hydra.*` arguments it adds, ignored here); every rank composes the same job into the same run dir.
"""

import sys
from pathlib import Path

from optlab.launch.job import Job, run_here

if __name__ == "__main__":
    outcome = run_here(Job.from_json(Path(sys.argv[1]).read_text()))
    sys.exit(0 if outcome["status"] == "ok" else 1)
