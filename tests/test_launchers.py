"""`train.py -m` under Hydra's launchers: basic (tests/test_multirun.py), joblib, submitit_local,
submitit_slurm (tests/test_slurm.py). The summary is read from each job's result file, so it is
complete wherever the jobs ran; bad launcher settings stop before anything starts."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from optlab.cli import preflight
from optlab.launch import OUTCOME
from optlab.multirun import read_rows, varying
from optlab.run import CONFIG_DIR
from optlab.validate import ConfigError, check_launcher

QUICK = [
    "logger=csv",
    "test=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["hydra/launcher=nope"],
            "hydra/launcher=nope is not an option; choose one of: basic, joblib, submitit_local, submitit_slurm",
        ),
        (
            ["hydra/launcher=submitit_slurm", "hydra.launcher.tasks_per_node=abc"],
            "hydra.launcher.tasks_per_node=abc is invalid: Value 'abc' of type 'str' could not be converted to Integer",
        ),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=x"], "hydra.launcher.n_jobs=x is invalid"),
    ],
)
def test_bad_launcher_settings_are_one_line(capsys, tmp_path, args, expected):
    if "hydra.launcher." in " ".join(args):  # the type check is the plugin's schema: it needs the [cluster] extra
        pytest.importorskip(f"hydra_plugins.hydra_{args[0].split('=')[1].split('_')[0]}_launcher")
    with pytest.raises(SystemExit) as exc:
        preflight(["-m", *args, "optimizer.lr=0.1,0.2", f"paths.log_dir={tmp_path / 'logs'}"], CONFIG_DIR)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {expected}" or err.startswith(f"error: {expected}"), err
    assert not (tmp_path / "logs").exists()


def test_a_launcher_whose_plugin_is_missing_says_how_to_install_it():
    hydra = OmegaConf.create(
        {
            "runtime": {"choices": {"hydra/launcher": "joblib"}},
            "launcher": {"_target_": "hydra_plugins.not_installed.Launcher"},
        }
    )
    with pytest.raises(ConfigError, match=r"hydra/launcher=joblib needs its Hydra plugin.*\.\[cluster\]"):
        check_launcher(hydra)


def test_summary_rows_come_from_each_jobs_result_file(tmp_path):
    for job, lr in ((0, "0.1"), (2, "0.3"), (3, "9")):
        (tmp_path / str(job)).mkdir()
        (tmp_path / str(job) / OUTCOME).write_text(
            json.dumps(
                {
                    "overrides": [f"optimizer.lr={lr}", "trainer.max_epochs=1", "hydra.searchpath=[file:///x]"],
                    "status": "ok" if job < 3 else "error",
                    "reason": "RuntimeError: boom" if job == 3 else None,
                    "metrics": {"val/acc_best": 0.5 + job / 10} if job < 3 else {},
                }
            )
        )
    (tmp_path / "1").mkdir()  # a job killed before it could write its result
    (tmp_path / ".submitit").mkdir()
    rows = read_rows(tmp_path, "val/acc_best")
    assert [(r["job"], r["metric"]) for r in rows] == [(0, 0.5), (1, None), (2, 0.7), (3, None)]
    assert rows[1]["status"].startswith("no result")
    assert rows[3]["status"] == "failed (error): RuntimeError: boom"
    assert rows[0]["overrides"] == "optimizer.lr=0.1 trainer.max_epochs=1"  # Hydra's own settings left out
    assert varying([rows[0], rows[2]]) == ["optimizer.lr=0.1", "optimizer.lr=0.3"]  # shared overrides left out


def multirun_rows(logs):
    (sweep,) = (logs / "train").glob("multirun-*")  # every job in one multirun folder
    return sweep, list(csv.DictReader((sweep / "summary.csv").open()))


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, extra",
    [
        ("joblib", []),
        ("joblib", ["strategy=ddp", "trainer.devices=2", "hydra.launcher.n_jobs=1"]),  # ranks started per job
        ("submitit_local", []),
    ],
)
def test_launcher_runs_every_job_and_the_summary_is_complete(cli, tmp_path, launcher, extra):
    pytest.importorskip(f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher")  # the [cluster] extra
    logs = tmp_path / "logs"
    result = cli(
        ["-m", f"hydra/launcher={launcher}", "optimizer.lr=0.05,0.1", *extra, *QUICK, f"paths.log_dir={logs}"],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep, rows = multirun_rows(logs)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "ok")]
    for job, row in enumerate(rows):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert float(row["val/acc_best"]) == pytest.approx(metrics["val/acc_best"])
    assert "optimizer.lr=0.1" in result.stdout  # the table
