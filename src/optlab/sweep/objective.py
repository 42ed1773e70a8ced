"""One trial: compose its training config, train it in its own process, read back what happened.

Process model (`sweep.process`):
- `pool` (the default): trials run one after another in a spawned child process of the worker,
  restarted every `sweep.trials_per_process` trials. A crash, a segfault or the kernel's OOM
  killer takes down that child, not the worker: the trial FAILs with the reason and a fresh child
  runs the next one. Imports and first-run warm-up are paid once per child, not per trial
  (measured on 2 CPU cores: a 2-epoch digits trial costs ~1-2 s warm, ~9 s in a fresh process).
- `subprocess`: `python -m optlab.sweep.objective <run_dir>/trial.json`, a fresh process (and
  process group) per trial: for multi-process strategies, where Lightning re-runs that command
  line for every rank (`auto` picks it for them).
- `inline`: in the worker itself: for debugging (pdb, profilers); a crash takes the worker down.
Forking the worker is not offered: a child forked from a process whose torch/Lightning threads
hold locks can deadlock (seen here), and every forked child re-pays the warm-up anyway.
In every mode the trial talks to the storage itself (OptunaTrialCallback: reports, pruning, NaN),
writes `outcome.json` to its run directory, and logs to `trial.log` there (inline: the console).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from optlab.launch import OUTCOME

JOB_FILE, LOG_FILE = "trial.json", "trial.log"


@dataclass
class TrialJob:
    overrides: list[str]                 # everything after `python train.py`
    run_dir: str
    monitor: str = "val/acc_best"
    storage: str | None = None           # with study_name and trial_id: report to that trial
    study_name: str | None = None
    trial_id: int | None = None
    pruner: dict | None = None           # the study's pruner node (a `_target_` mapping)
    check_every_n_steps: int = 10
    threads: int | None = None
    wandb_group: str | None = None
    wandb_name: str | None = None
    worker_pid: int | None = None
    extra: dict = field(default_factory=dict)


@contextlib.contextmanager
def hydra_state(restore_config: bool = True):
    """compose_config needs Hydra uninitialized, and sweep.py runs inside @hydra.main: clear it, then
    restore it. The composed config's HydraConfig (its `${hydra:runtime.output_dir}`, the run dir)
    stays set unless restore_config: a trial must keep it while it trains."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved, saved_cfg = GlobalHydra.instance().hydra, HydraConfig.instance().cfg
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().hydra = saved
        if restore_config:
            HydraConfig.instance().cfg = saved_cfg


def compose(overrides: list[str], run_dir: str | None = None, keep: bool = False):
    """The training config `python train.py <overrides>` would see (keep: leave its HydraConfig set)."""
    from optlab.run import compose_config

    with hydra_state(restore_config=not keep):
        return compose_config(overrides, run_dir=run_dir or "<sweep>")


def trial_config(job: TrialJob):
    cfg = compose(job.overrides, job.run_dir, keep=True)
    with open_dict(cfg):
        if OmegaConf.select(cfg, "logger.wandb._target_") is not None:
            cfg.logger.wandb.group = job.wandb_group or cfg.logger.wandb.get("group")
            cfg.logger.wandb.name = job.wandb_name
        if job.trial_id is not None:
            if cfg.get("callbacks") is None:
                cfg.callbacks = {}
            cfg.callbacks.optuna_trial = {
                "_target_": "optlab.sweep.pruning.OptunaTrialCallback", "storage": job.storage,
                "study_name": job.study_name, "trial_id": job.trial_id, "monitor": job.monitor,
                "pruner": job.pruner, "check_every_n_steps": job.check_every_n_steps,
                "worker_pid": job.worker_pid}
    return cfg


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[:3])
    return f"{type(e).__name__}: {text[:500]}" if text else type(e).__name__


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def run(job: TrialJob) -> dict:
    """Train one trial in this process; returns and writes its outcome (never raises)."""
    import torch

    from optlab.run import train
    from optlab.validate import ConfigError

    start = time.perf_counter()
    run_dir = Path(job.run_dir)
    outcome: dict = {"status": "ok"}
    try:
        if job.threads:
            torch.set_num_threads(int(job.threads))
        cfg = trial_config(job)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(job.overrides)))
        outcome["metrics"] = train(cfg)
    except (torch.OutOfMemoryError, MemoryError) as e:
        outcome = {"status": "oom", "reason": f"out of memory: {_one_line(e)}"}
    except ConfigError as e:
        outcome = {"status": "config", "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - a trial may fail in any way; the study goes on
        outcome = {"status": "error", "reason": _one_line(e), "traceback": traceback.format_exc()}
        traceback.print_exc()
    outcome["wall_s"] = time.perf_counter() - start
    if _is_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / OUTCOME).write_text(json.dumps(outcome, indent=2, default=str))
    return outcome


# -- launchers (worker side) ----------------------------------------------------------------------

def _die_with_parent() -> None:
    """Linux: get SIGKILL when the worker dies, so a killed worker leaves no orphan training."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


_POOL = None  # (executor, trials_per_process) of this worker


def _pool_init(worker: int) -> None:
    """A pool process: dies with the worker, ignores the terminal's Ctrl-C (the worker stops it)."""
    _die_with_parent()
    if os.getppid() != worker:
        os._exit(3)
    os.setpgrp()  # its own group: the worker can stop it and everything it started
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_run(job: TrialJob, log_path: str) -> dict:
    """In the pool process: run one trial with stdout/stderr going to its trial.log."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1), os.dup2(fd, 2)
    os.close(fd)
    try:
        return run(job)
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])
        import gc

        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            sys.modules["torch"].cuda.empty_cache()


def _pool(trials_per_process: int | None):
    global _POOL
    if _POOL is None or _POOL[1] != trials_per_process:
        shutdown_pool()
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_pool_init, initargs=(os.getpid(),),
                                       max_tasks_per_child=trials_per_process)
        _POOL = (executor, trials_per_process)
    return _POOL[0]


def shutdown_pool(kill: bool = False) -> None:
    global _POOL
    if _POOL is None:
        return
    executor, _POOL = _POOL[0], None
    if kill:
        for proc in list((executor._processes or {}).values()):
            _stop_group(proc.pid)
    executor.shutdown(wait=not kill, cancel_futures=True)


def _stop_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(1.0)


def _crash_reason(code: int | None, log_path: Path, timed_out: bool, timeout) -> str:
    if timed_out:
        return f"timed out after {timeout} s (sweep.timeout) and was stopped"
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (likely the kernel's out-of-memory killer: see `dmesg`)" if -code == signal.SIGKILL else ""
        return f"trial process killed by {name}{hint}; log: {log_path}"
    tail = ""
    if log_path.is_file():
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        tail = f": {lines[-1][:300]}" if lines else ""
    return f"trial process exited with code {code}{tail}; log: {log_path}"


def launch(job: TrialJob, mode: str, timeout: float | None = None, while_running=contextlib.nullcontext,
           trials_per_process: int | None = None) -> dict:
    """Run the trial (mode: pool | subprocess | inline) and return its outcome.

    `while_running()` is a context manager held while the trial runs (the worker's heartbeat)."""
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_FILE
    (run_dir / OUTCOME).unlink(missing_ok=True)
    if mode == "inline":
        from hydra.core.hydra_config import HydraConfig

        import torch

        saved, threads = HydraConfig.instance().cfg, torch.get_num_threads()
        try:
            with while_running():
                return run(job)
        finally:
            HydraConfig.instance().cfg = saved
            torch.set_num_threads(threads)
    deadline = time.monotonic() + timeout if timeout else None
    with while_running():
        if mode == "pool":
            return _wait_pool(job, log_path, deadline, timeout, trials_per_process)
        return _wait_subprocess(job, log_path, deadline, timeout)


def _remaining(deadline) -> float:
    return 1.0 if deadline is None else max(min(1.0, deadline - time.monotonic()), 0.0)


def _wait_pool(job: TrialJob, log_path: Path, deadline, timeout, trials_per_process) -> dict:
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    executor = _pool(trials_per_process)
    future = executor.submit(_pool_run, job, str(log_path))
    # The process that runs the trial may not exist yet: after a trial, the executor's thread first
    # returns the result, then replaces the process that reached max_tasks_per_child. Note every one.
    procs = {}
    try:
        while True:
            procs.update(executor._processes or {})
            try:
                return future.result(timeout=_remaining(deadline))
            except FutureTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    shutdown_pool(kill=True)
                    return {"status": "timeout", "reason": _crash_reason(None, log_path, True, timeout)}
    except BrokenProcessPool:
        procs.update(executor._processes or {})
        code = _exit_code(list(procs.values()))
        shutdown_pool(kill=True)
        return {"status": "crash", "reason": _crash_reason(code, log_path, False, timeout), "exit_code": code}
    except BaseException:  # Ctrl-C / SIGTERM of the worker: take the trial down with it
        shutdown_pool(kill=True)
        raise


def _exit_code(procs, timeout: float = 5.0) -> int | None:
    """The first non-zero exit code of the dead pool's processes (what killed the trial).

    The executor's own thread reaps them too: when it wins the race, our join sees the process gone
    before that thread has stored its code, so wait for the code to show rather than read None."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(timeout=max(deadline - time.monotonic(), 0.0))
    while time.monotonic() < deadline and any(proc.exitcode is None for proc in procs):
        time.sleep(0.02)
    return next((proc.exitcode for proc in procs if proc.exitcode), None)


def _wait_subprocess(job: TrialJob, log_path: Path, deadline, timeout) -> dict:
    run_dir = Path(job.run_dir)
    (run_dir / JOB_FILE).write_text(json.dumps(asdict(job), indent=2))
    with open(log_path, "ab") as log:
        popen = subprocess.Popen([sys.executable, "-m", "optlab.sweep.objective", str(run_dir / JOB_FILE)],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=_die_with_parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    code, timed_out = None, False
    try:
        while code is None:
            try:
                code = popen.wait(_remaining(deadline))
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    _stop_group(popen.pid)
                    code = popen.wait()
    except BaseException:
        _stop_group(popen.pid)
        raise
    outcome_path = run_dir / OUTCOME
    if outcome_path.is_file() and not timed_out:
        return json.loads(outcome_path.read_text())
    return {"status": "timeout" if timed_out else "crash", "reason": _crash_reason(code, log_path, timed_out, timeout),
            "exit_code": code}


if __name__ == "__main__":  # python -m optlab.sweep.objective <run_dir>/trial.json  (subprocess mode)
    outcome = run(TrialJob(**json.loads(Path(sys.argv[1]).read_text())))
    sys.exit(0 if outcome["status"] == "ok" else 1)
