"""A real one-node SLURM (scripts/slurm/local-cluster.sh): srun and sbatch train one run.

Each test is `srun ... python train.py ...` or `sbatch` as a user types it. Where SLURM is not
installed the tests skip with the reason; under CI (CI=true) a missing SLURM is a failure, since
.ci/run installs and starts it.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TESTS

CLUSTER = REPO / "scripts" / "slurm" / "local-cluster.sh"
QUICK = [
    "logger=csv",
    "test=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def slurm_env():
    """The environment for SLURM's clients, starting the local cluster if it is not up."""

    def unavailable(reason: str):
        if os.environ.get("CI"):
            pytest.fail(f"SLURM must run in CI: {reason}")
        pytest.skip(reason)

    if shutil.which("slurmctld") is None or shutil.which("srun") is None:
        unavailable("SLURM is not installed (apt-get install slurm-wlm munge)")
    conf = os.environ.get("OPTLAB_SLURM_DIR", "/tmp/optlab-slurm") + "/slurm.conf"
    env = {**os.environ, "SLURM_CONF": conf, "PYTHONPATH": str(TESTS), "WANDB_SILENT": "true"}
    up = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
    # Up is idle, or mixed/allocated while another test's job runs (pytest -n: the restart that
    # `start` does would kill that job).
    if up.returncode != 0 or not re.search(r"^(idle|mixed|allocated)", up.stdout, re.M):
        started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            unavailable(f"the local cluster did not start: {started.stderr.strip()[-500:]}")
    return env


def srun(env, tasks: list[str], *args: str, cwd=REPO, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["srun", *tasks, sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_run_equal_weights(logs, dump) -> None:
    (run,) = (logs / "train").iterdir()
    assert "-slurm" in run.name
    assert sorted(p.name for p in run.glob("*.log")) == ["train-rank1.log", "train.log"]
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def dumped(tmp_path) -> list[str]:
    return [
        f"paths.log_dir={tmp_path / 'logs'}",
        "+callbacks.dump._target_=helpers.DumpWeights",
        f"+callbacks.dump.dir={tmp_path / 'weights'}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "allreduce", "fsdp"])
def test_srun_ntasks_per_node(slurm_env, tmp_path, strategy):
    result = srun(
        slurm_env,
        ["-N1", "--ntasks-per-node=2"],
        f"strategy={strategy}",
        "trainer.devices=2",
        *QUICK,
        *dumped(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_one_run_equal_weights(tmp_path / "logs", tmp_path / "weights")


@pytest.mark.slow
def test_srun_n2_works_too(slurm_env, tmp_path):
    """Lightning alone refuses `srun -n 2` (it wants --ntasks-per-node); the tasks sit evenly, so it runs."""
    result = srun(slurm_env, ["-n2"], "strategy=ddp", "trainer.devices=2", *QUICK, *dumped(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_one_run_equal_weights(tmp_path / "logs", tmp_path / "weights")


@pytest.mark.slow
def test_srun_layout_that_does_not_match_the_config_is_one_line(slurm_env, tmp_path):
    result = srun(
        slurm_env,
        ["-N1", "--ntasks-per-node=2"],
        "strategy=ddp",
        "trainer.devices=1",
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 2, result.stderr[-2000:]  # one line from each task
    assert "srun started 2 process(es) per node on 1 node(s)" in errors[0] and "trainer.devices=2" in errors[0]
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_sbatch_example_script(slurm_env, tmp_path):
    result = subprocess.run(
        [
            "sbatch",
            "--wait",
            f"--output={tmp_path / 'job.out'}",
            f"--export=ALL,PYTHON={sys.executable}",
            str(REPO / "scripts" / "slurm" / "train.sbatch"),
            "strategy=ddp",
            *QUICK,
            *dumped(tmp_path),
        ],
        cwd=REPO,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert result.returncode == 0, (result.stderr + out)[-3000:]
    assert_one_run_equal_weights(tmp_path / "logs", tmp_path / "weights")


def multirun(env, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "hydra/launcher=submitit_slurm",
            *args,
            *QUICK,
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["strategy=ddp", "trainer.devices=2"]])  # ddp: 2 SLURM tasks per job
def test_submitit_slurm_multirun(slurm_env, tmp_path, extra):
    import csv
    import json

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = multirun(slurm_env, tmp_path, "optimizer.lr=0.05,0.1", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train").glob("multirun-*")  # the SLURM jobs wrote into the sweep's folder
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "ok")]
    for job, row in enumerate(rows):
        assert float(row["val/acc_best"]) == pytest.approx(
            json.loads((sweep / str(job) / "metrics.json").read_text())["val/acc_best"]
        )
        if extra:  # the job's ranks were SLURM tasks sharing the job's folder
            assert (sweep / str(job) / "train-rank1.log").is_file()
    assert "optimizer.lr=0.1" in result.stdout


@pytest.mark.slow
def test_submitit_slurm_unknown_partition_is_one_line(slurm_env, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = multirun(slurm_env, tmp_path, "hydra.launcher.partition=nope", "optimizer.lr=0.05,0.1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: hydra.launcher.partition=nope is not a partition of this cluster; use one of: debug"
    ]
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_sweep_workers_as_a_job_array_share_one_storage(slurm_env, tmp_path):
    from test_sweep import TINY, load

    journal = tmp_path / "shared" / "study.log"
    result = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--array=0-2",
            f"--output={tmp_path / 'worker-%a.out'}",
            f"--export=ALL,PYTHON={sys.executable}",
            str(REPO / "scripts" / "slurm" / "sweep.sbatch"),
            *TINY,
            "trainer.max_epochs=1",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"storage=journal:{journal}",
            "study_name=array",
            "n_trials=5",
            "report=false",
        ],
        cwd=REPO,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = "".join(p.read_text()[-2000:] for p in tmp_path.glob("worker-*.out"))
    assert result.returncode == 0, (result.stderr + logs)[-4000:]
    trials = [t for t in load(f"journal:{journal}", "array").get_trials() if t.state.name != "WAITING"]
    assert len(trials) == 5 and all(t.state.name == "COMPLETE" for t in trials), logs[-3000:]  # exactly n_trials
    assert len(list(tmp_path.glob("worker-*.out"))) == 3 and len({t.user_attrs["worker"] for t in trials}) >= 2
