import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def run_cli(args: list[str], cwd: Path = REPO, timeout: int = 300, **env) -> subprocess.CompletedProcess:
    """`python train.py <args>` as a user runs it; tests/ is importable for helper callbacks."""
    full_env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "WANDB_SILENT": "true",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for rendezvous and test servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def make_cfg(tmp_path):
    """compose_config with every output under tmp_path; the run dir is tmp_path/run."""
    from optlab.run import compose_config

    def make(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        return compose_config([f"paths.log_dir={tmp_path / 'logs'}", *overrides], run_dir=run_dir)

    return make


@pytest.fixture(autouse=True)
def _isolated_process_state():
    """An in-process Trainer on a distributed strategy leaves the default process group up (as DDP
    does, for trainer.test after fit) and sets LOCAL_RANK, MASTER_PORT, ... in os.environ (which
    then reads as "this is one rank of a launched group"); undo both so tests stay independent."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
