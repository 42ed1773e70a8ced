"""What `python sweep.py` does: check everything, open the study, run trials until the cap, report.

One worker = one `python sweep.py ...` process; start the same command on several machines (or
several times on one) and they share the study through its storage. Each trial: reserve a slot
(study.reserve_trial), sample the space, train in its own process (optlab.launch.run) while the
worker heartbeats, then tell Optuna COMPLETE / PRUNED / FAIL with the reason in user attributes.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from optlab import launch
from optlab.sweep import study as studies
from optlab.sweep.objective import trial_job
from optlab.sweep.pruning import EPOCHS, PRUNE_REASON
from optlab.sweep.space import SearchSpace
from optlab.validate import ConfigError

log = logging.getLogger(__name__)
PROCESS_MODES = ("auto", *launch.MODES)
REPORT_MODES = (True, False, "only")
FINGERPRINT = "optlab"


@dataclass
class Settings:
    """The sweep's settings as `settings` read and checked them (sweep.yaml and the command line): all a worker
    needs to run, resume and report trials. compare.py makes one per tuning study."""

    study_name: str
    storage: str
    n_trials: int
    metric: str
    direction: str
    space: SearchSpace
    sampler: dict
    pruner: dict
    process: str
    trials_per_process: int | None
    submitit: dict
    threads: int | None
    timeout: float | None
    heartbeat_interval: float
    grace: float
    max_retry: int
    check_every_n_steps: int
    report: bool | str
    top_k: int
    rerun_seeds: list[int]
    study_dir: Path
    training_overrides: list[str] = field(default_factory=list)  # from the command line
    trial_overrides: list[str] = field(default_factory=list)  # sweep.trial_overrides
    worker: str = ""

    def job(self, overrides: list[str], run_dir: Path, wandb_name: str, **callback) -> launch.Job:
        return trial_job(
            overrides,
            run_dir,
            self.metric,
            wandb_group=self.study_name,
            wandb_name=wandb_name,
            threads=self.threads,
            inline=self.process == "inline",
            **callback,
        )

    def launch(self, job: launch.Job, **kwargs) -> dict:
        return launch.run(
            job, self.process, self.timeout, jobs_per_process=self.trials_per_process, submitit=self.submitit, **kwargs
        )


def compose(overrides: list[str]):
    """The training config of these overrides, for checks (the sweep's own Hydra config stays)."""
    from optlab.run import compose_config, hydra_config_kept

    with hydra_config_kept():
        return compose_config(overrides, run_dir="<sweep>")


@functools.cache
def training_keys() -> frozenset[str]:
    """The top-level keys of train.py's config: what a sweep override may name besides its own
    (composed once a process; compare.py asks once per cell)."""
    return frozenset(compose([]).keys())


# -- settings and up-front checks (nothing here touches the storage) ------------------------------


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(name: str, value, allow_none: bool = False, integer: bool = False):
    ok = (allow_none and value is None) or (
        (_int(value) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)) and value > 0
    )
    if not ok:
        must = "a positive integer" if integer else "a number > 0"
        raise ConfigError(f"{name}={value!r} is invalid: it must be {must}{' or null' if allow_none else ''}")
    return value


def split_overrides(overrides: list[str], sweep_keys: set[str]) -> tuple[list[str], list[str]]:
    """(sweep overrides, training overrides) of sweep.py's command line."""
    import re

    sweep, training = [], []
    for o in overrides:
        key = re.split(r"[./=@]", o.lstrip("+~"), maxsplit=1)[0]
        (sweep if key in sweep_keys else training).append(o)
    return sweep, training


def settings(cfg: DictConfig, overrides: list[str], search_path: list[str] = ()) -> Settings:
    """Read and check the sweep part of the config (all of it; nothing runs before this passes)."""
    sweep_keys = {k for k in cfg.keys() if k not in training_keys()} | {"sweep"}
    _, training = split_overrides(overrides, sweep_keys)
    training = [*(f"hydra.searchpath=[{p}]" for p in search_path), *training]
    node = cfg.sweep
    n_trials = _positive("n_trials", cfg.get("n_trials"), integer=True)
    direction = node.get("direction")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"sweep.direction={direction!r} is invalid: it must be maximize or minimize")
    metric = node.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"sweep.metric={metric!r} is invalid: name a logged metric such as val/acc_best")
    process = node.get("process", "auto")
    if process not in PROCESS_MODES:
        raise ConfigError(f"sweep.process={process!r} is invalid: choose one of {', '.join(PROCESS_MODES)}")
    report = cfg.get("report", True)
    if report not in REPORT_MODES:
        raise ConfigError(f"report={report!r} is invalid: it must be true, false or only")
    top_k, n_seeds = node.get("top_k", 3), node.get("rerun_seeds", 3)
    for name, v in (("sweep.top_k", top_k), ("sweep.rerun_seeds", n_seeds)):
        if not _int(v) or v < 0:
            raise ConfigError(f"{name}={v!r} is invalid: it must be an integer >= 0")
    hb = node.get("heartbeat") or {}
    interval = _positive("sweep.heartbeat.interval", hb.get("interval", 10))
    grace = _positive("sweep.heartbeat.grace", hb.get("grace", 60))
    if grace <= interval:
        raise ConfigError(
            f"sweep.heartbeat.grace={grace} must be larger than sweep.heartbeat.interval={interval} "
            "(a few intervals: a live worker must never look lost)"
        )
    max_retry = hb.get("max_retry", 1)
    if not _int(max_retry) or max_retry < 0:
        raise ConfigError(f"sweep.heartbeat.max_retry={max_retry!r} is invalid: it must be an integer >= 0")
    trial_overrides = list(node.get("trial_overrides") or [])
    if not all(isinstance(o, str) and "=" in o for o in trial_overrides):
        raise ConfigError(f"sweep.trial_overrides must be a list of key=value strings, got {trial_overrides}")
    storage = cfg.get("storage")
    studies.check_storage_url(storage)
    study_name = cfg.get("study_name")
    if not isinstance(study_name, str) or not study_name or "/" in study_name:
        raise ConfigError(f"study_name={study_name!r} is invalid: use a name without '/'")
    base_seed = cfg.get("seed") if _int(cfg.get("seed")) else 0
    space = SearchSpace.from_config(node.get("space"))
    return Settings(
        study_name=study_name,
        storage=storage,
        n_trials=n_trials,
        metric=metric,
        direction=direction,
        space=space,
        sampler=OmegaConf.to_container(node.sampler, resolve=True) if node.get("sampler") else {},
        pruner=OmegaConf.to_container(node.pruner, resolve=True) if node.get("pruner") else {},
        process=process,
        trials_per_process=_positive(
            "sweep.trials_per_process", node.get("trials_per_process"), allow_none=True, integer=True
        ),
        submitit=OmegaConf.to_container(node.submitit, resolve=True) if node.get("submitit") else {},
        threads=_positive("sweep.threads", node.get("threads"), allow_none=True, integer=True),
        timeout=_positive("sweep.timeout", node.get("timeout"), allow_none=True),
        heartbeat_interval=interval,
        grace=grace,
        max_retry=max_retry,
        check_every_n_steps=_positive("sweep.check_every_n_steps", node.get("check_every_n_steps", 10), integer=True),
        report=report,
        top_k=top_k,
        rerun_seeds=[base_seed + i + 1 for i in range(n_seeds)],
        study_dir=Path(str(node.get("dir"))),
        training_overrides=training,
        trial_overrides=trial_overrides,
        worker=f"{socket.gethostname()}:{os.getpid()}:{os.environ.get('OPTLAB_WORKER', '')}".rstrip(":"),
    )


def check_training(s: Settings) -> None:
    """Compose and validate the trial config with every boundary value of the space, and build the
    sampler and pruner, so a typo fails now (one line) instead of at trial 0 or trial 20."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from optlab.cli import _explain
    from optlab.run import relaunches_argv
    from optlab.validate import validate

    multi_process = False
    for values in s.space.boundary_overrides():
        job = s.training_overrides + s.trial_overrides + values
        try:
            cfg = compose(job)
        except (ConfigCompositionException, OverrideParseException) as e:
            message = _explain(e, job)
            key = next((v.split("=")[0] for v in values if f"'{v.split('=')[0]}'" in str(e)), None)
            raise ConfigError(f"sweep.space.{key}: {message}" if key else message) from None
        validate(cfg)
        multi_process |= relaunches_argv(cfg)
    if s.process == "auto":
        s.process = "subprocess" if multi_process else "pool"
    elif multi_process and s.process != "subprocess":
        raise ConfigError(
            f"trials start several processes (strategy/trainer.devices); sweep.process={s.process} "
            "cannot run them: use sweep.process=subprocess (or auto)"
        )
    if s.process == "submitit":
        check_submitit(s.submitit)
    studies.make_sampler(s.sampler, s.space)
    studies.make_pruner(s.pruner)


def check_submitit(parameters: dict) -> None:
    """sweep.process=submitit: the plugin is there and takes these executor parameters."""
    import tempfile

    try:
        import submitit
    except ImportError:
        raise ConfigError('sweep.process=submitit needs submitit: pip install -e ".[cluster]"') from None
    params = dict(parameters)
    with tempfile.TemporaryDirectory() as folder:
        try:
            submitit.AutoExecutor(folder=folder, cluster=params.pop("cluster", None)).update_parameters(**params)
        except (ValueError, TypeError, NameError, AssertionError) as e:
            raise ConfigError(f"sweep.submitit is invalid: {str(e).strip().splitlines()[0]}") from None


# -- the study ------------------------------------------------------------------------------------


def fingerprint(s: Settings) -> dict:
    return {"training_overrides": s.training_overrides, "trial_overrides": s.trial_overrides, "metric": s.metric}


def open_study(s: Settings, create: bool = True):
    """Create the study or join it (several workers, a resume); a stored study with another direction or other
    training settings (the fingerprint) is refused, so one study never mixes two experiments. create=False:
    open an existing one only (report=only)."""
    import optuna

    storage = studies.make_storage(s.storage)
    sampler, pruner = studies.make_sampler(s.sampler, s.space), studies.make_pruner(s.pruner)
    if not create:
        try:
            return optuna.load_study(study_name=s.study_name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise ConfigError(
                f"no study named {s.study_name} in {s.storage}; run the sweep first "
                "(or pass its study_name=... and storage=...)"
            ) from None
    study = optuna.create_study(
        study_name=s.study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=s.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != s.direction:
        raise ConfigError(
            f"study {s.study_name} was created with direction={study.direction.name.lower()}; "
            f"this command asks for {s.direction}: use another study_name=..."
        )
    mine, stored = fingerprint(s), study.user_attrs.get(FINGERPRINT)
    if stored is None:
        study.set_user_attr(FINGERPRINT, mine)
    elif stored != mine:
        diff = ", ".join(f"{k}: {stored.get(k)} -> {mine[k]}" for k in mine if stored.get(k) != mine[k])
        raise ConfigError(
            f"study {s.study_name} in {s.storage} was run with other training settings ({diff}); "
            "repeat its command to resume it, or start a new study with study_name=<new name>"
        )
    return study


def _trial_dir(s: Settings, number: int) -> Path:
    path = s.study_dir / f"trial-{number:04d}"
    if path.exists():  # a study deleted and started again under the same name: keep the old folder
        from optlab.rundirs import run_id

        path = path.with_name(f"{path.name}-{run_id()}")
    return path


def _fmt_params(values: dict) -> str:
    def one(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={one(v)}" for k, v in values.items())


def run_trial(study, trial, s: Settings) -> None:
    """Sample, train, tell. Raises ConfigError when the sweep must stop (the metric is never logged)."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    run_dir = _trial_dir(s, trial.number)
    values = s.space.sample(trial)
    overrides = s.space.overrides(values)
    command = ["python", "train.py", *s.training_overrides, *s.trial_overrides, *overrides]
    for key, value in {
        "worker": s.worker,
        "run_dir": str(run_dir),
        "overrides": overrides,
        "command": " ".join(command),
    }.items():
        trial.set_user_attr(key, value)
    job = s.job(
        [*s.training_overrides, *s.trial_overrides, *overrides],
        run_dir,
        f"{s.study_name}-{run_dir.name}",
        storage=s.storage,
        study_name=s.study_name,
        trial_id=trial._trial_id,
        pruner=s.pruner,
        check_every_n_steps=s.check_every_n_steps,
        worker_pid=os.getpid(),
    )
    outcome = s.launch(job, while_running=lambda: studies.Heartbeat(storage, trial._trial_id, s.heartbeat_interval))
    frozen = storage.get_trial(trial._trial_id)
    metrics = outcome.get("metrics") or {}
    state, value, reason, stop = TrialState.FAIL, None, outcome.get("reason"), False
    if outcome["status"] == "ok":
        if PRUNE_REASON in frozen.user_attrs:
            state, reason = TrialState.PRUNED, frozen.user_attrs[PRUNE_REASON]
        elif s.metric not in metrics:
            reason = f"sweep.metric={s.metric} was not logged; logged: {', '.join(sorted(metrics))}"
            stop = True
        elif not math.isfinite(metrics[s.metric]):
            reason = f"{s.metric} is {metrics[s.metric]}"
        else:
            state, value = TrialState.COMPLETE, metrics[s.metric]
    try:
        if reason and state == TrialState.FAIL:
            trial.set_user_attr(studies.FAIL_REASON, reason)
        trial.set_user_attr("wall_s", round(outcome.get("wall_s", 0.0), 2))
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if k.startswith(("val/", "train/", "test/"))})
        study.tell(trial, value, state=state) if state == TrialState.COMPLETE else study.tell(trial, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning(
            "trial %d was declared lost by another worker while it ran (was this worker paused for "
            "more than sweep.heartbeat.grace=%s s?); its result is dropped",
            trial.number,
            s.grace,
        )
        return
    epochs = frozen.user_attrs.get(EPOCHS)  # written by the trial's callback before it ended
    shown = f"{s.metric}={value:.4f}" if value is not None else (reason or "")
    print(
        f"[trial {trial.number}] {state.name} {shown} | {_fmt_params(values)} | "
        f"{epochs if epochs is not None else '?'} epochs, {outcome.get('wall_s', 0):.1f} s | {run_dir}",
        flush=True,
    )
    if stop:
        raise ConfigError(reason)


def _lost_on_interrupt(study, trial, s: Settings, why: str) -> None:
    """Ctrl-C / SIGTERM during a trial: not the trial's fault, so it is retried on the next run."""
    from optuna.trial import TrialState

    try:
        study._storage.set_trial_user_attr(trial._trial_id, studies.LOST_REASON, why)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        params = study._storage.get_trial(trial._trial_id).params
        study.enqueue_trial(params, user_attrs={studies.RETRY_OF: trial.number, "retries": 0})
    except Exception as e:  # noqa: BLE001 - best effort on the way out
        log.warning("could not record the interrupted trial %d: %s", trial.number, e)


class _Terminated(KeyboardInterrupt):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated()


def work(study, s: Settings) -> int:
    """This worker's loop; returns how many trials it ran."""
    ran, waiting_said = 0, False
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    study._thread_local.in_optimize_loop = True  # lets a sampler call study.stop() (the grid sampler, when done)
    try:
        while not study._stop_flag:
            studies.fail_lost_trials(study, s.grace, s.max_retry)
            trial = studies.reserve(study, s.n_trials)
            if trial is None:
                others = studies.running(study)
                if not others:
                    return ran
                if not waiting_said:
                    print(
                        f"[sweep] {s.n_trials} trials reached; waiting for trial(s) "
                        f"{', '.join(str(t.number) for t in others)} of other workers to finish or be declared lost",
                        flush=True,
                    )
                    waiting_said = True
                time.sleep(min(s.heartbeat_interval, 5))
                continue
            waiting_said = False
            ran += 1
            try:
                run_trial(study, trial, s)
            except KeyboardInterrupt as e:
                why = "worker terminated (SIGTERM)" if isinstance(e, _Terminated) else "worker interrupted (Ctrl-C)"
                _lost_on_interrupt(study, trial, s, why)
                print(f"[trial {trial.number}] stopped: {why}; it will be retried when the sweep resumes", flush=True)
                raise
        print("[sweep] the sampler has no new points (a finished grid); stopping", flush=True)
        return ran
    finally:
        study._thread_local.in_optimize_loop = False
        signal.signal(signal.SIGTERM, previous)


def _last_finisher(study) -> str | None:
    done = [t for t in study.get_trials(deepcopy=False) if studies.counts(t) and t.datetime_complete]
    if not done:
        return None
    last = max(done, key=lambda t: (t.datetime_complete, t.number))
    return last.user_attrs.get("worker")


def summary_line(study, s: Settings) -> str:
    from collections import Counter

    trials = study.get_trials(deepcopy=False)
    states = Counter(studies.state_name(t) for t in trials)
    parts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(states.items()))
    return (
        f"[sweep] study {s.study_name}: {studies.n_counted(study)}/{s.n_trials} trials ({parts}); storage {s.storage}"
    )


def run(cfg: DictConfig) -> float | None:
    """sweep.py's Hydra task: the command line's overrides come from Hydra."""
    from optlab.run import command_line_job

    command = command_line_job()
    return sweep(cfg, command.overrides, [f"file://{command.config_dir}"] if command.config_dir else [])


def sweep(cfg: DictConfig, overrides: list[str], search_path: list[str] = ()) -> float | None:
    """Check, run this worker's trials, report. `overrides`: the command line (for the trials)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    try:
        return _sweep(settings(cfg, overrides, search_path))
    finally:
        launch.shutdown_pool()


def _sweep(s: Settings) -> float | None:
    from optlab.sweep.report import write_report

    if s.report == "only":
        if not studies.storage_exists(s.storage):
            raise ConfigError(f"no study storage at {s.storage}; run the sweep first (or pass storage=...)")
        study = open_study(s, create=False)
        stored = study.user_attrs.get(FINGERPRINT) or {}
        s.training_overrides = stored.get("training_overrides", s.training_overrides)
        s.trial_overrides = stored.get("trial_overrides", s.trial_overrides)
        check_process(s)
        write_report(study, s)
        return _best(study)
    check_training(s)
    study = open_study(s)
    print(
        f"[sweep] study {s.study_name} ({s.direction} {s.metric}), {s.n_trials} trials in all, storage {s.storage}, "
        f"trials in {s.study_dir}/ (sweep.process={s.process})",
        flush=True,
    )
    ran = work(study, s)
    print(summary_line(study, s), flush=True)
    if s.report is True:
        last = _last_finisher(study)
        if ran == 0 or last is None or last == s.worker:
            write_report(study, s)
        else:
            print(
                f"[sweep] the report is written by worker {last}, which finished the last trial "
                f"(or run this command with report=only)",
                flush=True,
            )
    return _best(study)


def check_process(s: Settings) -> None:
    """report=only: how to run the re-runs of a stored study (no space to check)."""
    from optlab.run import relaunches_argv

    if s.process == "auto":
        s.process = "subprocess" if relaunches_argv(compose(s.training_overrides + s.trial_overrides)) else "pool"


def _best(study) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None
