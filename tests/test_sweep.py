"""sweep.py: search spaces, a study end to end, failing/NaN/OOM/crashing trials, pruning, reports,
fail-fast config errors; slow: resume after SIGKILL and two workers (on sqlite, a journal file and
a real PostgreSQL server), DDP trials."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# A trial small enough for a test: tiny ResNet on digits, no logger, no progress bar, one torch
# thread (a tiny net gains nothing from two, and loses 4x when other work shares the cores).
TINY = [
    "sweep.threads=1",
    "model.net.widths=[8,16]",
    "trainer.max_epochs=2",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
]


class Chaos(Callback):
    """What a trial does wrong, chosen by the search space (`callbacks.chaos.mode`)."""

    def __init__(self, mode: str = "ok"):
        self.mode = mode

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != 2:
            return
        if self.mode == "raise":
            raise RuntimeError("deliberate failure from test_sweep.Chaos")
        if self.mode == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by test_sweep.Chaos)")
        if self.mode == "kill":  # what the kernel's OOM killer does
            os.kill(os.getpid(), signal.SIGKILL)
        if self.mode == "nan":
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("nan"))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.mode == "stall":  # never learns: the pruner must stop it
            for p in pl_module.parameters():
                p.grad = None


def run_sweep(args: list[str], cwd: Path = REPO, timeout: int = 300, background: bool = False):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WANDB_SILENT": "true"}
    command = [sys.executable, str(REPO / "sweep.py"), *args]
    if background:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (scripts/postgres/local-server.sh) for the session; its URL.
    Skips with the reason where it cannot start; under CI (CI=true) that is a failure."""

    def unavailable(reason: str):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must run in CI: {reason}")
        pytest.skip(reason)

    try:
        import psycopg  # noqa: F401  (the driver of postgresql:// URLs: pip install -e ".[cluster]")
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[cluster]')")
    script = REPO / "scripts" / "postgres" / "local-server.sh"
    env = {**os.environ, "OPTLAB_PG_DIR": f"/tmp/optlab-pg-test-{os.getpid()}", "OPTLAB_PG_PORT": str(free_port())}
    started = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        unavailable(f"the PostgreSQL server did not start: {started.stderr.strip()[-500:]}")
    yield started.stdout.strip()
    subprocess.run([str(script), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database on the session's server, so each test sees only its own studies."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


def load(storage: str, name: str):
    import optuna

    from optlab.sweep.study import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(storage))


def write_sweep(tmp_path: Path, name: str, text: str) -> Path:
    conf = tmp_path / "conf"
    (conf / "sweep").mkdir(parents=True, exist_ok=True)
    (conf / "sweep" / f"{name}.yaml").write_text("# @package _global_\n" + text)
    return conf


# -- search spaces (no training) ------------------------------------------------------------------


def sweep_cfg(*overrides):
    from optlab.run import compose_config

    return compose_config(list(overrides), run_dir="<test>", config_name="sweep")


def test_default_space_samples_the_classic_space():
    import optuna

    from optlab.sweep.space import SearchSpace

    space = SearchSpace.from_config(sweep_cfg().sweep.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    off = on = 0
    for _ in range(60):
        trial = study.ask()
        values = space.sample(trial)
        assert 1e-4 <= values["optimizer.lr"] <= 1e-1
        assert values["data.batch_size"] in (32, 64, 128, 256)
        if trial.params["weight_decay_on"]:
            on += 1
            assert 1e-4 <= values["optimizer.weight_decay"] <= 1e-2
            assert trial.params["optimizer.weight_decay"] == values["optimizer.weight_decay"]
        else:
            off += 1
            assert values["optimizer.weight_decay"] == 0.0  # exactly 0 on this branch...
            assert "optimizer.weight_decay" not in trial.params  # ...and not a sampled parameter
        assert "weight_decay_on" not in values  # a switch: never passed to training
        study.tell(trial, 0.0)
    assert 15 <= off <= 45 and 15 <= on <= 45  # probability 1/2 each
    overrides = space.overrides({"optimizer.lr": 0.001234, "data.batch_size": 64, "x": "a b", "y": True, "z": "1e-3"})
    assert overrides == ["optimizer.lr=0.001234", "data.batch_size=64", "x='a b'", "y=true", "z='1e-3'"]


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf" / "sweep").glob("*.yaml")))
def test_every_sweep_space_composes_and_validates(name):
    from optlab.sweep.driver import check_training, settings

    overrides = [f"sweep={name}", "optimizer=lion"]
    s = settings(sweep_cfg(*overrides), overrides)
    check_training(s)  # every bound and choice composed into a training config and validated
    assert s.study_name == name and s.process == "pool" and s.training_overrides == ["optimizer=lion"]
    assert s.storage.endswith(f"/logs/sweeps/{name}.db")


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp"])
@pytest.mark.parametrize("pruner", ["median", "hyperband", "asha", "none"])
def test_every_sampler_and_pruner_option_builds_and_samples_the_default_space(sampler, pruner):
    import optuna

    from optlab.sweep.space import SearchSpace
    from optlab.sweep.study import make_pruner, make_sampler

    cfg = sweep_cfg(f"sweep/sampler={sampler}", f"sweep/pruner={pruner}", "sweep.sampler.seed=1")
    space = SearchSpace.from_config(cfg.sweep.space)
    study = optuna.create_study(
        sampler=make_sampler(cfg.sweep.sampler, space), pruner=make_pruner(cfg.sweep.pruner), direction="maximize"
    )
    for _ in range(4):
        trial = study.ask()
        values = space.sample(trial)
        trial.report(values["optimizer.lr"], step=0)
        trial.should_prune()
        study.tell(trial, values["optimizer.lr"])
    assert len(study.trials) == 4 and study.best_value <= 0.1


def test_grid_sampler_walks_the_choices_and_stops():
    import optuna

    from optlab.sweep.space import SearchSpace
    from optlab.sweep.study import make_sampler

    space = SearchSpace.from_config(
        {"optimizer.lr": {"low": 1e-3, "high": 1e-1, "grid": [1e-3, 1e-2]}, "data.batch_size": {"choices": [32, 64]}}
    )
    study = optuna.create_study(sampler=make_sampler(sweep_cfg("sweep/sampler=grid").sweep.sampler, space))
    study.optimize(lambda t: space.sample(t)["optimizer.lr"], n_trials=10)
    assert sorted(tuple(sorted(t.params.items())) for t in study.trials) == sorted(
        (("data.batch_size", b), ("optimizer.lr", lr)) for b in (32, 64) for lr in (1e-3, 1e-2)
    )


@pytest.mark.parametrize(
    "space, message",
    [
        ({"optimizer.lr": {"low": 0, "high": 1, "log": True}}, "sweep.space.optimizer.lr"),
        ({"optimizer.lr": {"low": 1e-3}}, "give low and high"),
        ({"optimizer.lr": {"choices": []}}, "non-empty list"),
        ({"optimizer.lr": {"low": 1e-3, "high": 1e-1, "lg": True}}, "unknown field(s) lg"),
        ({"optimizer.lr": {"low": 1e-3, "high": 1e-1, "when": {"nope": True}}}, "not an entry above it"),
        (
            {"a": {"choices": [1, 2]}, "optimizer.lr": {"low": 1e-3, "high": 1e-1, "when": {"a": 3}}},
            "only takes [1, 2]",
        ),
        ({}, "sweep.space is empty"),
    ],
)
def test_bad_space_is_one_clear_error(space, message):
    from optlab.sweep.space import SearchSpace
    from optlab.validate import ConfigError

    with pytest.raises(ConfigError) as e:
        SearchSpace.from_config(space)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sweep.direction=up"], "sweep.direction='up' is invalid"),
        (["n_trials=0"], "n_trials=0 is invalid"),
        (["sweep=typo"], "sweep.space.optimizer.lrr: unknown key 'optimizer.lrr'"),
        (["strategy=ddp", "trainer.devices=2", "sweep.process=pool"], "use sweep.process=subprocess"),
        (["sweep/sampler=grid"], "needs the values of each float/int entry"),
        (["storage=mongodb://x"], "is not a storage URL"),
        (["sweep.pruner.n_startup_trials=-1"], "sweep.pruner"),
        (
            ["sweep.process=submitit", "sweep.submitit.timeout_min=soon"],
            'sweep.submitit is invalid: Parameter "timeout_min"',
        ),
        (["sweep.process=submitit", "+sweep.submitit.partiton=gpu"], "sweep.submitit is invalid: Parameter 'partiton'"),
    ],
)
def test_bad_sweep_settings_fail_before_any_trial(overrides, message, typo_conf):
    from optlab.sweep.driver import check_training, settings
    from optlab.validate import ConfigError

    if message.startswith("sweep.submitit"):  # checked against submitit's own signature: the cluster extra
        pytest.importorskip("submitit")
    overrides = [f"hydra.searchpath=[file://{typo_conf}]", *overrides]
    with pytest.raises(ConfigError) as e:
        check_training(settings(sweep_cfg(*overrides), overrides))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "url, message",
    [
        # {port}: a free port picked when the test runs (not at collection, where each xdist worker
        # would pick its own and the workers' test ids would differ)
        ("postgresql://me:secret@127.0.0.1:{port}/optuna", "cannot be reached (connection"),
        ("mysql://me:secret@127.0.0.1/optuna", "needs the database driver MySQLdb"),
    ],
)
def test_unreachable_storage_is_one_line_without_the_password(url, message):
    import importlib.util

    from optlab.sweep.study import make_storage
    from optlab.validate import ConfigError

    url = url.format(port=free_port())

    if url.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:  # installed without [cluster]
        message = "needs the database driver psycopg"

    with pytest.raises(ConfigError) as e:
        make_storage(url)
    assert message in str(e.value) and "\n" not in str(e.value) and "secret" not in str(e.value)
    assert str(e.value).startswith("storage=") and "me:***@" in str(e.value)


@pytest.fixture
def typo_conf(tmp_path):
    """A search space with a key the training config does not have."""
    return write_sweep(tmp_path, "typo", "sweep:\n  space:\n    optimizer.lrr: {low: 0.1, high: 1.0}\n")


def test_command_line_errors_are_one_line_and_leave_no_storage(tmp_path, typo_conf, capsys):
    from optlab.cli import preflight

    with pytest.raises(SystemExit) as e:  # what sweep.py checks before Hydra starts
        preflight(["--config-name", "sweep", "sweep/sampler=nope"], REPO / "conf")
    assert (
        e.value.code == 2
        and "sweep/sampler=nope is not an option; choose one of: cmaes, gp, grid, random, tpe"
        in capsys.readouterr().err
    )
    logs = tmp_path / "logs"
    result = run_sweep(["--config-dir", str(typo_conf), "sweep=typo", f"paths.log_dir={logs}"], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: sweep.space.optimizer.lrr: unknown key 'optimizer.lrr'; "
        "check the spelling (python train.py --cfg job lists all keys) "
        "or add it with +optimizer.lrr=..."
    ]
    assert not list(logs.glob("sweeps/*.db"))  # nothing touched the storage


def test_trial_config_groups_wandb_runs_by_study(tmp_path):
    from optlab.sweep.objective import trial_job

    job = trial_job(
        [f"paths.log_dir={tmp_path}"],
        tmp_path / "trial-0003",
        "val/acc_best",
        wandb_group="lr_study",
        wandb_name="lr_study-trial-0003",
        storage="sqlite:///x.db",
        study_name="lr_study",
        trial_id=7,
        pruner={"_target_": "optuna.pruners.NopPruner"},
    )
    cfg = type(job).from_json(job.to_json()).config()  # as a fresh trial process sees it
    from hydra.utils import instantiate

    logger = instantiate(cfg.logger.wandb)
    assert logger._wandb_init["group"] == "lr_study"
    assert logger._wandb_init["name"] == logger._wandb_init["id"] == "lr_study-trial-0003"
    assert cfg.callbacks.optuna_trial.trial_id == 7 and cfg.paths.run_dir == str(tmp_path / "trial-0003")


# -- studies (training) ---------------------------------------------------------------------------


def test_study_end_to_end_then_report_only(tmp_path, capsys):
    """What `python sweep.py <args>` does, in-process (the CLI itself is run by the slow tests)."""
    from optlab.sweep.driver import sweep

    logs = tmp_path / "logs"
    args = [
        *TINY,
        f"paths.log_dir={logs}",
        "n_trials=4",
        "sweep.top_k=1",
        "sweep.rerun_seeds=1",
        "sweep/sampler=random",
        "sweep.sampler.seed=0",
    ]
    best_value = sweep(sweep_cfg(*args), args)
    assert "sweep.process=pool" in capsys.readouterr().out  # the default process model
    study = load(f"sqlite:///{logs}/sweeps/default.db", "default")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and best_value == study.best_value
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == logs / "sweeps" / "default" / f"trial-{t.number:04d}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert t.value == pytest.approx(metrics["val/acc_best"]) and 0 < t.value <= 1
        assert sorted(t.intermediate_values) == [0, 1] and t.user_attrs["epochs"] == 2  # reported each epoch
        assert "test/acc" not in metrics  # trials never look at the test set
        assert t.user_attrs["command"].startswith("python train.py model.net.widths=[8,16]")
        assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "trial.log").is_file()
    out = logs / "sweeps" / "default"
    best = study.best_trial
    rerun = json.loads((out / f"rerun-{best.number:04d}-seed43" / "metrics.json").read_text())
    assert "test/acc" in rerun and study.user_attrs[f"rerun:{best.number}:43"]["val/acc_best"] == rerun["val/acc_best"]
    html = (out / "report.html").read_text()
    assert "plotly" in html and "optimization_history" in html and (out / "plotly.min.js").stat().st_size > 1e6
    for stem in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 5
    assert f"| 1 | {best.number} | {best.value:.4f} |" in (out / "report.md").read_text()

    (out / "report.md").unlink()
    again = [f"paths.log_dir={logs}", "report=only", "sweep.top_k=1", "sweep.rerun_seeds=1"]
    sweep(sweep_cfg(*again), again)
    assert (out / "report.md").is_file() and "re-run of trial" not in capsys.readouterr().out  # cached re-runs
    assert len(load(f"sqlite:///{logs}/sweeps/default.db", "default").get_trials()) == 4


def test_report_only_needs_an_existing_study(tmp_path):
    from optlab.sweep.driver import sweep
    from optlab.validate import ConfigError

    args = [f"paths.log_dir={tmp_path}", "report=only"]
    with pytest.raises(ConfigError, match="no study storage at sqlite:///"):
        sweep(sweep_cfg(*args), args)
    assert not list(tmp_path.rglob("*.db"))


CHAOS = """defaults:
  - override /sweep/pruner: none
  - override /sweep/sampler: grid
sweep:
  space:
    callbacks.chaos.mode: {choices: %s}
  pruner: {_target_: optuna.pruners.ThresholdPruner, lower: 0.25}
  check_every_n_steps: 1
"""
CHAOS_ARGS = [
    *TINY,
    "data.batch_size=16",
    "optimizer.lr=0.05",
    "+callbacks.chaos._target_=test_sweep.Chaos",
    "+callbacks.chaos.mode=ok",
    "report=false",
]


def test_failing_nan_and_oom_trials_are_recorded_and_pruning_stops_a_trial(tmp_path):
    """In-process (sweep.process=inline) to stay fast; the same code runs in a pool process."""
    from optlab.sweep.driver import check_training, open_study, settings, work

    conf = write_sweep(tmp_path, "chaos", CHAOS % "[ok, raise, nan, oom, stall]")
    logs = tmp_path / "logs"
    overrides = [
        f"hydra.searchpath=[file://{conf}]",
        "sweep=chaos",
        *CHAOS_ARGS,
        f"paths.log_dir={logs}",
        "n_trials=5",
        "sweep.process=inline",
    ]
    s = settings(sweep_cfg(*overrides), overrides)
    check_training(s)
    study = open_study(s)
    assert work(study, s) == 5
    trials = {t.params["callbacks.chaos.mode"]: t for t in study.get_trials()}
    assert sorted(trials) == ["nan", "ok", "oom", "raise", "stall"]  # one bad trial never ends the study
    assert trials["ok"].state.name == "COMPLETE" and trials["ok"].user_attrs["epochs"] == 2
    assert trials["raise"].state.name == "FAIL"
    assert "RuntimeError: deliberate failure" in trials["raise"].user_attrs["fail_reason"]
    assert trials["oom"].state.name == "FAIL" and trials["oom"].user_attrs["fail_reason"].startswith("out of memory")
    assert trials["nan"].state.name == "PRUNED"
    assert trials["nan"].user_attrs["prune_reason"].startswith("non-finite training loss (nan) at step")
    stall = trials["stall"]  # pruning stops a trial that is not learning after its first epoch
    assert stall.state.name == "PRUNED" and stall.user_attrs["epochs"] == 1 < 2
    assert "ThresholdPruner at epoch 0" in stall.user_attrs["prune_reason"] and list(stall.intermediate_values) == [0]


# -- slow: resume after SIGKILL, two workers, DDP -------------------------------------------------


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_trial_killed_by_the_kernel_fails_and_the_next_runs_in_a_fresh_process(tmp_path):
    conf = write_sweep(tmp_path, "chaos", CHAOS % "[kill, ok]")
    logs = tmp_path / "logs"
    result = run_sweep(["--config-dir", str(conf), "sweep=chaos", *CHAOS_ARGS, f"paths.log_dir={logs}", "n_trials=2"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = {
        t.params["callbacks.chaos.mode"]: t for t in load(f"sqlite:///{logs}/sweeps/chaos.db", "chaos").get_trials()
    }
    assert trials["kill"].state.name == "FAIL" and "SIGKILL" in trials["kill"].user_attrs["fail_reason"]
    assert trials["ok"].state.name == "COMPLETE"
    assert "sweep.process=pool" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_resume_after_sigkill_of_a_worker(tmp_path, request, backend):
    from optuna.trial import TrialState

    logs = tmp_path / "logs"
    storage = f"sqlite:///{logs}/sweeps/default.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    args = [
        *TINY,
        "trainer.max_epochs=3",
        f"paths.log_dir={logs}",
        "n_trials=3",
        "report=false",
        "sweep.heartbeat.interval=1",
        "sweep.heartbeat.grace=4",
        f"storage={storage}",
    ]
    worker = run_sweep(args, background=True)

    def second_running():
        if backend == "sqlite" and not (logs / "sweeps" / "default.db").exists():
            return False
        try:
            trials = load(storage, "default").get_trials()
        except KeyError:
            return False
        return len(trials) >= 2 and trials[1].state == TrialState.RUNNING and trials[1].intermediate_values

    wait_for(second_running, 240, "trial 1 to be running")
    os.kill(worker.pid, signal.SIGKILL)  # no Python code of the worker runs after this
    worker.communicate(timeout=30)
    first = load(storage, "default").get_trials()[0]
    assert first.state == TrialState.COMPLETE

    result = run_sweep(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = load(storage, "default").get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = [t for t in trials if "lost_reason" in t.user_attrs]
    assert [t.number for t in lost] == [1] and lost[0].state == TrialState.FAIL  # the heartbeat found it
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == lost[0].params and retry[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3  # the total reached n_trials
    assert trials[0].value == first.value and trials[0].datetime_complete == first.datetime_complete


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_two_workers_share_a_study_and_stop_at_the_total(tmp_path, request, backend):
    logs = tmp_path / "logs"
    storage = (
        f"journal:{tmp_path / 'shared' / 'study.log'}"
        if backend == "journal"
        else request.getfixturevalue("postgres_url")
    )
    args = [
        *TINY,
        f"paths.log_dir={logs}",
        f"storage={storage}",
        "study_name=two",
        "n_trials=7",
        "sweep.threads=1",
        "sweep.top_k=0",
    ]
    workers = [run_sweep(args, background=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:] + err[-3000:]
    from optlab.sweep.study import state_name

    trials = load(storage, "two").get_trials()
    # A worker that loses the race for the last slot gives its unsampled trial back (RELEASED).
    given_back = [t for t in trials if state_name(t) == "RELEASED"]
    assert not any(t.params for t in given_back)
    trials = [t for t in trials if state_name(t) != "RELEASED"]
    assert len(trials) == 7 and all(t.state.name == "COMPLETE" for t in trials)  # exactly the total
    by_worker = {t.user_attrs["worker"] for t in trials}
    assert len(by_worker) == 2  # both took part
    assert sum("report:" in out for out, _ in outputs) == 1  # one report, by the last to finish


@pytest.mark.slow
def test_a_trial_as_a_submitit_job_reports_to_the_study(tmp_path):
    """sweep.process=submitit (here its local executor; on a cluster, SLURM) goes through the same
    launch.run as every mode: the job reports each epoch to the storage itself and leaves its outcome."""
    pytest.importorskip("submitit")
    from optlab.launch import read_outcome
    from optlab.sweep.driver import sweep

    logs = tmp_path / "logs"
    args = [
        *TINY,
        f"paths.log_dir={logs}",
        "n_trials=1",
        "report=false",
        "sweep.process=submitit",
        "sweep.submitit.cluster=local",
    ]
    assert sweep(sweep_cfg(*args), args) is not None
    (trial,) = load(f"sqlite:///{logs}/sweeps/default.db", "default").get_trials()
    assert trial.state.name == "COMPLETE" and sorted(trial.intermediate_values) == [0, 1]
    run_dir = Path(trial.user_attrs["run_dir"])
    assert read_outcome(run_dir)["metrics"]["val/acc_best"] == trial.value
    assert list((run_dir / ".submitit").iterdir())  # it ran as a submitit job


@pytest.mark.slow
def test_ddp_trials_run_in_their_own_process_and_report(tmp_path):
    logs = tmp_path / "logs"
    result = run_sweep(
        [
            *TINY,
            "strategy=ddp",
            "trainer.devices=2",
            "logger=csv",
            f"paths.log_dir={logs}",
            "n_trials=2",
            "report=false",
        ]
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sweep.process=subprocess" in result.stdout
    trials = load(f"sqlite:///{logs}/sweeps/default.db", "default").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    for t in trials:
        assert sorted(t.intermediate_values) == [0, 1]  # rank 0 reported every epoch
        assert (Path(t.user_attrs["run_dir"]) / "train_ddp_process_1.log").exists() or (
            Path(t.user_attrs["run_dir"]) / "metrics.json"
        ).exists()


def test_state_name_marks_uncounted_failures_lost():
    from types import SimpleNamespace

    from optuna.trial import TrialState

    from optlab.sweep.study import FAIL_REASON, LOST_REASON, state_name

    def trial(state, **attrs):
        return SimpleNamespace(state=state, user_attrs=attrs)

    assert state_name(trial(TrialState.FAIL, **{LOST_REASON: "no heartbeat"})) == "LOST"
    assert state_name(trial(TrialState.FAIL, **{FAIL_REASON: "raised"})) == "FAIL"
    assert state_name(trial(TrialState.COMPLETE)) == "COMPLETE"
    assert state_name(trial(TrialState.WAITING)) == "WAITING"
    assert state_name(trial(TrialState.FAIL, released=True)) == "RELEASED"


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_workers_racing_for_the_last_slots_never_exceed_the_total(tmp_path, backend):
    """12 workers (threads, each with its own study handle) reserve and finish instant trials on
    one storage. Ranking reservations by start time went over (41-43 of 40 on sqlite here)."""
    import threading

    import optuna

    from optlab.sweep.study import make_storage, n_counted, reserve, running, state_name

    url = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else f"journal:{tmp_path}/s.log"
    optuna.create_study(study_name="race", storage=make_storage(url))
    go, errors = threading.Barrier(12), []

    def worker():
        study = optuna.load_study(study_name="race", storage=make_storage(url))
        go.wait()
        try:
            while (trial := reserve(study, 40, backoff=0.05)) is not None or running(study):
                if trial is not None:
                    study.tell(trial, 1.0)
        except Exception as e:  # noqa: BLE001 - e.g. a trial two workers both thought was theirs
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    [t.start() for t in threads], [t.join() for t in threads]
    study = optuna.load_study(study_name="race", storage=make_storage(url))
    assert not errors and n_counted(study) == 40
    assert {state_name(t) for t in study.get_trials()} <= {"COMPLETE", "RELEASED"}


def test_a_queued_retry_given_back_is_queued_again(tmp_path):
    import optuna

    from optlab.sweep.study import RETRY_OF, make_storage, release, state_name

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path}/s.db"))
    study.enqueue_trial({"x": 0.25}, user_attrs={RETRY_OF: 3, "retries": 1})
    trial = study.ask()  # takes the queued retry
    release(study, trial._trial_id)
    given_back, queued = study.get_trials()
    assert state_name(given_back) == "RELEASED" and queued.state.name == "WAITING"
    assert queued.user_attrs == {RETRY_OF: 3, "retries": 1}
    assert study.ask().suggest_float("x", 0, 1) == 0.25  # the same parameters run


def test_exit_code_of_a_killed_pool_process_waits_for_the_reaping_thread():
    """The executor's thread may reap the dead process first and store its code a moment later:
    the code must still be read (not None), or the trial's reason loses 'killed by SIGKILL'."""
    import threading

    from optlab.launch.process import _exit_code

    class Reaped:  # joined already, code stored by another thread after 0.2 s
        exitcode = None

        def join(self, timeout=None):
            pass

    proc = Reaped()
    threading.Timer(0.2, lambda: setattr(proc, "exitcode", -signal.SIGKILL)).start()
    assert _exit_code([proc]) == -signal.SIGKILL
    alive = Reaped()  # a process that never shows a code: give up after the timeout
    assert _exit_code([alive], timeout=0.1) is None
