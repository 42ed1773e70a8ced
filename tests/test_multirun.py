"""`train.py -m`: one folder, one W&B run and one summary row per job; multi-process jobs are
replayed as single runs so Lightning's re-launch of sys.argv cannot re-run the sweep."""

import csv
import json

import pytest

from optlab.launch import read_outcome


def sweep_dirs(logs):
    return sorted((logs / "train").glob("multirun-*"))


def test_multirun_two_jobs(cli, tmp_path):
    logs = tmp_path / "logs"
    result = cli(["-m", "optimizer.lr=0.01,0.1", "trainer.max_epochs=1", "test=false", f"paths.log_dir={logs}"])
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(logs)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["overrides"].split()[0] for r in rows] == ["optimizer.lr=0.01", "optimizer.lr=0.1"]
    for job, row in enumerate(rows):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert float(row["val/acc_best"]) == pytest.approx(metrics["val/acc_best"])
        assert len(list((sweep / str(job)).glob("wandb/offline-run-*"))) == 1
    assert "val/acc_best" in result.stdout and "optimizer.lr=0.1" in result.stdout  # the final table
    assert (sweep / "summary.md").read_text().count("| ok |") == 2
    import matplotlib.image  # one overlay of both jobs' validation curves beside the table

    assert matplotlib.image.imread(sweep / "curves.png").shape[1] >= 800
    assert "![validation curves of every job](curves.png)" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_multirun_with_subprocess_ddp(cli, tmp_path):
    logs = tmp_path / "logs"
    result = cli(
        [
            "-m",
            "optimizer.lr=0.05,0.1",
            "strategy=ddp",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "test=false",
            "logger=csv",
            f"paths.log_dir={logs}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(logs)  # a child that re-ran the sweep would have made a second one
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert [p.name for p in (logs / "train").iterdir()] == [sweep.name]  # no rank made a folder of its own
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["val/acc_best"] > 0
        outcome = read_outcome(sweep / job)  # the job's result, written by its fresh process
        assert outcome["status"] == "ok" and outcome["metrics"]["val/acc_best"] == metrics["val/acc_best"]
        assert (sweep / job / "job.json").is_file()  # the job as the fresh process (and its rank 1) read it
    said = result.stdout + result.stderr + "".join(p.read_text() for p in sweep.rglob("*.log"))
    assert "It is recommended to use `self.log(" not in said  # examples_seen is synced at its cause


@pytest.mark.parametrize(
    "devices, strategy, relaunches",
    [
        (1, "ddp", False),
        (2, "ddp", True),
        ("2", "ddp", True),
        ("0,", "ddp", False),
        ([0, 1], "ddp", True),
        ("auto", "ddp", False),
        (2, "ddp_spawn", False),
        (-1, "ddp", True),
        (2, "fsdp", True),
    ],
)
def test_which_jobs_lightning_would_relaunch(make_cfg, monkeypatch, devices, strategy, relaunches):
    """Only a multi-process start by re-running argv needs the job replayed (CPU: -1 = every core)."""
    from optlab.run import relaunches_argv

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cfg = make_cfg(f"strategy={strategy}")
    cfg.trainer.devices = devices
    assert relaunches_argv(cfg) is relaunches
