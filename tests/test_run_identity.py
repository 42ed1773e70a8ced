"""One run = one id = one directory, whoever starts the ranks: a notebook calling train() twice,
torchrun on one node or two, srun's tasks (SLURM's environment), or a launcher that sets the id."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import torch

from conftest import REPO, TESTS, free_port
from optlab import launch, rundirs
from optlab.run import compose_config, train
from optlab.validate import ConfigError, check_devices

QUICK = [
    "logger=csv",
    "test=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def clean_launcher_env(monkeypatch):
    for key in (
        "OPTLAB_RUN_ID",
        "TORCHELASTIC_RUN_ID",
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_WORLD_SIZE",
        "SLURM_JOB_ID",
        "SLURM_STEP_ID",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "SLURM_JOB_START_TIME",
        "SLURM_TASKS_PER_NODE",
        "SLURM_NTASKS_PER_NODE",
    ):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_every_train_call_in_one_process_is_a_new_run(tmp_path, clean_launcher_env):
    logs = tmp_path / "logs"
    first = train(compose_config([*QUICK, f"paths.log_dir={logs}"]))
    second = train(compose_config([*QUICK, f"paths.log_dir={logs}"]))
    runs = sorted((logs / "train").iterdir())
    assert len(runs) == 2 and first and second
    for run in runs:  # each run has its own checkpoints and its own CSV
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.json").is_file()
    resumed = compose_config([*QUICK, f"paths.log_dir={logs}", f"ckpt_path={runs[0] / 'checkpoints' / 'last.ckpt'}"])
    assert resumed.paths.run_dir == str(runs[0])  # ...unless it resumes


def test_launcher_set_id(clean_launcher_env):
    clean_launcher_env.setenv("OPTLAB_RUN_ID", "mine-1")
    assert rundirs.new_run() == "mine-1" and rundirs.run_dir("/logs/train") == "/logs/train/mine-1"


def test_srun_tasks_agree_from_slurms_environment(clean_launcher_env):
    env = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "3", "SLURM_NTASKS": "2", "SLURM_JOB_START_TIME": "1700000000"}
    ids = []
    for task in ("0", "1"):  # what each of the two tasks computes
        for k, v in {**env, "SLURM_PROCID": task}.items():
            clean_launcher_env.setenv(k, v)
        ids.append(rundirs.new_run())
        assert rundirs.global_rank() == int(task)
        assert rundirs.config_subdir() == (".hydra" if task == "0" else None)
        assert rundirs.log_suffix() == ("" if task == "0" else "-rank1")
    assert ids[0] == ids[1] and ids[0].endswith("-slurm4242.3"), ids
    clean_launcher_env.setenv("SLURM_NTASKS", "1")  # one task (a batch job, an array element): a fresh id
    assert rundirs.global_rank() == 0 and "slurm" not in rundirs.new_run() and rundirs.new_run() != rundirs.new_run()


def test_torchrun_ranks_agree_through_its_store(clean_launcher_env):
    port = free_port()
    agent_store = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=30))
    for k, v in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_RUN_ID": "job7",
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
    }.items():
        clean_launcher_env.setenv(k, v)
    code = "from optlab import rundirs; print(rundirs.new_run())"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "RANK": str(r)}
        )
        for r in (0, 1)
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert ids[0] == ids[1] and len(ids[0]) == len("20261202-160218-5c63c8"), ids
    clean_launcher_env.setenv("TORCHELASTIC_RUN_ID", "job8")  # the next torchrun job: another id
    assert rundirs.new_run() != ids[0]
    del agent_store


@pytest.mark.parametrize("tasks_per_node, expected", [("2", "2"), ("2(x3)", "2"), ("3,1", None)])
def test_srun_without_ntasks_per_node(clean_launcher_env, tasks_per_node, expected):
    for k, v in {"SLURM_JOB_ID": "5", "SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": tasks_per_node}.items():
        clean_launcher_env.setenv(k, v)
    if expected is None:  # uneven: Lightning cannot run it; say what to write instead
        with pytest.raises(launch.LaunchError, match="--ntasks-per-node"):
            launch.adopt_srun_layout()
    else:
        launch.adopt_srun_layout()
        assert os.environ["SLURM_NTASKS_PER_NODE"] == expected


def test_preflight_checks_the_config_against_the_launchers_layout(clean_launcher_env, make_cfg):
    for k, v in {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4", "OPTLAB_RUN_ID": "t"}.items():
        clean_launcher_env.setenv(k, v)
    assert launch.external_layout() == launch.Layout("torchrun", nodes=2, per_node=2)
    with pytest.raises(
        ConfigError, match="torchrun started 2 process.* on 2 node.*set trainer.devices=2 trainer.num_nodes=2"
    ):
        check_devices(make_cfg("trainer.devices=2"))
    check_devices(make_cfg("trainer.devices=2", "trainer.num_nodes=2"))


# -- torchrun for real: one node, and two "nodes" on this machine (slow) --------------------------


def torchrun_cmd(nnodes: int, nproc: int, port: int) -> list[str]:
    rdzv = (
        ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=optlab-test"]
        if nnodes > 1
        else [f"--master-port={port}"]
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        *rdzv,
        str(REPO / "train.py"),
    ]


def assert_one_two_rank_run(logs, dump) -> None:
    (run,) = (logs / "train").iterdir()  # one run directory, and nothing else under logs/
    assert sorted(p.name for p in logs.iterdir()) == ["train"]
    assert sorted(p.name for p in run.glob("*.log")) == ["train-rank1.log", "train.log"]
    assert [p.name for p in run.iterdir() if p.name.startswith(".hydra")] == [".hydra"]  # rank 0's only
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.json").is_file()
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("nnodes", [1, 2])
@pytest.mark.parametrize("strategy", ["ddp", "allreduce"])
def test_torchrun_trains_one_run(tmp_path, strategy, nnodes):
    logs, dump = tmp_path / "logs", tmp_path / "weights"
    args = [
        f"strategy={strategy}",
        f"trainer.devices={2 // nnodes}",
        f"trainer.num_nodes={nnodes}",
        *QUICK,
        "trainer.enable_model_summary=false",
        f"paths.log_dir={logs}",
        "+callbacks.dump._target_=helpers.DumpWeights",
        f"+callbacks.dump.dir={dump}",
    ]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "WANDB_SILENT": "true"}
    port = free_port()
    procs = [
        subprocess.Popen(
            [*torchrun_cmd(nnodes, 2 // nnodes, port), *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(nnodes)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * nnodes, "\n".join(o[-3000:] for o in outputs)
    assert_one_two_rank_run(logs, dump)
