"""optlab.launch: a Job runs here, in a reusable worker process, in a fresh process or through
submitit, and leaves the same outcome.json wherever it ran; only optlab.run touches Hydra's
global state. (`-m` jobs: tests/test_multirun.py; sweep trials: tests/test_sweep.py.)"""

import ast
import json
import math
import os
import signal
from pathlib import Path

import pytest

from optlab import launch
from optlab.launch import OUTCOME, Job, read_outcome, write_outcome

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "logger=csv",
    "test=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def hooked(tmp_path, name: str, then: str, marker: Path, **kwargs) -> Job:
    return Job(
        overrides=[*QUICK, f"paths.log_dir={tmp_path / 'logs'}"],
        run_dir=str(tmp_path / name),
        configure="launch_hooks.record_then",
        options={"marker": str(marker), "then": then},
        log_file=str(tmp_path / f"{name}.log"),
        **kwargs,
    )


@pytest.fixture
def hooks_importable(monkeypatch):
    """The hook module must import in the job's own processes too."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    yield
    launch.shutdown_pool()


def test_a_job_round_trips_through_json():
    job = Job(
        overrides=["optimizer=adamw", "hydra.searchpath=[file:///x]"],
        run_dir="/r",
        config_dir="/c",
        configure="m.f",
        options={"pruner": {"_target_": "p"}},
        threads=2,
        log_file="/r/l",
    )
    assert Job.from_json(job.to_json()) == job


def test_an_inline_job_trains_and_leaves_its_outcome(tmp_path):
    job = Job(overrides=[*QUICK, f"paths.log_dir={tmp_path}"], run_dir=str(tmp_path / "run"))
    outcome = launch.run(job, "inline")
    assert outcome["status"] == "ok" and outcome["reason"] is None, outcome.get("reason")
    assert outcome["metrics"] == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert read_outcome(tmp_path / "run") == json.loads(json.dumps(outcome))
    assert outcome["overrides"] == job.overrides and outcome["wall_s"] > 0
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()  # as a command-line run saves it


def test_the_outcome_file_is_strict_json_even_with_non_finite_metrics(tmp_path):
    write_outcome(
        tmp_path, {"status": "ok", "metrics": {"val/loss": float("nan"), "val/acc": 0.5, "train/loss": float("inf")}}
    )

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    json.loads((tmp_path / OUTCOME).read_text(), parse_constant=refuse)  # no bare NaN / Infinity
    metrics = read_outcome(tmp_path)["metrics"]
    assert math.isnan(metrics["val/loss"]) and metrics["train/loss"] == math.inf and metrics["val/acc"] == 0.5


def test_a_failed_job_is_recorded_then_raised_only_when_asked(tmp_path, hooks_importable):
    from optlab.validate import ConfigError

    marker = tmp_path / "ran"
    outcome = launch.run_here(hooked(tmp_path, "a", "config", marker))
    assert (outcome["status"], outcome["reason"]) == ("config", "stopped by the test hook")
    assert read_outcome(tmp_path / "a")["status"] == "config"
    with pytest.raises(ConfigError, match="stopped by the test hook"):  # a `-m` job on the command line
        launch.run_here(hooked(tmp_path, "b", "config", marker), reraise=True)
    assert read_outcome(tmp_path / "b")["status"] == "config"


def test_hydra_global_state_is_touched_by_one_module_only():
    """GlobalHydra / HydraConfig: compose_config, the run-time config and its reset live in optlab.run."""
    touching = set()
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *ROOT.glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith(("hydra.core.global_hydra", "hydra.core.hydra_config")) for n in names):
                touching.add(path.relative_to(ROOT).as_posix())
    assert touching == {"src/optlab/run.py"}


@pytest.mark.slow
def test_a_worker_process_is_reused_and_a_crash_takes_only_it_down(tmp_path, hooks_importable):
    marker = tmp_path / "pids"
    first = launch.run(hooked(tmp_path, "a", "config", marker), "pool", jobs_per_process=10)
    second = launch.run(hooked(tmp_path, "b", "train", marker), "pool", jobs_per_process=10)
    killed = launch.run(hooked(tmp_path, "c", "kill", marker), "pool", jobs_per_process=10)
    after = launch.run(hooked(tmp_path, "d", "config", marker), "pool", jobs_per_process=10)
    pids = marker.read_text().split()
    assert pids[0] == pids[1] == pids[2] != pids[3] and str(os.getpid()) not in pids
    assert first["status"] == "config" and second["status"] == "ok" and after["status"] == "config"
    assert second["metrics"]["val/acc_best"] > 0 and read_outcome(tmp_path / "b")["metrics"] == second["metrics"]
    assert killed["status"] == "crash" and killed["reason"].startswith("job process killed by SIGKILL")
    assert killed["exit_code"] == -signal.SIGKILL and read_outcome(tmp_path / "c") is None  # nothing made up


@pytest.mark.slow
def test_a_fresh_process_per_job_and_its_timeout(tmp_path, hooks_importable):
    marker = tmp_path / "pids"
    ok = launch.run(hooked(tmp_path, "a", "train", marker), "subprocess")
    killed = launch.run(hooked(tmp_path, "b", "kill", marker), "subprocess")
    slow = launch.run(hooked(tmp_path, "c", "sleep", marker), "subprocess", timeout=20)
    assert ok["status"] == "ok" and ok["metrics"] == json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (tmp_path / "a" / "job.json").is_file() and "run dir: " in (tmp_path / "a.log").read_text()
    assert killed["status"] == "crash" and "killed by SIGKILL" in killed["reason"]
    assert (slow["status"], slow["reason"]) == ("timeout", "timed out after 20 s and was stopped")
    assert len(set(marker.read_text().split())) >= 2 and str(os.getpid()) not in marker.read_text().split()


@pytest.mark.slow
def test_a_job_through_submitit_leaves_the_same_outcome(tmp_path, hooks_importable):
    pytest.importorskip("submitit")  # the [cluster] extra
    marker = tmp_path / "pids"
    ok = launch.run(
        hooked(tmp_path, "a", "train", marker), "submitit", submitit={"cluster": "local", "timeout_min": 10}
    )
    failed = launch.run(hooked(tmp_path, "b", "kill", marker), "submitit", submitit={"cluster": "local"})
    assert ok["status"] == "ok" and read_outcome(tmp_path / "a")["metrics"] == ok["metrics"]
    assert ok["metrics"] == json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert failed["status"] == "crash" and failed["reason"].startswith("submitit job "), failed["reason"]
    assert str(os.getpid()) not in marker.read_text().split()
